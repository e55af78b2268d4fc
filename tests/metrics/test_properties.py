"""Exactness against straightforward implementations, and invariants (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from brute_force import aupro_by_full_sort
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from pyimgano.metrics import (
    aupro,
    image_ap,
    image_auroc,
    image_f1_max,
    pixel_ap,
    pixel_auroc,
    pixel_f1_max,
    pixel_metrics,
)


@st.composite
def labelled_maps(draw, max_levels=6):
    """Integer-valued maps (many ties) and masks with both classes, as float64."""
    n = draw(st.integers(1, 4))
    h, w = draw(st.integers(2, 9)), draw(st.integers(2, 9))
    seed = draw(st.integers(0, 2**31 - 1))
    levels = draw(st.integers(2, max_levels))
    rng = np.random.default_rng(seed)
    masks = rng.random((n, h, w)) < draw(st.floats(0.1, 0.6))
    masks.flat[0], masks.flat[-1] = True, False
    maps = rng.integers(0, levels, (n, h, w)).astype(np.float64) + masks * draw(st.integers(0, 2))
    return masks, maps


LIMITS = st.sampled_from([0.01, 0.05, 0.3, 0.5, 1.0])


@settings(max_examples=60, deadline=None)
@given(labelled_maps(), LIMITS)
def test_aupro_equals_the_full_sort_definition(data, limit):
    masks, maps = data
    assert aupro(masks, maps, fpr_limit=limit) == pytest.approx(aupro_by_full_sort(masks, maps, limit), abs=1e-12)
    assert pixel_metrics(masks, maps, fpr_limit=limit)["aupro"] == pytest.approx(
        aupro_by_full_sort(masks, maps, limit), abs=1e-12
    )


@settings(max_examples=60, deadline=None)
@given(labelled_maps(max_levels=30))
def test_pixel_ranking_metrics_equal_scikit_learn(data):
    masks, maps = data
    y, s = masks.ravel(), maps.ravel()
    assert pixel_auroc(masks, maps) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert pixel_ap(masks, maps) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    precision, recall, thresholds = precision_recall_curve(y, s)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    value, threshold = pixel_f1_max(masks, maps)
    assert value == pytest.approx(f1.max(), abs=1e-12)
    predicted = s >= threshold
    tp = np.sum(predicted & y)
    assert 2 * tp / (predicted.sum() + y.sum()) == pytest.approx(value, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(labelled_maps(), LIMITS)
def test_strictly_increasing_transforms_change_nothing(data, limit):
    masks, maps = data
    transformed = 3.0 * maps**3 + maps - 7.0  # exact on small integers, strictly increasing
    assert aupro(masks, transformed, limit) == pytest.approx(aupro(masks, maps, limit), abs=1e-12)
    assert pixel_auroc(masks, transformed) == pytest.approx(pixel_auroc(masks, maps), abs=1e-12)
    labels = masks.reshape(len(masks), -1).any(axis=1)
    scores, tscores = maps.reshape(len(maps), -1).max(1), transformed.reshape(len(maps), -1).max(1)
    if 0 < labels.sum() < labels.size:
        assert image_auroc(labels, tscores) == pytest.approx(image_auroc(labels, scores), abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(labelled_maps(), LIMITS)
def test_a_perfect_map_scores_one_and_its_inverse_zero(data, limit):
    masks, maps = data
    perfect = masks + 0.5 * (maps / (maps.max() + 1))  # every defect pixel above every normal one
    assert aupro(masks, perfect, limit) == pytest.approx(1.0, abs=1e-12)
    assert pixel_auroc(masks, perfect) == 1.0
    assert pixel_ap(masks, perfect) == pytest.approx(1.0, abs=1e-12)
    assert pixel_f1_max(masks, perfect)[0] == pytest.approx(1.0, abs=1e-12)
    assert aupro(masks, -perfect, limit) == pytest.approx(0.0, abs=1e-12)
    assert pixel_auroc(masks, -perfect) == 0.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 5)), min_size=2, max_size=40))
def test_image_metrics_equal_scikit_learn(pairs):
    labels = np.array([p[0] for p in pairs], int)
    scores = np.array([p[1] for p in pairs], float)
    if labels.min() == labels.max():
        return
    assert image_auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert image_ap(labels, scores) == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    value, threshold = image_f1_max(labels, scores)
    predicted = scores >= threshold
    assert 2 * np.sum(predicted & (labels == 1)) / (predicted.sum() + labels.sum()) == pytest.approx(value)


def test_regions_touching_diagonally_are_one_region():
    mask = np.zeros((1, 6, 6), bool)
    mask[0, 1, 1] = mask[0, 2, 2] = True  # one 8-connected region of two pixels
    mask[0, 4, 4] = True  # a second region
    amap = np.zeros((1, 6, 6))
    amap[0, 1, 1] = 2.0  # half of region one, none of region two, above every normal pixel
    # the curve is (0, 0), (0, 0.25) at score 2, then (1, 1) at score 0: area 0.625
    assert aupro(mask, amap, fpr_limit=0.5) == pytest.approx(aupro_by_full_sort(mask, amap, 0.5))
    value = aupro(mask, amap, fpr_limit=1.0)
    assert value == pytest.approx(0.25 + 0.5 * 0.75)


def test_differently_sized_maps_are_accepted():
    rng = np.random.default_rng(0)
    masks = [rng.random((5, 7)) < 0.3, rng.random((9, 4)) < 0.3, np.zeros((3, 3), bool)]
    maps = [rng.random(m.shape).astype(np.float32) for m in masks]
    y = np.concatenate([m.ravel() for m in masks])
    s = np.concatenate([m.ravel() for m in maps])
    assert pixel_auroc(masks, maps) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert aupro(masks, maps) == pytest.approx(aupro_by_full_sort(masks, maps, 0.3), abs=1e-12)


def test_float32_maps_are_not_promoted_and_stay_exact():
    rng = np.random.default_rng(1)
    masks = rng.random((3, 20, 20)) < 0.2
    maps = (rng.random((3, 20, 20)) + masks).astype(np.float32)
    assert aupro(masks, maps) == pytest.approx(aupro_by_full_sort(masks, maps, 0.3), abs=1e-12)
