"""Bad input gives a clear MetricError; undefined metrics give NaN only when asked."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import pyimgano
from pyimgano import MetricError
from pyimgano.metrics import (
    UndefinedMetricWarning,
    aupro,
    image_ap,
    image_auroc,
    image_f1_max,
    pixel_ap,
    pixel_auroc,
    pixel_f1_max,
    pixel_metrics,
)

PIXEL = [aupro, pixel_auroc, pixel_ap, pixel_f1_max, pixel_metrics]
IMAGE = [image_auroc, image_ap, image_f1_max]


def _data(n=3, h=6, w=5):
    rng = np.random.default_rng(0)
    masks = np.zeros((n, h, w), np.uint8)
    masks[0, 1:3, 1:3] = 1
    return masks, rng.random((n, h, w)).astype(np.float32)


@pytest.mark.parametrize("metric", PIXEL)
def test_mismatched_shapes(metric):
    masks, maps = _data()
    with pytest.raises(MetricError, match=r"masks\[0\] has shape \(6, 5\) but maps\[0\] has shape \(6, 4\)"):
        metric(masks, maps[:, :, :4])
    with pytest.raises(MetricError, match="got 3 masks but 2 maps"):
        metric(masks, maps[:2])
    with pytest.raises(MetricError, match="N x H x W"):
        metric(masks[0], maps[0])


@pytest.mark.parametrize("metric", PIXEL)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_maps(metric, bad):
    masks, maps = _data()
    maps[1, 2, 3] = bad
    with pytest.raises(MetricError, match=r"maps\[1\] has 1 non-finite value"):
        metric(masks, maps)


@pytest.mark.parametrize("metric", PIXEL)
def test_masks_must_be_binary(metric):
    masks, maps = _data()
    odd = masks.copy()
    odd[2, 0, 0] = 128
    with pytest.raises(MetricError, match=r"masks\[2\] must contain only 0/1 \(or only 0/255\) values; found \[128\]"):
        metric(odd, maps)
    mixed = masks.copy() * 255
    mixed[0, 0, 0] = 1
    with pytest.raises(MetricError, match="both 1 and 255"):
        metric(mixed, maps)
    negative = masks.astype(np.int16)
    negative[0, 5, 4] = -1
    with pytest.raises(MetricError, match=r"found \[-1\]"):
        metric(negative, maps)


@pytest.mark.parametrize("metric", [aupro, pixel_auroc, pixel_ap])
def test_0_255_masks_are_binarised(metric):
    masks, maps = _data()
    assert metric(masks * 255, maps) == metric(masks, maps) == metric(masks.astype(bool), maps)
    assert metric(masks.astype(np.float32), maps) == metric(masks, maps)


@pytest.mark.parametrize("metric", PIXEL)
def test_empty_sets(metric):
    with pytest.raises(MetricError, match="empty"):
        metric(np.zeros((0, 4, 4)), np.zeros((0, 4, 4)))
    with pytest.raises(MetricError, match="empty"):
        metric([], [])
    with pytest.raises(MetricError, match="no pixels"):
        metric(np.zeros((2, 0, 4)), np.zeros((2, 0, 4)))


@pytest.mark.parametrize("metric", IMAGE)
def test_image_level_bad_input(metric):
    with pytest.raises(MetricError, match="empty"):
        metric([], [])
    with pytest.raises(MetricError, match="differ in length"):
        metric([0, 1, 1], [0.1, 0.2])
    with pytest.raises(MetricError, match="non-finite"):
        metric([0, 1], [0.1, np.nan])
    with pytest.raises(MetricError, match=r"labels must be 0/1; found \[2\]"):
        metric([0, 2], [0.1, 0.2])
    with pytest.raises(MetricError, match="1-D"):
        metric([[0, 1]], [[0.1, 0.2]])


@pytest.mark.parametrize("metric", [image_auroc, image_ap, image_f1_max])
def test_single_class_images(metric):
    labels, scores = [0, 0, 0], [0.1, 0.5, 0.2]
    with pytest.raises(MetricError, match="undefined.*nan_on_undefined=True"):
        metric(labels, scores)
    with pytest.warns(UndefinedMetricWarning):
        value = metric(labels, scores, nan_on_undefined=True)
    assert np.isnan(value[0] if isinstance(value, tuple) else value)


def test_all_anomalous_images_define_ap_and_f1_but_not_auroc():
    assert image_ap([1, 1], [0.3, 0.9]) == 1.0
    assert image_f1_max([1, 1], [0.3, 0.9]) == (1.0, pytest.approx(0.3))
    with pytest.raises(MetricError, match="image_auroc is undefined"):
        image_auroc([1, 1], [0.3, 0.9])


@pytest.mark.parametrize("metric", [aupro, pixel_auroc, pixel_ap, pixel_f1_max])
def test_masks_without_defects(metric):
    masks, maps = _data()
    masks[:] = 0
    with pytest.raises(MetricError, match="undefined"):
        metric(masks, maps)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = metric(masks, maps, nan_on_undefined=True)
    assert any(issubclass(w.category, UndefinedMetricWarning) for w in caught)
    assert np.isnan(value[0] if isinstance(value, tuple) else value)


def test_masks_that_are_all_defect():
    masks, maps = _data()
    masks[:] = 1
    with pytest.raises(MetricError, match="aupro is undefined: there are no defect-free pixels"):
        aupro(masks, maps)
    with pytest.raises(MetricError, match="pixel_auroc is undefined"):
        pixel_auroc(masks, maps)
    assert pixel_ap(masks, maps) == 1.0


def test_pixel_metrics_nan_on_undefined():
    masks, maps = _data()
    masks[:] = 0
    with pytest.warns(UndefinedMetricWarning):
        values = pixel_metrics(masks, maps, nan_on_undefined=True)
    assert set(values) == {"pixel_auroc", "pixel_ap", "pixel_f1_max", "pixel_f1_threshold", "aupro"}
    assert all(np.isnan(v) for v in values.values())


@pytest.mark.parametrize("limit", [0.0, -0.1, 1.5, float("nan")])
def test_fpr_limit_out_of_range(limit):
    masks, maps = _data()
    with pytest.raises(MetricError, match="fpr_limit must be in"):
        aupro(masks, maps, fpr_limit=limit)


def test_non_numeric_input():
    masks, maps = _data()
    with pytest.raises(MetricError, match="maps must be real numbers"):
        pixel_auroc(masks, maps.astype(np.complex64))
    with pytest.raises(MetricError, match="masks\\[0\\] must be bool"):
        pixel_auroc(masks.astype(str), maps)


def test_metrics_are_registered_through_the_builtin_plugin():
    for name in ["image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_ap", "pixel_f1_max", "aupro"]:
        assert pyimgano.get_metric(name) is getattr(pyimgano.metrics, name)
        assert pyimgano.get_metric(f"core:{name}") is getattr(pyimgano.metrics, name)
