"""Every metric matches the values of the official MVTec AD code and scikit-learn to 1e-6."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pyimgano.metrics import (
    aupro,
    image_ap,
    image_auroc,
    pixel_ap,
    pixel_auroc,
    pixel_f1_max,
    pixel_metrics,
)
from pyimgano_testutils import shared_path

CASES = ["blobs_64", "ties_8_levels", "diagonal_regions", "mostly_good", "perfect", "large_256"]


@pytest.fixture(scope="module")
def reference():
    arrays = np.load(shared_path("reference", "pixel_metric_cases.npz"))
    values = json.loads(shared_path("reference", "pixel_metric_cases.json").read_text())["cases"]
    return arrays, values


@pytest.mark.parametrize("case", CASES)
def test_pixel_metrics_match_reference(reference, case):
    arrays, values = reference
    maps, masks = arrays[f"{case}__maps"], arrays[f"{case}__masks"]
    expected = values[case]
    assert list(maps.shape) == expected["shape"]
    for limit in ("0.3", "0.05", "1.0"):
        assert aupro(masks, maps, fpr_limit=float(limit)) == pytest.approx(expected[f"aupro@{limit}"], abs=1e-6)
    assert pixel_auroc(masks, maps) == pytest.approx(expected["pixel_auroc"], abs=1e-6)
    assert pixel_ap(masks, maps) == pytest.approx(expected["pixel_ap"], abs=1e-6)
    assert pixel_f1_max(masks, maps)[0] == pytest.approx(expected["pixel_f1_max"], abs=1e-6)
    together = pixel_metrics(masks, maps)
    assert together["aupro"] == pytest.approx(expected["aupro@0.3"], abs=1e-6)
    assert together["pixel_auroc"] == pytest.approx(expected["pixel_auroc"], abs=1e-6)
    assert together["pixel_ap"] == pytest.approx(expected["pixel_ap"], abs=1e-6)
    assert together["pixel_f1_max"] == pytest.approx(expected["pixel_f1_max"], abs=1e-6)


@pytest.mark.parametrize("case", CASES)
def test_image_metrics_of_max_match_reference(reference, case):
    arrays, values = reference
    maps, masks = arrays[f"{case}__maps"], arrays[f"{case}__masks"]
    labels = masks.reshape(len(masks), -1).max(axis=1)
    assert labels.tolist() == values[case]["image_labels_from_masks"]
    scores = maps.reshape(len(maps), -1).max(axis=1)
    assert image_auroc(labels, scores) == pytest.approx(values[case]["image_auroc_of_max"], abs=1e-6)
    assert image_ap(labels, scores) == pytest.approx(values[case]["image_ap_of_max"], abs=1e-6)


def test_lists_of_maps_give_the_same_values(reference):
    arrays, values = reference
    maps, masks = arrays["diagonal_regions__maps"], arrays["diagonal_regions__masks"]
    assert aupro(list(masks), list(maps)) == pytest.approx(values["diagonal_regions"]["aupro@0.3"], abs=1e-6)
    assert pixel_auroc(list(masks * 255), list(maps)) == pytest.approx(
        values["diagonal_regions"]["pixel_auroc"], abs=1e-6
    )
