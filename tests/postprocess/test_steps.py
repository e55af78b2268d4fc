"""Each built-in post-processing step: what it computes, its params model, its registration."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

import pyimgano
from pyimgano import InvalidParams, NotFittedError
from pyimgano.postprocess.steps import BUILTIN_STEPS

RNG = np.random.default_rng(0)
MAPS = RNG.random((3, 12, 10)).astype(np.float32)
TRAIN = (RNG.random((4, 12, 10)) * 2 + 1).astype(np.float32)  # values in [1, 3)


def make(name, **params):
    return pyimgano.create_postprocessor(name, **params)


def test_every_step_is_registered_with_its_params_model():
    specs = {name.split(":")[1] for name in pyimgano.list_postprocessors()}
    assert specs == set(BUILTIN_STEPS)
    registry = pyimgano.get_registry()
    for name, cls in BUILTIN_STEPS.items():
        spec, record = registry.resolve("postprocessor", name)
        assert record.name == "core" and spec.params is cls.params_model
        assert spec.fits_statistics == (name in {"minmax", "percentile", "standardize"})
        assert isinstance(make(name), cls)


@pytest.mark.parametrize(
    "name, params",
    [("gaussian", {"sigma": 0}), ("gaussian", {"sigma": "wide"}), ("percentile", {"low": 90, "high": 10}),
     ("open", {"size": 0}), ("remove_small", {"connectivity": 6}), ("minmax", {"bogus": 1})],
)
def test_bad_params_are_rejected_by_name(name, params):
    with pytest.raises(InvalidParams, match=f"postprocessor core:{name}"):
        make(name, **params)


def test_minmax_uses_fitted_statistics_not_the_test_maps():
    step = make("minmax")
    with pytest.raises(NotFittedError, match="minmax needs statistics"):
        step(MAPS)
    out = step.fit(TRAIN)(MAPS)
    low, high = TRAIN.min(), TRAIN.max()
    np.testing.assert_allclose(out, (MAPS - low) / (high - low), rtol=1e-5, atol=1e-6)
    assert out.dtype == np.float32 and out.shape == MAPS.shape
    assert out.max() < 0  # test maps lie below the training range; nothing was refitted on them


def test_minmax_per_image():
    out = make("minmax", per_image=True)(MAPS)
    np.testing.assert_allclose(out.min(axis=(1, 2)), 0, atol=1e-6)
    np.testing.assert_allclose(out.max(axis=(1, 2)), 1, atol=1e-6)


def test_percentile_normalisation():
    step = make("percentile", low=5, high=95, clip=False).fit(TRAIN)
    low, high = np.percentile(TRAIN.astype(np.float64), [5, 95])
    np.testing.assert_allclose(step(TRAIN), (TRAIN - low) / (high - low), rtol=1e-5, atol=1e-5)
    clipped = make("percentile", per_image=True)(MAPS)
    assert clipped.min() == 0 and clipped.max() == 1


@pytest.mark.parametrize("robust", [False, True])
def test_standardize(robust):
    out = make("standardize", robust=robust).fit(TRAIN)(TRAIN)
    flat = out.astype(np.float64).ravel()
    if robust:
        assert abs(np.median(flat)) < 1e-5
        assert 1.4826 * np.median(np.abs(flat)) == pytest.approx(1.0, rel=1e-4)
    else:
        assert abs(flat.mean()) < 1e-5 and flat.std() == pytest.approx(1.0, rel=1e-4)


def test_constant_training_maps_do_not_divide_by_zero():
    out = make("minmax").fit(np.ones((2, 4, 4)))(MAPS)
    assert np.isfinite(out).all()


def test_gaussian_matches_scipy_per_image():
    out = make("gaussian", sigma=1.5)(MAPS)
    for got, amap in zip(out, MAPS):
        np.testing.assert_allclose(got, ndimage.gaussian_filter(amap, 1.5, mode="reflect"), rtol=1e-6)


def test_open_removes_specks_and_close_fills_holes():
    amap = np.zeros((1, 9, 9), np.float32)
    amap[0, 2:7, 2:7] = 1.0
    speck = amap.copy()
    speck[0, 0, 8] = 1.0
    np.testing.assert_array_equal(make("open", size=3, shape="square")(speck), amap)
    hole = amap.copy()
    hole[0, 4, 4] = 0.0
    np.testing.assert_array_equal(make("close", size=3)(hole), amap)


def test_remove_small_components_uses_the_connectivity():
    amap = np.zeros((1, 8, 8), np.float32)
    amap[0, 1, 1] = amap[0, 2, 2] = 0.9  # two pixels touching diagonally
    amap[0, 5:8, 5:8] = 0.8  # nine pixels
    eight = make("remove_small", min_area=2)(amap)
    np.testing.assert_array_equal(eight, amap)
    four = make("remove_small", min_area=2, connectivity=4, fill=-1.0)(amap)
    assert four[0, 1, 1] == four[0, 2, 2] == -1.0 and four[0, 6, 6] == np.float32(0.8)
    assert make("remove_small", min_area=10)(amap).max() == 0


def test_threshold_gives_a_binary_mask():
    out = make("threshold", value=0.5)(MAPS)
    np.testing.assert_array_equal(out, (MAPS > 0.5).astype(np.float32))
    assert out.dtype == np.float32


def test_lists_of_differently_sized_maps_stay_lists():
    maps = [RNG.random((5, 7)), RNG.random((9, 4))]
    out = make("gaussian", sigma=1)(maps)
    assert isinstance(out, list) and [m.shape for m in out] == [(5, 7), (9, 4)]
    with pytest.raises(pyimgano.ContractViolation, match="N x H x W"):
        make("gaussian")(RNG.random((5, 7)))


def test_standardize_fitted_map_by_map_equals_the_statistics_of_all_pixels():
    """Maps of different sizes and scales: the streamed mean and deviation are those of one vector."""
    from pyimgano.errors import ContractViolation
    from pyimgano.postprocess.steps import Standardize, all_pixels

    rng = np.random.default_rng(3)
    maps = [rng.gamma(2.0, 1.0, shape).astype(np.float32) * scale
            for shape, scale in (((40, 60), 1.0), ((13, 7), 50.0), ((90, 31), 0.01), ((1, 1), 7.0))]
    step = Standardize().fit(maps)
    pixels = all_pixels(maps)
    assert step.state["offset"] == pytest.approx(pixels.mean(), rel=1e-12)
    assert step.state["scale"] == pytest.approx(pixels.std(), rel=1e-12)
    with pytest.raises(ContractViolation, match="at least one pixel"):
        Standardize().fit([np.zeros((0, 0), dtype=np.float32)])
