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


DOC_PAGES = sorted([REPO_ROOT / "README.md", *DOCS.glob("*.md")])
# where a path written in the docs lives in the repository
_PACKAGE_ROOTS = {
    "pyimgano/": "pyimgano-core/src/pyimgano/",
    "pyimgano_datasets/": "pyimgano-datasets/src/pyimgano_datasets/",
    "pyimgano_faiss/": "pyimgano-faiss/src/pyimgano_faiss/",
    "pyimgano_anomalib/": "pyimgano-anomalib/src/pyimgano_anomalib/",
}
_REPO_PREFIXES = ("docs/", "benchmarks/", "tests/", "pyimgano-core/", "pyimgano-datasets/", "pyimgano-faiss/",
                  "pyimgano-anomalib/", ".ci/")
_CODE_PATH = re.compile(r"`([A-Za-z0-9_.\-]+(?:/[A-Za-z0-9_.\-]+)+/?)`")
_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _repo_path(written: str):
    for prefix, where in _PACKAGE_ROOTS.items():
        if written.startswith(prefix):
            return REPO_ROOT / (where + written[len(prefix):])
    if written.startswith(_REPO_PREFIXES):
        return REPO_ROOT / written
    return None  # an output file, a user's folder: not a repository path


@pytest.mark.parametrize("page", DOC_PAGES, ids=lambda p: p.name)
def test_every_repository_path_and_link_in_the_docs_exists(page):
    """A doc that names a module, script, test or page that moved or never existed fails here."""
    text = page.read_text()
    missing = []
    for written in _CODE_PATH.findall(text):
        path = _repo_path(written.split("::")[0])
        if path is not None and not path.exists():
            missing.append(f"`{written}`")
    for target in _LINK.findall(text):
        if "://" not in target and not (page.parent / target).exists():
            missing.append(f"link ({target})")
    assert not missing, f"{page.relative_to(REPO_ROOT)} names what the repository does not have: {missing}"


def test_the_path_check_catches_a_missing_module(tmp_path):
    assert _repo_path("pyimgano/benchmark/job.py").is_file()
    assert not _repo_path("pyimgano/benchmark/no_such_module.py").exists()
    assert _repo_path("runs/demo/report.html") is None
