"""Few-shot tuning: what it chooses and on what, on maps whose best post-processing is known."""

from __future__ import annotations

import numpy as np
import pytest

from pyimgano.errors import InvalidParams
from pyimgano.pipeline.fewshot import FewShotSettings, SearchSpace, tune_few_shot

SIDE = 64


def blob(cy: int, cx: int, r: int = 6) -> np.ndarray:
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def speckled(rng: np.random.Generator, mask: np.ndarray | None = None, specks: int = 6) -> np.ndarray:
    """Low noise, a few isolated one-pixel specks as hot as a defect, and the defect (if any)."""
    amap = rng.normal(0.0, 0.05, (SIDE, SIDE)).astype(np.float32)
    ys, xs = rng.integers(0, SIDE, size=(2, specks))
    amap[ys, xs] = 1.0
    if mask is not None:
        amap[mask] += 1.0
    return amap


def scene(seed: int = 0, n_val: int = 3, n_shots: int = 2, specks: int = 6):
    rng = np.random.default_rng(seed)
    masks = [blob(20 + 10 * i, 30) for i in range(n_shots)]
    val_maps = [speckled(rng, specks=specks) for _ in range(n_val)]
    shot_maps = [speckled(rng, m, specks=specks) for m in masks]
    return val_maps, shot_maps, masks


def test_specks_are_removed_by_opening_or_minimum_area_and_thresholds_are_f1_optimal():
    val_maps, shot_maps, masks = scene()
    cal = tune_few_shot([{"name": "standardize"}], np.array([0.1, 0.2, 0.3]), val_maps, np.array([0.9, 0.25]),
                        shot_maps, masks)
    assert not cal.image_only and cal.objective == "pixel_f1"
    names = [s["name"] for s in cal.postprocess]
    assert "standardize" in names and ("open" in names or "remove_small" in names), names
    processed = cal.postprocessing(shot_maps + val_maps)
    truth = masks + [np.zeros((SIDE, SIDE), bool)] * len(val_maps)
    flagged = [m > cal.pixel_threshold for m in processed]
    tp = sum(int((f & t).sum()) for f, t in zip(flagged, truth))
    fp = sum(int((f & ~t).sum()) for f, t in zip(flagged, truth))
    assert fp == 0 and tp > 0.8 * sum(int(t.sum()) for t in truth)  # the specks are gone, the blobs stay
    assert cal.pixel_f1 == pytest.approx(2 * tp / (2 * tp + fp + sum(int(t.sum()) for t in truth) - tp))
    # scores 0.1 0.2 0.3 normal, 0.25 and 0.9 defective: flagging only 0.9 gives F1 2/3, flagging
    # 0.25 and above F1 2*2/(2+2+1) = 0.8: the cut sits between 0.2 and 0.25
    assert 0.2 < cal.image_threshold < 0.25 and cal.image_f1 == pytest.approx(0.8)
    tuned = cal.tuned()
    assert tuned["n_val"] == 3 and tuned["n_shots"] == 2 and tuned["n_trials"] == len(cal.trials) > 16
    assert tuned["postprocess"][names.index("standardize")]["state"]  # fitted statistics are on record


def test_normalisation_statistics_come_from_the_validation_maps_only():
    val_maps, shot_maps, masks = scene(1)
    space = FewShotSettings(search=SearchSpace(sigma=[], open_size=[], min_area=[]))
    one = tune_few_shot([{"name": "standardize"}], np.zeros(3), val_maps, np.ones(2), shot_maps, masks, space)
    hotter = [m * 5 for m in shot_maps]
    two = tune_few_shot([{"name": "standardize"}], np.zeros(3), val_maps, np.ones(2), hotter, masks, space)
    state = [s["state"] for s in one.tuned()["postprocess"]]
    assert state == [s["state"] for s in two.tuned()["postprocess"]]
    pixels = np.concatenate([m.ravel() for m in val_maps]).astype(np.float64)
    assert state[0]["offset"] == pytest.approx(pixels.mean()) and state[0]["scale"] == pytest.approx(pixels.std())


def test_the_aupro_objective_and_a_search_space_of_ones_own():
    val_maps, shot_maps, masks = scene(2)
    settings = FewShotSettings(objective="aupro", search=SearchSpace(sigma=[1.5], open_size=[3], min_area=[]))
    cal = tune_few_shot([], np.zeros(3), val_maps, np.ones(2), shot_maps, masks, settings)
    assert cal.objective == "aupro" and cal.min_area is None
    configs = [t["postprocess"] for t in cal.trials if "postprocess" in t]
    assert configs == [[], [{"name": "open", "size": 3}], [{"name": "gaussian", "sigma": 1.5}],
                       [{"name": "gaussian", "sigma": 1.5}, {"name": "open", "size": 3}]]
    assert all("aupro" in t for t in cal.trials if "postprocess" in t)


def test_default_search_space_scales_with_the_maps():
    space = SearchSpace()
    assert space.resolve(256) == {"sigma": [1.0, 2.0, 4.0], "open_size": [3, 5, 7], "min_area": [16, 64, 256]}
    assert space.resolve(512) == {"sigma": [2.0, 4.0, 8.0], "open_size": [5, 9, 13], "min_area": [64, 256, 1024]}
    with pytest.raises(InvalidParams, match=r"search.sigma.0: Input should be greater than 0"):
        FewShotSettings.of({"search": {"sigma": [-1]}})
    with pytest.raises(InvalidParams, match="objective"):
        FewShotSettings.of({"objective": "auroc"})


def test_without_masks_or_maps_only_the_image_threshold_is_tuned():
    val_maps, shot_maps, _ = scene(3)
    base = [{"name": "standardize"}]
    for maps, masks, why in ((shot_maps, None, "the shots have no defect masks"),
                             (None, None, "the detector gives no anomaly maps")):
        cal = tune_few_shot(base, np.array([0.1, 0.2, 0.3]), val_maps if maps else None, np.array([0.5, 0.6]),
                            maps, masks)
        assert cal.image_only and cal.pixel_threshold is None and cal.objective is None
        assert cal.notes == [f"{why}: only the image threshold is tuned (post-processing and pixel threshold as "
                             "zero-shot)"]
        assert 0.3 < cal.image_threshold < 0.5
    empty = [np.zeros((SIDE, SIDE), bool)] * 2
    assert tune_few_shot(base, np.zeros(3), val_maps, np.ones(2), shot_maps, empty).image_only


def test_a_tuning_set_needs_both_kinds():
    val_maps, shot_maps, masks = scene(4)
    with pytest.raises(InvalidParams, match="needs normal validation images"):
        tune_few_shot([], np.zeros(0), [], np.ones(2), shot_maps, masks)
    with pytest.raises(InvalidParams, match="at least one defective image"):
        tune_few_shot([], np.zeros(3), val_maps, np.zeros(0), [], [])
