"""The python examples in docs/pipeline.md run."""

from __future__ import annotations

import re

import pytest

from pyimgano_testutils import REPO_ROOT

BLOCKS = re.findall(r"```python\n(.*?)```", (REPO_ROOT / "docs" / "pipeline.md").read_text(), flags=re.S)


def run_block(index: int) -> dict:
    namespace: dict = {"__name__": "docs_example"}
    exec(compile(BLOCKS[index], f"docs/pipeline.md#{index}", "exec"), namespace)
    return namespace


@pytest.mark.slow
@pytest.mark.torch
def test_the_main_example_fits_predicts_saves_and_loads(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = run_block(0)
    pipe, same, out = namespace["pipe"], namespace["same"], namespace["out"]
    assert (tmp_path / "model" / "pyimgano-pipeline.json").is_file()
    assert pipe.postprocess == [{"name": "standardize", "robust": False}]  # faiss:patchcore's declared default
    assert same.to_dict() == pipe.to_dict() and len(out.masks) == 6


def test_the_capabilities_example_declares_a_default():
    assert run_block(1)["caps"].default_postprocess == [{"name": "standardize"}]


def test_there_are_examples():
    assert len(BLOCKS) == 2
