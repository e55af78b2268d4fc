"""Post-processing chains from plain config, fitting on training maps only, and the few-shot tuner."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pyimgano import InvalidParams, NotFittedError
from pyimgano.metrics import aupro, pixel_f1_max
from pyimgano.postprocess import PostProcessing, tune_postprocessing


def _labelled(seed=0, n=4, size=32):
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        y, x = rng.integers(4, size - 12, 2)
        masks[i, y : y + 8, x : x + 8] = 1
    maps = (rng.random((n, size, size)) + 0.6 * masks).astype(np.float32)
    return maps, masks


def test_from_config_accepts_lists_dicts_and_json():
    steps = [{"name": "gaussian", "sigma": 2}, {"name": "percentile", "params": {"low": 2, "per_image": True}}]
    for config in (steps, {"steps": steps}, json.dumps(steps)):
        pipe = PostProcessing.from_config(config)
        assert [name for name, _ in pipe.steps] == ["gaussian", "percentile"]
        assert pipe.to_config()[1] == {"name": "percentile", "low": 2.0, "high": 99.0, "per_image": True, "clip": True}
    rebuilt = PostProcessing.from_config(json.loads(json.dumps(pipe.to_config())))
    maps, _ = _labelled()
    np.testing.assert_array_equal(rebuilt(maps), pipe(maps))


@pytest.mark.parametrize(
    "config, message",
    [("[not json", "not valid JSON"), ({"step": []}, "exactly one key 'steps'"), (42, "must be a list"),
     ([{"sigma": 2}], "step 0 must be a dict with a 'name'"),
     ([{"name": "gaussian"}, {"name": "gaussian", "sigma": -1}], r"post-processing step 1 \(gaussian\).*sigma")],
)
def test_bad_configs_name_the_step(config, message):
    with pytest.raises(InvalidParams, match=message):
        PostProcessing.from_config(config)


def test_unknown_step_names_are_reported():
    with pytest.raises(LookupError, match="post-processing step 0 \\(blur\\)"):
        PostProcessing.from_config([{"name": "blur"}])


def test_fit_uses_the_given_maps_in_order_and_state_round_trips():
    train = np.random.default_rng(3).random((3, 16, 16)) * 10
    pipe = PostProcessing.from_config([{"name": "gaussian", "sigma": 1}, {"name": "minmax"}])
    assert pipe.needs_fit
    with pytest.raises(NotFittedError):
        pipe(train)
    out = pipe.fit(train)(train)
    assert out.min() == pytest.approx(0.0, abs=1e-6) and out.max() == pytest.approx(1.0, abs=1e-6)
    config = pipe.to_config(include_state=True)
    assert set(config[1]["state"]) == {"offset", "scale"}
    restored = PostProcessing.from_config(json.loads(json.dumps(config)))
    np.testing.assert_array_equal(restored(train), out)


def test_fit_passes_each_fitted_step_the_maps_before_it_and_transforms_no_further(monkeypatch):
    # calibration maps are hundreds of megabytes: fit transforms them only to feed a later
    # fitted step, never after the last one (the caller transforms once, with every statistic)
    from pyimgano.postprocess import steps as steps_module

    train = np.random.default_rng(4).random((3, 16, 16)) * 10
    pipe = PostProcessing.from_config([{"name": "minmax"}, {"name": "standardize"}, {"name": "gaussian", "sigma": 1}])
    calls = []
    original = steps_module.Step.__call__

    def counted(self, maps):
        calls.append(self.name)
        return original(self, maps)

    monkeypatch.setattr(steps_module.Step, "__call__", counted)
    pipe.fit(train)
    assert calls == ["minmax"]
    minmax, standardize = pipe.steps[0][1], pipe.steps[1][1]
    scaled = (train - train.min()) / (train.max() - train.min())
    assert standardize.state["offset"] == pytest.approx(scaled.mean())
    assert minmax.state == {"offset": pytest.approx(train.min()), "scale": pytest.approx(train.max() - train.min())}


def test_tune_postprocessing_picks_the_best_grid_point_and_reports_it():
    maps, masks = _labelled()
    space = [{"name": "gaussian", "sigma": [0.5, 2.0, 4.0]}, {"name": "minmax", "per_image": True}]
    result = tune_postprocessing(maps, masks, space, objective="aupro")
    scores = [t["score"] for t in result.trials]
    assert len(scores) == 3 and result.score == max(scores)
    assert result.config == result.trials[int(np.argmax(scores))]["config"]
    processed = result.postprocessing(maps)
    assert aupro(masks, processed) == result.score
    assert result.threshold == pixel_f1_max(masks, processed)[1]
    assert result.score > aupro(masks, maps)  # smoothing helps on noisy blob maps
    json.dumps(result.to_dict())


def test_tune_postprocessing_pixel_f1_objective():
    maps, masks = _labelled(seed=1)
    result = tune_postprocessing(maps, masks, [{"name": "gaussian", "sigma": [1.0, 3.0]}], objective="pixel_f1")
    assert result.score == pixel_f1_max(masks, result.postprocessing(maps))[0]
    assert result.objective == "pixel_f1"


def test_tune_postprocessing_never_fits_normalisation_on_the_labelled_maps():
    maps, masks = _labelled()
    space = [{"name": "minmax"}]
    with pytest.raises(InvalidParams, match="fit_maps"):
        tune_postprocessing(maps, masks, space)
    train = np.full((2, 32, 32), 5.0, np.float32)
    train[0, 0, 0] = 7.0
    result = tune_postprocessing(maps, masks, space, fit_maps=train)
    assert result.postprocessing.steps[0][1].state == {"offset": 5.0, "scale": 2.0}


def test_tune_postprocessing_rejects_bad_objectives_and_huge_grids():
    maps, masks = _labelled()
    with pytest.raises(InvalidParams, match="objective"):
        tune_postprocessing(maps, masks, [{"name": "gaussian"}], objective="auroc")
    with pytest.raises(InvalidParams, match="combinations"):
        tune_postprocessing(maps, masks, [{"name": "gaussian", "sigma": list(range(1, 40)), "truncate": list(range(1, 40))}])
    with pytest.raises(InvalidParams, match="no candidates"):
        tune_postprocessing(maps, masks, [{"name": "gaussian", "sigma": []}])
