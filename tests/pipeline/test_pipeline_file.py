"""pyimgano-pipeline.json read back: every field bounded, the detector cross-checked, the size capped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_pipeline_api import eval_files, train_files

import pyimgano
from pyimgano import ModelLoadError
from pyimgano.cli import main
from pyimgano.modelfile import MAX_MODEL_CONFIG_BYTES
from pyimgano.pipeline import PIPELINE_FILE


@pytest.fixture
def saved(plugin, toy, tmp_path) -> Path:
    pipe = pyimgano.Pipeline("benchtest:mean", postprocess=[{"name": "standardize"}])
    return pipe.fit(train_files(toy)).save(tmp_path / "model")


def _edit(folder: Path, change) -> None:
    data = json.loads((folder / PIPELINE_FILE).read_text())
    change(data)
    (folder / PIPELINE_FILE).write_text(json.dumps(data))


def _refused(folder: Path, pattern: str) -> None:
    with pytest.raises(ModelLoadError, match=pattern) as info:
        pyimgano.load(folder)
    assert str(info.value).startswith(str(folder / PIPELINE_FILE)) and "\n" not in str(info.value)


def test_a_negative_standardize_scale_is_refused_by_the_step(saved):
    def negate(data):
        data["postprocess"][0]["state"]["scale"] *= -1

    _edit(saved, negate)
    _refused(saved, r"post-processing step 0 \(standardize\): state.scale: -[0-9.e-]+ is outside \[0, ")


@pytest.mark.parametrize("key, value, pattern", [
    ("scale", "big", "state.scale: expected a finite number"),
    ("spread", 1.0, "state: holds offset, scale, spread; step standardize keeps offset, scale"),
])
def test_step_statistics_of_the_wrong_kind_are_refused(saved, key, value, pattern):
    _edit(saved, lambda data: data["postprocess"][0]["state"].update({key: value}))
    _refused(saved, pattern)


@pytest.mark.parametrize("heatmap_range, pattern", [
    ([5.0, 1.0], "calibration.heatmap_range: low 5.0 must be below high 1.0"),
    ([1.0], "calibration.heatmap_range"),
    ("1e400", "calibration.heatmap_range"),
])
def test_a_heatmap_range_that_is_not_a_range_is_refused(saved, heatmap_range, pattern):
    _edit(saved, lambda data: data["calibration"].update(heatmap_range=heatmap_range))
    _refused(saved, pattern)


def test_nan_anywhere_in_the_file_is_refused(saved):
    text = (saved / PIPELINE_FILE).read_text()
    data = json.loads(text)
    data["calibration"]["heatmap_range"] = [0.0, float("nan")]
    (saved / PIPELINE_FILE).write_text(json.dumps(data))  # json writes NaN
    _refused(saved, "corrupt pipeline file .*NaN is not a number JSON allows")


@pytest.mark.parametrize("field, value, pattern", [
    ("n_train", -3, "n_train: Input should be greater than or equal to 0"),
    ("val_fraction", 1.5, "val_fraction: Input should be less than 1"),
    ("seed", -1, "seed: Input should be greater than or equal to 0"),
    ("calibration_setting", "bogus", "calibration_setting"),
    ("postprocess", [{"name": "gaussian"}] * 65, "postprocess: List should have at most 64 items"),
    ("surprise", 1, "surprise: Extra inputs are not permitted"),
])
def test_top_level_fields_are_bounded(saved, field, value, pattern):
    _edit(saved, lambda data: data.update({field: value}))
    _refused(saved, pattern)


def test_calibration_records_are_bounded(saved):
    _edit(saved, lambda data: data["calibration"].update(normal_scores=[3.0, 1.0, 2.0]))
    _refused(saved, "calibration.normal_scores: must be sorted")
    _edit(saved, lambda data: data["calibration"].update(
        normal_scores=[1.0], image_promise={"target": 0.1, "n": 2, "exceed": 5, "upper": 0.3, "source": "holdout"}))
    _refused(saved, "exceed 5 is more than the 2 scores")


def test_a_pipeline_file_of_another_detector_is_refused(saved):
    _edit(saved, lambda data: data.update(detector="faiss:knn"))
    _refused(saved, r"detector 'faiss:knn' is not the model's 'benchtest:mean' \(pyimgano-model.json\): "
                    "was it copied from another model\\?")


def test_an_oversized_pipeline_file_is_refused_before_it_is_read(saved):
    with open(saved / PIPELINE_FILE, "r+b") as handle:
        handle.truncate(MAX_MODEL_CONFIG_BYTES + 1)  # sparse: nothing is written
    _refused(saved, f"far more than a pipeline file holds \\(at most {MAX_MODEL_CONFIG_BYTES:,}\\); refused")


def test_predict_on_a_tampered_pipeline_file_is_exit_2_naming_file_and_field(saved, toy, tmp_path, capsys):
    _edit(saved, lambda data: data["postprocess"][0]["state"].update(scale=-2.0))
    rc = main(["predict", "--model", str(saved), str(eval_files(toy)[0]), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0
    assert f"{saved / PIPELINE_FILE}: post-processing step 0 (standardize): state.scale: -2.0 is outside" in err
    assert not (tmp_path / "out").exists()


def test_an_untouched_file_loads_with_the_same_calibration(saved, toy):
    before = json.loads((saved / PIPELINE_FILE).read_text())
    pipe = pyimgano.load(saved)
    assert pipe.calibration_ == before["calibration"]
    assert pipe.postprocessing.steps[0][1].state == before["postprocess"][0]["state"]
    pipe.save(saved)  # and saves back to the same content
    assert json.loads((saved / PIPELINE_FILE).read_text())["calibration"] == before["calibration"]


def test_an_image_threshold_that_disagrees_with_the_model_file_is_refused(saved):
    _edit(saved, lambda data: data["image_threshold"].update(value=data["image_threshold"]["value"] + 1))
    _refused(saved, "image_threshold.value .* is not the threshold .* of pyimgano-model.json: one of the two files "
                    "was edited")
