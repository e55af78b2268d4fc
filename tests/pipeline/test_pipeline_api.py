"""pyimgano.Pipeline: fit on train + a validation split, predict, save/load, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import pyimgano
from pyimgano import InvalidParams, ModelLoadError
from pyimgano.pipeline import PIPELINE_FILE, find_regions, split_validation
from pyimgano.thresholds import DEFAULT_PIXEL_QUANTILE


def train_files(toy: Path, category: str = "alpha") -> list[Path]:
    return sorted((toy / category / "train" / "good").glob("*.png"))


def eval_files(toy: Path, category: str = "alpha") -> list[Path]:
    return sorted((toy / category / "test").rglob("*.png"))


def test_fit_holds_out_a_seeded_validation_split_and_calibrates_on_it(plugin, toy):
    pipe = pyimgano.Pipeline("benchtest:mean", postprocess=[{"name": "standardize"}], seed=4)
    pipe.fit(train_files(toy))
    fit_idx, val_idx = split_validation(10, 0.1, 4)
    assert pipe.val_indices_ == val_idx and (pipe.n_train_, pipe.n_val_) == (9, 1)

    # the same by hand: the detector on the 9, statistics and thresholds on the held-out one
    images = pyimgano.load_images(train_files(toy))
    detector = pyimgano.create_detector("benchtest:mean").fit([images[i] for i in fit_idx])
    scores, maps = detector.score([images[i] for i in val_idx])
    offset, scale = float(maps.astype(np.float64).mean()), float(maps.astype(np.float64).std())
    assert pipe.postprocessing.steps[0][1].state == pytest.approx({"offset": offset, "scale": scale}, rel=1e-12)
    assert pipe.image_threshold_ == pytest.approx(float(np.quantile(scores, 0.99)), rel=1e-12)
    processed = (maps.astype(np.float32) - offset) / scale
    assert pipe.pixel_threshold_ == pytest.approx(
        float(np.quantile(processed.astype(np.float64), DEFAULT_PIXEL_QUANTILE)), rel=1e-5)

    out = pipe.predict(eval_files(toy))
    assert out.scores.shape == (7,) and out.labels.dtype == np.int64
    np.testing.assert_array_equal(out.labels, (out.scores > pipe.image_threshold_).astype(int))
    assert all(m.dtype == np.float32 and m.shape == (24, 24) for m in out.maps)
    assert all(np.array_equal(k, m > pipe.pixel_threshold_) for k, m in zip(out.masks, out.maps))
    assert len(out.regions) == 7 and all(r["area"] > 0 for rs in out.regions for r in rs)
    assert out.labels[-4:].all() and all(out.regions[-4:])  # the bright squares are found


def test_different_seeds_hold_out_different_images_and_the_split_is_checked():
    assert split_validation(20, 0.1, 0) != split_validation(20, 0.1, 1)
    assert split_validation(20, 0.1, 0) == split_validation(20, 0.1, 0)
    assert len(split_validation(3, 0.01, 0)[1]) == 1  # at least one validation image
    with pytest.raises(InvalidParams, match=r"holds out 2 for validation and leaves 2 to fit d, which needs at "
                                            r"least 3 \(min_train_images\)"):
        split_validation(4, 0.5, 0, min_train_images=3, detector="d")


def test_save_and_load_round_trip_bit_for_bit(plugin, toy, tmp_path):
    pipe = pyimgano.Pipeline("benchtest:mean", postprocess=[{"name": "gaussian", "sigma": 1}, {"name": "minmax"}],
                             image_threshold="quantile:0.9", pixel_threshold="quantile:0.99", val_fraction=0.3)
    pipe.fit(train_files(toy))
    folder = pipe.save(tmp_path / "model")
    assert sorted(p.name for p in folder.iterdir()) == [".pyimgano-contents.json", "pyimgano-model.json", PIPELINE_FILE, "state.npz"]
    saved = json.loads((folder / PIPELINE_FILE).read_text())
    assert saved["format"] == 1 and saved["detector"] == "benchtest:mean"
    assert saved["postprocess"][1]["name"] == "minmax" and set(saved["postprocess"][1]["state"]) == {"offset", "scale"}
    assert saved["image_threshold"] == {"strategy": "quantile", "q": 0.9, "value": pipe.image_threshold_}
    assert saved["pixel_threshold"] == {"strategy": "quantile", "q": 0.99, "value": pipe.pixel_threshold_}
    assert (saved["n_train"], saved["n_val"], saved["val_fraction"], saved["seed"]) == (7, 3, 0.3, 0)
    assert saved["versions"] == {"pyimgano": pyimgano.__version__, "benchtest": "0.3.0"}
    # the detector's own file is what Detector.save writes, with the image threshold
    assert json.loads((folder / "pyimgano-model.json").read_text())["threshold"] == pipe.image_threshold_
    assert pyimgano.load_detector(folder).threshold_ == pipe.image_threshold_

    loaded = pyimgano.load(folder)
    assert isinstance(loaded, pyimgano.Pipeline) and loaded.to_dict() == pipe.to_dict()
    a, b = pipe.predict(eval_files(toy)), loaded.predict(eval_files(toy))
    np.testing.assert_array_equal(a.scores, b.scores)
    assert all(np.array_equal(x, y) for x, y in zip(a.maps, b.maps))
    assert all(np.array_equal(x, y) for x, y in zip(a.masks, b.masks))


def test_a_plain_detector_folder_loads_as_a_pipeline_that_predicts_as_before(plugin, toy, tmp_path):
    detector = pyimgano.create_detector("benchtest:mean").fit(train_files(toy))
    detector.set_threshold(0.05)
    folder = detector.save(tmp_path / "legacy")
    pipe = pyimgano.load(folder)
    assert pipe.postprocess == [] and pipe.image_threshold_ == pipe.pixel_threshold_ == 0.05
    out = pipe.predict(eval_files(toy))
    np.testing.assert_array_equal(out.labels, detector.predict(eval_files(toy)))
    raw = detector.predict_anomaly_map(eval_files(toy))
    assert all(np.array_equal(k, m > 0.05) for k, m in zip(out.masks, raw))

    config = json.loads((folder / "pyimgano-model.json").read_text())
    (folder / "pyimgano-model.json").write_text(json.dumps({**config, "threshold": float("nan")}))
    with pytest.raises(ModelLoadError, match=r"pyimgano-model.json: corrupt model config \(NaN is not a number JSON allows\)"):
        pyimgano.load(folder)

    unset = pyimgano.create_detector("benchtest:mean").fit(train_files(toy)).save(tmp_path / "no-threshold")
    out = pyimgano.load(unset).predict(eval_files(toy))
    assert out.labels is None and out.masks is None and len(out.maps) == 7


@pytest.mark.parametrize("kwargs, message", [
    ({"postprocess": [{"name": "blur"}]}, "post-processing step 0 (blur): no postprocessor named 'blur'"),
    ({"postprocess": [{"name": "gaussian", "sigma": 0}]}, "sigma: Input should be greater than 0"),
    ({"image_threshold": "quantile:1.5"}, "image_threshold 'quantile:1.5': q: Input should be less than or equal"),
    ({"image_threshold": "top:3"}, "image_threshold 'top:3' does not parse; expected quantile:Q"),
    ({"pixel_threshold": "fixed:inf"}, "pixel_threshold 'fixed:inf': value: must be a finite number"),
    ({"image_threshold": None}, "image_threshold None"),
    ({"val_fraction": 1.0}, "val_fraction 1.0: Input should be less than 1"),
    ({"val_fraction": -0.1}, "val_fraction -0.1"),
    ({"seed": -1}, "seed -1"),
])
def test_bad_arguments_are_one_line_errors_when_the_pipeline_is_built(plugin, kwargs, message):
    with pytest.raises(pyimgano.PyimganoError) as info:
        pyimgano.Pipeline("benchtest:mean", **kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_pixel_threshold_or_postprocessing_for_a_detector_without_maps_is_refused(plugin):
    with pytest.raises(InvalidParams, match="benchtest:nomaps gives no anomaly maps, so there are no pixels"):
        pyimgano.Pipeline("benchtest:nomaps", pixel_threshold="quantile:0.99")
    with pytest.raises(InvalidParams, match="benchtest:nomaps gives no anomaly maps to post-process"):
        pyimgano.Pipeline("benchtest:nomaps", postprocess=[{"name": "standardize"}])
    pipe = pyimgano.Pipeline("benchtest:nomaps")  # the defaults adapt: no post-processing, no pixel threshold
    assert pipe.pixel_threshold is None and pipe.postprocess == []


@pytest.mark.parametrize("kwargs, fit_kwargs, message", [
    ({"val_fraction": 0.0}, {}, "val_fraction 0 leaves an empty validation split"),
    ({"val_fraction": 0.95}, {}, "leaves 0 to fit benchtest:mean"),
    ({}, {"val_images": []}, "an empty validation split"),
    ({"image_threshold": "f1"}, {}, "image_threshold 'f1' needs labelled validation images of both kinds"),
    ({"pixel_threshold": "f1"}, {"val_images": "VAL", "val_labels": [0, 1]}, "needs the defect masks"),
    ({}, {"val_labels": [0]}, "val_labels/val_masks describe val_images"),
])
def test_bad_fits_fail_before_the_detector_is_fitted(plugin, toy, monkeypatch, kwargs, fit_kwargs, message):
    pipe = pyimgano.Pipeline("benchtest:mean", **kwargs)
    monkeypatch.setattr(pipe.detector, "fit", lambda *a, **k: pytest.fail("the detector was fitted"))
    if fit_kwargs.get("val_images") == "VAL":
        fit_kwargs["val_images"] = eval_files(toy)[:2]
    with pytest.raises(InvalidParams, match=message):
        pipe.fit(train_files(toy), **fit_kwargs)


def test_fixed_thresholds_need_no_validation_images(plugin, toy):
    pipe = pyimgano.Pipeline("benchtest:mean", postprocess=[], image_threshold="fixed:0.1",
                             pixel_threshold="fixed:0.2", val_fraction=0)
    pipe.fit(train_files(toy))
    assert (pipe.n_train_, pipe.n_val_, pipe.image_threshold_, pipe.pixel_threshold_) == (10, 0, 0.1, 0.2)


def test_f1_thresholds_from_labelled_validation_images(plugin, toy):
    from pyimgano.thresholds import F1Threshold

    val = eval_files(toy)
    labels = [0, 0, 0, 1, 1, 1, 1]
    masks = [np.asarray(pyimgano.load_image(p))[..., 0] * 0 if i < 3 else
             np.asarray(pyimgano.load_image(toy / "alpha" / "ground_truth" / "spot" / f"{p.stem}_mask.png"))[..., 0] > 0
             for i, p in enumerate(val)]
    pipe = pyimgano.Pipeline("benchtest:mean", postprocess=[{"name": "standardize"}], image_threshold="f1",
                             pixel_threshold="f1")
    pipe.fit(train_files(toy), val_images=val, val_labels=labels, val_masks=masks)
    scores, maps = pipe.detector.score(val)
    assert pipe.image_threshold_ == F1Threshold().compute(scores, np.array(labels))
    # statistics come from the normal validation images only
    normal = maps[:3].astype(np.float64)
    assert pipe.postprocessing.steps[0][1].state["offset"] == pytest.approx(normal.mean(), rel=1e-12)
    processed = pipe.postprocess_maps(list(maps))
    truth = np.concatenate([np.asarray(m, bool).ravel() for m in masks])
    expected = F1Threshold().compute(np.concatenate([m.ravel() for m in processed]).astype(np.float64), truth)
    assert pipe.pixel_threshold_ == expected


def test_a_damaged_pipeline_file_is_a_clear_error(plugin, toy, tmp_path):
    pipe = pyimgano.Pipeline("benchtest:mean").fit(train_files(toy))
    folder = pipe.save(tmp_path / "model")
    saved = json.loads((folder / PIPELINE_FILE).read_text())
    for damage, message in [
        ({**saved, "format": 9}, "pipeline format 9 is not supported"),
        ({**saved, "postprocess": [{"name": "nope"}]}, r"post-processing step 0 \(nope\)"),
        ({**saved, "image_threshold": {"strategy": "quantile", "q": 0.99, "value": "NaN"}},
         "image_threshold.value: Input should be a finite number"),
        ({**saved, "postprocess": [{"name": "minmax"}]}, "needs statistics has none saved"),
    ]:
        (folder / PIPELINE_FILE).write_text(json.dumps(damage))
        with pytest.raises(ModelLoadError, match=message):
            pyimgano.load(folder)
    (folder / PIPELINE_FILE).write_text("{broken")
    with pytest.raises(ModelLoadError, match="corrupt pipeline file"):
        pyimgano.load(folder)


def test_save_refuses_a_file_or_a_folder_of_other_files(plugin, toy, tmp_path):
    pipe = pyimgano.Pipeline("benchtest:mean").fit(train_files(toy))
    (tmp_path / "file").write_text("x")
    with pytest.raises(pyimgano.OutputExists, match="exists and is not a folder"):
        pipe.save(tmp_path / "file")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("x")
    with pytest.raises(pyimgano.OutputExists, match="refusing to replace it"):
        pipe.save(tmp_path / "other")
    assert (tmp_path / "other" / "keep.txt").exists()


def test_find_regions_bounding_boxes_areas_and_peaks():
    mask = np.zeros((10, 12), bool)
    mask[1:4, 2:6] = True  # 12 pixels
    mask[7, 9] = mask[8, 10] = True  # two pixels touching at a corner: one 8-connected region
    amap = np.arange(120, dtype=np.float32).reshape(10, 12)
    regions = find_regions(mask, amap)
    assert regions == [{"bbox": [2, 1, 4, 3], "area": 12, "peak": float(amap[3, 5])},
                       {"bbox": [9, 7, 2, 2], "area": 2, "peak": float(amap[8, 10])}]
    assert find_regions(np.zeros((3, 3), bool)) == []
