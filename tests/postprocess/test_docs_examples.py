"""The python examples in docs/postprocess.md run."""

from __future__ import annotations

import re

import pytest

from pyimgano_testutils import REPO_ROOT

BLOCKS = re.findall(r"```python\n(.*?)```", (REPO_ROOT / "docs" / "postprocess.md").read_text(), flags=re.S)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_example_runs(index):
    exec(compile(BLOCKS[index], f"docs/postprocess.md#{index}", "exec"), {"__name__": "docs_example"})


def test_there_are_examples():
    assert len(BLOCKS) >= 2
