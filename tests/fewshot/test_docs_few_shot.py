"""The python example of docs/few-shot.md runs, and the page names the flags the CLI has."""

from __future__ import annotations

import re

import pytest

from pyimgano_testutils import REPO_ROOT

PAGE = (REPO_ROOT / "docs" / "few-shot.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", PAGE, flags=re.S)


@pytest.mark.slow
@pytest.mark.torch
def test_the_example_tunes_on_two_shots_and_saves(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "docs_example"}
    exec(compile(BLOCKS[0], "docs/few-shot.md#0", "exec"), namespace)
    pipe = namespace["pipe"]
    assert pipe.few_shot_["k"] == 2 and not pipe.few_shot_["image_only"]
    assert (tmp_path / "few-shot-model" / "pyimgano-pipeline.json").is_file()
    assert len(namespace["out"].masks) == 4


def test_the_page_names_every_few_shot_flag():
    import argparse

    from pyimgano.cli import benchmark, fit

    for module in (benchmark, fit):
        parser = argparse.ArgumentParser()
        module.add_arguments(parser)
        flags = {o for action in parser._actions for o in action.option_strings if "few-shot" in o or "defect" in o}
        assert flags and all(f"`{flag}" in PAGE for flag in flags), flags
