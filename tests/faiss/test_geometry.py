"""Input geometry of the faiss detectors: auto size, kept aspect ratio, mixed sizes, tiles, precision."""

from __future__ import annotations

import numpy as np
import pytest

import pyimgano
from pyimgano import InvalidParams
from pyimgano.errors import NotFittedError
from pyimgano.metrics import image_auroc, pixel_auroc
from pyimgano_faiss.errors import InputGeometryError

SMALL = {"backbone": "efficientnet_lite0", "progress": False}


def _texture(seed: int, height: int, width: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(60, 200, size=(height // 8 + 1, width // 8 + 1, 3)).astype(np.uint8)
    return np.ascontiguousarray(np.kron(base, np.ones((8, 8, 1), dtype=np.uint8))[:height, :width])


def test_auto_size_is_chosen_at_fit_from_the_training_images_and_saved(small_category, tmp_path):
    train, test = small_category[0][:4], small_category[1][:3]
    det = pyimgano.create_detector("faiss:patchcore", **SMALL, coreset_ratio=0.5)
    assert det.image_size == "auto"
    with pytest.raises(NotFittedError, match="image_size='auto'"):
        _ = det.geometry
    det.fit(train)
    assert det.input_size_ == 96 and det.grid_ == (12, 12)  # 96 px images are never upscaled
    scores, maps = det.score(test)
    det.save(tmp_path / "auto")
    loaded = pyimgano.load_detector(tmp_path / "auto")
    assert loaded.image_size == "auto" and loaded.input_size_ == 96 and loaded.precision_ == "float32"
    np.testing.assert_array_equal(loaded.score(test)[0], scores)
    # an explicit size overrides the automatic choice
    assert pyimgano.create_detector("faiss:patchcore", **SMALL, image_size=64).fit(train[:2]).input_size_ == 64


def test_large_oblong_images_keep_their_aspect_ratio_at_the_576_class_cap():
    train = [_texture(i, 600, 900) for i in range(2)]
    det = pyimgano.create_detector("faiss:patchcore", **SMALL).fit(train)
    assert det.input_size_ == 576
    (unit,) = det.plan(train[:1])
    assert unit.frame == (464, 704) and not unit.tiled  # about 576 x 576 pixels, sides multiples of 32
    assert det.grid_ == (58, 88) and det.n_patches_ == 2 * 58 * 88
    # coreset_ratio="auto": the bank keeps 0.1 x 1,024 patches per training input, not 10% of 5,104
    assert det.coreset_ratio_ == pytest.approx(0.1 * 1024 / (58 * 88))
    assert len(det.memory_bank_) == int(2 * 58 * 88 * det.coreset_ratio_) == 204
    # `pyimgano fit` says what the automatic parameters became
    from pyimgano.cli.fit import describe_choices

    said = describe_choices(det)
    assert "input_size 576" in said and "grid 58x88" in said and "coreset_ratio 0.0201" in said
    maps = det.predict_anomaly_map(train[:1])
    assert maps.shape == (1, 600, 900)


def test_stretch_squashes_only_when_asked():
    image = _texture(0, 48, 144)
    keep = pyimgano.create_detector("faiss:patchcore", **SMALL, image_size=64)
    stretch = pyimgano.create_detector("faiss:patchcore", **SMALL, image_size=64, aspect="stretch")
    assert keep.plan([image])[0].frame == (32, 112)
    assert stretch.plan([image])[0].frame == (64, 64)


def test_mixed_sizes_in_one_fit_and_one_call(small_category):
    square = small_category[0][:3]
    oblong = [_texture(10 + i, 64, 128) for i in range(2)]
    det = pyimgano.create_detector("faiss:patchcore", **SMALL, image_size=64, coreset_ratio=0.5)
    det.fit([square[0], oblong[0], square[1], oblong[1], square[2]])
    # 96 x 96 -> 64 x 64 (an 8 x 8 grid); 64 x 128 -> 48 x 96 (6 x 12): nothing squashed
    assert det.n_patches_ == 3 * 64 + 2 * 72
    images = [square[0], oblong[0], _texture(20, 80, 40)]
    scores, maps = det.score(images)
    assert np.isfinite(scores).all() and [m.shape for m in maps] == [(96, 96), (64, 128), (80, 40)]
    # each image gets the same score alone as in a mixed call
    np.testing.assert_allclose(det.decision_function([oblong[0]]), scores[1:2], rtol=1e-6)


def test_tiles_are_scored_and_stitched(small_category):
    train, test, labels, masks = small_category
    det = pyimgano.create_detector(
        "faiss:patchcore", **SMALL, image_size="original", tile_size=64, tile_overlap=16, coreset_ratio=0.2
    ).fit(train)
    units = det.plan(test[:1])
    assert [u.box for u in units] == [(0, 0, 64, 64), (0, 32, 64, 64), (32, 0, 64, 64), (32, 32, 64, 64)]
    assert det.n_patches_ == len(train) * 4 * 8 * 8
    scores, maps = det.score(test)
    assert maps.shape == (len(test), 96, 96)
    assert image_auroc(labels, scores) >= 0.85 and pixel_auroc(masks, maps) >= 0.85
    # a tile as large as the frame is the untiled image
    whole = pyimgano.create_detector("faiss:patchcore", **SMALL, image_size="original", coreset_ratio=0.2)
    one = pyimgano.create_detector("faiss:patchcore", **SMALL, image_size="original", tile_size=128, coreset_ratio=0.2)
    np.testing.assert_array_equal(whole.fit(train[:3]).decision_function(test[:2]),
                                  one.fit(train[:3]).decision_function(test[:2]))


def test_an_input_over_the_pixel_limit_is_one_line_naming_the_way_out(small_category, monkeypatch):
    monkeypatch.setenv("PYIMGANO_MAX_IMAGE_PIXELS", "6000")
    det = pyimgano.create_detector("faiss:patchcore", **SMALL, image_size=96)
    with pytest.raises(InputGeometryError, match="96x96 = 9,216 pixels, over the limit of 6,000") as info:
        det.fit([_texture(0, 64, 64)])
    assert "tile_size" in str(info.value) and "\n" not in str(info.value)
    tiled = pyimgano.create_detector("faiss:patchcore", **SMALL, image_size=96, tile_size=64, tile_overlap=32)
    assert tiled.fit([_texture(0, 64, 64)] * 2).is_fitted_


def test_invalid_geometry_params():
    with pytest.raises(InvalidParams, match="image_size"):
        pyimgano.create_detector("faiss:patchcore", image_size="huge")
    with pytest.raises(InvalidParams, match="tile_overlap"):
        pyimgano.create_detector("faiss:patchcore", tile_size=64, tile_overlap=64)
    with pytest.raises(InvalidParams, match="reweight"):
        pyimgano.create_detector("faiss:patchcore", tile_size=256, reweight=True)


def test_bfloat16_backbone_stays_close_to_float32(small_category, tmp_path):
    train, test, labels, _ = small_category
    exact = pyimgano.create_detector("faiss:patchcore", **SMALL, image_size=96, coreset_ratio=0.2).fit(train)
    fast = pyimgano.create_detector(
        "faiss:patchcore", **SMALL, image_size=96, coreset_ratio=0.2, precision="bfloat16"
    ).fit(train)
    assert fast.precision_ == "bfloat16"
    a, b = exact.decision_function(test), fast.decision_function(test)
    assert np.abs(a - b).max() / a.max() < 0.1 and image_auroc(labels, b) >= 0.9
    fast.save(tmp_path / "bf16")
    assert pyimgano.load_detector(tmp_path / "bf16").precision_ == "bfloat16"
    auto = pyimgano.create_detector("faiss:knn", **SMALL, image_size=64, precision="auto").fit(train[:3])
    assert auto.precision_ in ("bfloat16", "float32")


def test_models_saved_before_the_geometry_state_still_load(fitted_patchcore, small_category, tmp_path):
    test = small_category[1][:3]
    fitted_patchcore.save(tmp_path / "old")
    state = tmp_path / "old" / "state.npz"
    with np.load(state) as saved:
        arrays = {k: saved[k] for k in saved.files if k not in ("input_size", "precision")}
    np.savez(state, **arrays)
    loaded = pyimgano.load_detector(tmp_path / "old")
    assert loaded.input_size_ == 96 and loaded.precision_ == "float32"
    np.testing.assert_array_equal(loaded.decision_function(test), fitted_patchcore.decision_function(test))


def test_knn_takes_tiles_and_mixed_sizes(small_category):
    train, test = small_category[:2]
    det = pyimgano.create_detector("faiss:knn", **SMALL, image_size="original", tile_size=64, tile_overlap=16)
    scores = det.fit(train).decision_function(test + [_texture(1, 64, 128)])
    # a foreign image (another texture, another size) is by far the most anomalous
    assert np.isfinite(scores).all() and scores[-1] > 2 * scores[:-1].max()


def test_tiny_images_are_scored_at_their_own_size():
    train = [_texture(i, 40, 48) for i in range(3)]
    det = pyimgano.create_detector("faiss:patchcore", **SMALL, coreset_ratio=0.5).fit(train)
    assert det.input_size_ == 32  # auto: the smallest input (one stride), not a crash
    scores, maps = det.score([_texture(7, 12, 20), _texture(8, 40, 48)])
    assert np.isfinite(scores).all() and [m.shape for m in maps] == [(12, 20), (40, 48)]


def test_a_huge_image_at_its_own_size_is_one_line_naming_the_way_out():
    huge = np.zeros((4160, 4160, 3), dtype=np.uint8)  # 17.3 MP: over the per-input limit of 4096 x 4096
    det = pyimgano.create_detector("faiss:patchcore", **SMALL, image_size="original")
    with pytest.raises(InputGeometryError) as info:
        det.fit([huge])
    message = str(info.value)
    assert "\n" not in message and "image 0 (4160x4160)" in message and "over the limit of 16,777,216" in message
    assert "tile_size" in message
    # the automatic size resizes it to the 512 class; tiles cut it into 512 px inputs
    auto = pyimgano.create_detector("faiss:patchcore", **SMALL)
    auto.input_size_ = 512
    assert [u.frame for u in auto.plan([huge])] == [(512, 512)]
    tiled = pyimgano.create_detector("faiss:patchcore", **SMALL, image_size="original", tile_size=512)
    units = tiled.plan([huge])
    assert len(units) == 100 and all(u.shape == (512, 512) for u in units)
