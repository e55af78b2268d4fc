"""Pipeline calibration sources (holdout, out-of-fold, K-fold), fpr:ALPHA, the promise and p-values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import pyimgano
from pyimgano import InvalidParams
from pyimgano.calibration import clopper_pearson_upper, cross_fit_scores, p_values
from pyimgano.pipeline import PIPELINE_FILE


def train_files(toy: Path) -> list[Path]:
    return sorted((toy / "alpha" / "train" / "good").glob("*.png"))


def eval_files(toy: Path) -> list[Path]:
    return sorted((toy / "alpha" / "test").rglob("*.png"))


def test_a_detector_without_out_of_fold_scoring_calibrates_on_a_holdout_by_default(plugin, toy):
    pipe = pyimgano.Pipeline("benchtest:mean", image_threshold="fpr:0.2")
    assert pipe.calibration_source == "holdout"
    pipe.fit(train_files(toy))
    assert pipe.calibration_["source"] == "holdout" and pipe.n_val_ == 1
    assert pipe.promise_.n == 1 and pipe.promise_.method == "tail"


def test_asking_for_out_of_fold_scores_it_cannot_give_is_one_line_before_fitting(plugin):
    with pytest.raises(InvalidParams) as info:
        pyimgano.Pipeline("benchtest:mean", calibration="oof")
    assert str(info.value) == ("calibration 'oof': detector benchtest:mean has no out-of-fold scoring "
                               "(supports_out_of_fold); use kfold (K-fold cross-fitting) or holdout")


def test_kfold_calibrates_on_cross_fitted_scores_of_every_training_image(plugin, toy):
    pipe = pyimgano.Pipeline("benchtest:mean", image_threshold="fpr:0.1", calibration="kfold:5", seed=2,
                             postprocess=[])
    pipe.fit(train_files(toy))
    images = pyimgano.load_images(train_files(toy))
    expected, _ = cross_fit_scores(pyimgano.create_detector("benchtest:mean"), images, 5, 2)
    np.testing.assert_allclose(sorted(pipe.calibration_["normal_scores"]), sorted(expected))
    assert (pipe.n_train_, pipe.n_val_, pipe.calibration_["source"]) == (10, 10, "kfold")
    # the final detector learnt from all ten; fpr:0.1 with n=10 is the 10th order statistic
    assert pipe.image_threshold_ == pytest.approx(np.sort(expected)[9])
    assert pipe.promise_.exceed == 0 and pipe.promise_.upper == pytest.approx(clopper_pearson_upper(0, 10))


def test_fpr_strict_with_too_few_calibration_scores_fails_before_fitting(plugin, toy):
    pipe = pyimgano.Pipeline("benchtest:mean", image_threshold="fpr:0.01:strict", calibration="kfold")
    with pytest.raises(InvalidParams) as info:
        pipe.fit(train_files(toy))
    assert str(info.value).startswith("image_threshold 'fpr:0.01:strict': fpr:0.01 needs at least 99 normal "
                                      "calibration scores for a conformal threshold; 10 are available (kfold")
    assert not pipe.is_fitted_ and not getattr(pipe.detector, "is_fitted_", False)


def test_predict_gives_p_values_that_survive_save_and_load(plugin, toy, tmp_path):
    pipe = pyimgano.Pipeline("benchtest:mean", image_threshold="fpr:0.2", calibration="kfold:5")
    pipe.fit(train_files(toy))
    out = pipe.predict(eval_files(toy))
    np.testing.assert_allclose(out.p_values, p_values(pipe.calibration_["normal_scores"], out.scores))
    assert out.p_values[-4:].max() < out.p_values[:3].min()  # the anomalies come first when sorted
    pipe.save(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / PIPELINE_FILE).read_text())
    assert saved["calibration"]["image_promise"]["target"] == 0.2 and saved["calibration_setting"] == "kfold:5"
    again = pyimgano.load(tmp_path / "m")
    np.testing.assert_array_equal(again.predict(eval_files(toy)).p_values, out.p_values)
    assert again.promise_ == pipe.promise_


def test_fpr_on_the_pixel_level_is_the_conformal_statistic_of_normal_pixels(plugin, toy):
    pipe = pyimgano.Pipeline("benchtest:mean", postprocess=[], pixel_threshold="fpr:0.001", calibration="kfold:2")
    pipe.fit(train_files(toy))
    assert pipe.pixel_threshold_ is not None and np.isfinite(pipe.pixel_threshold_)
