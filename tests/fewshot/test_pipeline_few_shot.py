"""Pipeline.fit(anomalies=...): tuning, training, saving and loading a few-shot pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import pyimgano
from pyimgano.errors import InvalidParams
from pyimgano.thresholds import DEFAULT_IMAGE_THRESHOLD, make_strategy


def files(root: Path, category: str = "alpha"):
    base = root / category
    train = sorted((base / "train" / "good").glob("*.png"))
    defects = sorted((base / "test").glob("[cs]*/*.png"))
    masks = [base / "ground_truth" / p.parent.name / f"{p.stem}_mask.png" for p in defects]
    good = sorted((base / "test" / "good").glob("*.png"))
    return train, defects, masks, good


def test_a_few_shot_pipeline_saves_what_it_tuned_and_predicts_the_same_after_loading(plugin, kinds_root, tmp_path):
    train, defects, masks, good = files(kinds_root)
    pipe = pyimgano.Pipeline("benchtest:mean", postprocess=[{"name": "standardize"}], val_fraction=0.2)
    pipe.fit(train, anomalies=defects[:2], anomaly_masks=masks[:2])
    record = pipe.few_shot_
    assert record["k"] == 2 and record["shots"] == [str(p) for p in defects[:2]] and not record["trained"]
    assert not record["image_only"] and record["objective"] == "pixel_f1"
    assert pipe.image_threshold.spec() == "f1" and pipe.pixel_threshold.spec() == "f1"
    assert record["tuned"]["image_threshold"] == pipe.image_threshold_
    assert record["tuned"]["pixel_threshold"] == pipe.pixel_threshold_
    assert record["zero_shot"]["image_threshold"] == make_strategy(DEFAULT_IMAGE_THRESHOLD).to_dict()
    assert pipe.n_val_ == 2 and pipe.n_train_ == 8 and pipe.calibration_["n_anomalous"] == 2
    out = pipe.predict(defects[2:] + good)
    pipe.save(tmp_path / "model")
    saved = json.loads((tmp_path / "model" / "pyimgano-pipeline.json").read_text())
    assert saved["few_shot"]["k"] == 2 and saved["image_threshold"]["strategy"] == "f1"
    again = pyimgano.load(tmp_path / "model")
    same = again.predict(defects[2:] + good)
    assert np.array_equal(out.labels, same.labels) and all(np.array_equal(a, b) for a, b in zip(out.masks, same.masks))
    assert again.few_shot_ == json.loads(json.dumps(record))
    # recalibrating a loaded few-shot pipeline starts again from its zero-shot strategies
    again.calibrate_few_shot(train[:2], defects[:1], masks[:1])
    assert again.few_shot_["k"] == 1 and again.few_shot_["zero_shot"] == record["zero_shot"]


def test_without_masks_only_the_image_threshold_is_tuned(plugin, kinds_root):
    train, defects, _, _ = files(kinds_root)
    zero = pyimgano.Pipeline("benchtest:mean", val_fraction=0.2).fit(train)
    pipe = pyimgano.Pipeline("benchtest:mean", val_fraction=0.2).fit(train, anomalies=defects[:2])
    assert pipe.few_shot_["image_only"] and pipe.pixel_threshold.spec() == zero.pixel_threshold.spec()
    assert pipe.pixel_threshold_ == zero.pixel_threshold_ and pipe.image_threshold.spec() == "f1"
    assert pipe.few_shot_["notes"] == ["the shots have no defect masks: only the image threshold is tuned "
                                       "(post-processing and pixel threshold as zero-shot)"]


def test_a_detector_that_learns_from_anomalies_gets_them_unless_told_not_to(plugin, kinds_root):
    train, defects, masks, _ = files(kinds_root)
    pipe = pyimgano.Pipeline("benchtest:learning", val_fraction=0.2)
    pipe.fit(train, anomalies=defects[:2], anomaly_masks=masks[:2])
    assert pipe.few_shot_["trained"] and pipe.detector.seen_anomalies_ == 2
    calibrated = pyimgano.Pipeline("benchtest:learning", val_fraction=0.2)
    calibrated.fit(train, anomalies=defects[:2], anomaly_masks=masks[:2], few_shot={"train": False})
    assert not calibrated.few_shot_["trained"] and calibrated.detector.seen_anomalies_ == 0
    unmasked = pyimgano.Pipeline("benchtest:learning", val_fraction=0.2).fit(train, anomalies=defects[:2])
    assert not unmasked.few_shot_["trained"] and unmasked.detector.seen_anomalies_ == 0
    assert "learns from anomalies with their defect masks only" in unmasked.few_shot_["notes"][0]


def test_bad_few_shot_input_is_one_clear_line(plugin, kinds_root):
    train, defects, masks, _ = files(kinds_root)
    detector = pyimgano.create_detector("benchtest:mean")
    with pytest.raises(InvalidParams, match="learns from normal images only and cannot use anomalies"):
        detector.fit(train, anomalies=defects[:1])
    pipe = pyimgano.Pipeline("benchtest:mean", val_fraction=0.2)
    with pytest.raises(InvalidParams, match=r"1 anomaly mask\(s\) for 2 anomalous image\(s\)"):
        pipe.fit(train, anomalies=defects[:2], anomaly_masks=masks[:1])
    with pytest.raises(InvalidParams, match="has shape"):
        pipe.fit(train, anomalies=defects[:1], anomaly_masks=[np.zeros((3, 3), bool)])
    with pytest.raises(InvalidParams, match="anomalies is empty"):
        pipe.fit(train, anomalies=[])
    with pytest.raises(InvalidParams, match="not both"):
        pipe.fit(train, train[:2], val_labels=[0, 0], anomalies=defects[:1])
    with pytest.raises(InvalidParams, match="few-shot settings"):
        pipe.fit(train, anomalies=defects[:1], few_shot={"objective": "auroc"})
    with pytest.raises(InvalidParams, match="val_fraction 0"):
        pyimgano.Pipeline("benchtest:mean", val_fraction=0.0).fit(train, anomalies=defects[:1])
