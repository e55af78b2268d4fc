"""Docs stay in step with the code: every hookspec has a section with a runnable example."""

from __future__ import annotations

import inspect
import re

import pytest

from pyimgano import hookspecs
from pyimgano_testutils import REPO_ROOT

DOCS = REPO_ROOT / "docs"
HOOK_NAMES = sorted(
    name for name, obj in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("pyimgano_")
)


def _sections(text: str) -> dict[str, str]:
    parts = re.split(r"^## +", text, flags=re.M)
    return {part.splitlines()[0].strip().strip("`"): part for part in parts[1:]}


def test_hookspecs_are_all_known():
    assert HOOK_NAMES == sorted(hookspecs.HOOK_KINDS)


@pytest.mark.parametrize("hook", HOOK_NAMES)
def test_every_hookspec_has_a_documented_runnable_example(hook):
    sections = _sections((DOCS / "hooks.md").read_text())
    assert hook in sections, f"docs/hooks.md has no '## {hook}' section"
    blocks = re.findall(r"```python\n(.*?)```", sections[hook], flags=re.S)
    assert blocks, f"the {hook} section has no python example"
    namespace: dict = {"__name__": "docs_example"}
    exec(compile(blocks[0], f"docs/hooks.md#{hook}", "exec"), namespace)
    assert hook in namespace, f"the {hook} example does not define the hook"
    assert getattr(hookspecs, hook).__doc__, f"{hook} has no docstring"


@pytest.mark.parametrize("page", ["architecture.md", "hooks.md", "contracts.md"])
def test_core_docs_exist(page):
    assert (DOCS / page).stat().st_size > 500
