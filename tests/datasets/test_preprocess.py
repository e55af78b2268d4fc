"""The shared preprocessing policy: same geometry for images and masks, maps back to original size."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from pyimgano.preprocess import (
    AUTO_MAX_SIDE,
    Preprocess,
    apply_to_mask,
    auto_side,
    map_to_original,
    output_shape,
    resize_image,
    resize_map,
    resize_mask,
    resize_matrix,
    stitch_tiles,
    tile_boxes,
)


def _marked(h=90, w=120, box=(30, 40, 60, 80)):
    """An image with a white rectangle and the matching mask."""
    image = np.zeros((h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), dtype=bool)
    image[box[0] : box[2], box[1] : box[3]] = 255
    mask[box[0] : box[2], box[1] : box[3]] = True
    return image, mask


@pytest.mark.parametrize(
    "policy",
    [Preprocess(resize=64), Preprocess(resize=(48, 64), crop=32), Preprocess(crop=(60, 100)), Preprocess()],
)
def test_image_and_mask_share_geometry(policy):
    image, mask = _marked()
    out_image, out_mask = policy.apply(image, mask)
    assert out_image.dtype == np.uint8 and out_mask.dtype == bool
    assert out_image.shape[:2] == out_mask.shape == policy.output_shape(image.shape)
    bright = out_image[:, :, 0] > 127
    # the resized rectangle and the resized mask agree except on a one-pixel rim
    assert (bright != out_mask).mean() < 0.05
    assert set(np.unique(out_mask)) <= {False, True}


def test_mask_stays_binary_and_uses_nearest_neighbour():
    mask = np.zeros((10, 10), dtype=np.uint8)
    mask[::2, ::2] = 255
    out = apply_to_mask(mask, Preprocess(resize=7))
    assert out.dtype == bool and out.shape == (7, 7) and out.any() and not out.all()


def test_centre_crop_box_and_sizes():
    policy = Preprocess(resize=(100, 80), crop=(60, 40))
    assert policy.crop_box((500, 500)) == (20, 20, 60, 40)
    assert output_shape((500, 300), policy) == (60, 40)
    assert Preprocess(crop=50).output_shape((70, 90)) == (50, 50)


def test_map_back_to_original_size():
    image, mask = _marked()
    policy = Preprocess(resize=64, crop=48)
    _, small_mask = policy.apply(image, mask)
    amap = small_mask.astype(np.float32)
    full = map_to_original(amap, image.shape, policy)
    assert full.shape == mask.shape and full.dtype == np.float32
    assert ((full > 0.5) == mask).mean() > 0.97
    # the border the crop removed is filled with the map's minimum
    assert full[0, 0] == pytest.approx(0.0) and full[-1, -1] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="does not match"):
        policy.map_to_original(np.zeros((10, 10)), image.shape)


def test_float_and_grey_inputs():
    policy = Preprocess(resize=(8, 12))
    assert policy.apply_to_image(np.random.rand(16, 24)).shape == (8, 12)
    assert policy.apply_to_image(np.random.rand(16, 24, 3).astype(np.float32)).shape == (8, 12, 3)


def test_invalid_policies():
    with pytest.raises(ValidationError, match="larger than resize"):
        Preprocess(resize=32, crop=64)
    with pytest.raises(ValidationError):
        Preprocess(resize=0)
    with pytest.raises(ValueError, match="does not fit"):
        Preprocess(crop=64).apply_to_image(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="differs from image"):
        Preprocess(resize=8).apply(np.zeros((10, 10, 3), np.uint8), np.zeros((5, 5), bool))


def test_resize_functions_keep_dtype_and_take_square_or_height_width():
    image, mask = _marked()
    assert resize_image(image, 32).shape == (32, 32, 3) and resize_image(image, 32).dtype == np.uint8
    assert resize_image(image, (20, 50)).shape == (20, 50, 3)
    small = resize_mask(mask, (45, 60))
    assert small.dtype == bool and small.shape == (45, 60) and 0 < small.mean() < 1
    assert resize_map(mask.astype(np.float64), 16).dtype == np.float32
    with pytest.raises(ValueError, match="HxW"):
        resize_map(np.zeros((4, 4, 3)), 8)
    with pytest.raises(ValueError, match="HxW"):
        resize_mask(np.zeros((4, 4, 3)), 8)


def test_a_large_float_image_resizes_channel_by_channel_whatever_the_threads():
    """Large float images have their channels resized in threads: the values are each channel's
    own resize, in float, exactly as one at a time."""
    from PIL import Image

    from pyimgano.preprocess import THREADED_RESIZE_PIXELS

    rng = np.random.default_rng(0)
    side = int(np.sqrt(THREADED_RESIZE_PIXELS)) + 8
    image = (rng.random((side, side + 40, 3)) * 255).astype(np.float32)
    out = resize_image(image, (123, 157))
    assert out.dtype == np.float32 and out.shape == (123, 157, 3)
    for c in range(3):
        alone = np.asarray(Image.fromarray(np.ascontiguousarray(image[:, :, c])).resize((157, 123), Image.Resampling.BILINEAR))
        np.testing.assert_array_equal(out[:, :, c], alone)
    assert resize_image(image.astype(np.float64), (123, 157)).dtype == np.float64


@pytest.mark.parametrize("shape, size", [((8, 6), (64, 40)), ((90, 120), (33, 47)), ((32, 32), (32, 96))])
def test_resize_matrix_is_resize_map_along_one_axis(shape, size):
    amap = np.random.default_rng(0).random(shape).astype(np.float32)
    rows, cols = resize_matrix(shape[0], size[0]), resize_matrix(shape[1], size[1])
    assert rows.shape == (size[0], shape[0]) and rows.dtype == np.float64 and not rows.flags.writeable
    np.testing.assert_allclose(rows @ amap @ cols.T, resize_map(amap, size), atol=1e-5)
    # a resize keeps constants constant: every row of the matrix sums to one
    np.testing.assert_allclose(rows.sum(1), 1.0, atol=1e-6)


def test_keep_aspect_is_a_pixel_budget_rounded_to_the_stride():
    policy = Preprocess(resize=512, aspect="keep", multiple=16)
    # VisA's 1500 x 1000: about 512 x 512 pixels, sides multiples of 16, aspect within a stride
    assert policy.output_shape((1000, 1500)) == (416, 624)
    assert policy.output_shape((1024, 1024)) == (512, 512)
    h, w = policy.output_shape((300, 2000))
    assert h % 16 == 0 and w % 16 == 0 and abs(w / h - 2000 / 300) < 0.35
    assert abs(h * w - 512 * 512) / (512 * 512) < 0.1
    # a square budget for square images equals the stretch policy
    assert Preprocess(resize=256, aspect="keep").output_shape((700, 700)) == (256, 256)
    # stretch with a multiple rounds the side to the stride
    assert Preprocess(resize=250, multiple=16).output_shape((90, 120)) == (256, 256)
    # no resize with a multiple: the image's own sides, rounded
    assert Preprocess(multiple=16).output_shape((1000, 1500)) == (1008, 1504)


def test_keep_aspect_maps_back_and_masks_follow():
    image, mask = _marked(h=90, w=150, box=(30, 50, 60, 100))
    policy = Preprocess(resize=64, aspect="keep", multiple=8)
    out_image, out_mask = policy.apply(image, mask)
    assert out_image.shape[:2] == out_mask.shape == (48, 80)
    full = policy.map_to_original(out_mask.astype(np.float32), image.shape)
    assert full.shape == mask.shape and ((full > 0.5) == mask).mean() > 0.97


def test_keep_aspect_needs_an_int_budget():
    with pytest.raises(ValidationError, match="int resize"):
        Preprocess(resize=(64, 96), aspect="keep")


@pytest.mark.parametrize("height, width, tile, overlap", [(1008, 1504, 512, 64), (416, 624, 256, 32), (96, 96, 128, 0)])
def test_tiles_cover_the_image_with_aligned_overlapping_offsets(height, width, tile, overlap):
    boxes = tile_boxes(height, width, tile, overlap, multiple=16)
    covered = np.zeros((height, width), dtype=int)
    for top, left, h, w in boxes:
        assert top % 16 == 0 and left % 16 == 0 and h == min(tile, height) and w == min(tile, width)
        assert top + h <= height and left + w <= width
        covered[top : top + h, left : left + w] += 1
    assert covered.min() >= 1
    tops, lefts = sorted({b[0] for b in boxes}), sorted({b[1] for b in boxes})
    for starts in (tops, lefts):
        assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))
    assert tile_boxes(1008, 1504, 512, 64, 16)[-1] == (496, 992, 512, 512)


def test_stitched_tiles_average_the_overlaps():
    boxes = tile_boxes(4, 6, (4, 4), overlap=2)
    assert boxes == [(0, 0, 4, 4), (0, 2, 4, 4)]
    out = stitch_tiles([np.zeros((4, 4)), np.ones((4, 4))], boxes, (4, 6))
    np.testing.assert_allclose(out[0], [0, 0, 0.5, 0.5, 1, 1])
    whole = np.random.default_rng(0).random((16, 24))
    boxes = tile_boxes(16, 24, 8, 4)
    parts = [whole[top : top + h, left : left + w] for top, left, h, w in boxes]
    np.testing.assert_allclose(stitch_tiles(parts, boxes, whole.shape), whole, atol=1e-6)
    with pytest.raises(ValueError, match="does not match"):
        stitch_tiles([np.zeros((2, 2))], [(0, 0, 3, 3)], (3, 3))
    with pytest.raises(ValueError, match="multiple of 16"):
        tile_boxes(1000, 1500, 512, 64, 16)
    with pytest.raises(ValueError, match="smaller than the tile"):
        tile_boxes(64, 64, 32, 32)


def test_auto_side_never_upscales_and_caps_at_the_class_size():
    assert AUTO_MAX_SIDE == 576
    assert auto_side([(256, 256, 3)] * 4) == 256
    assert auto_side([(1024, 1024, 3), (700, 700, 3), (900, 900, 3)]) == 576
    assert auto_side([(1000, 1500, 3)]) == 576
    assert auto_side([(512, 512, 3)]) == 512
    assert auto_side([(300, 300)], multiple=32) == 288
    assert auto_side([(20, 20)], multiple=32) == 32
    with pytest.raises(ValueError, match="at least one"):
        auto_side([])


def test_auto_side_of_mixed_sizes_is_the_median_pixel_count():
    shapes = [(256, 256), (1000, 1500), (300, 300), (200, 200), (400, 400)]
    assert auto_side(shapes) == 288  # median sqrt(h * w) = 300, rounded down to a multiple of 32
    # an outlier does not move it
    assert auto_side([(256, 256)] * 3 + [(8000, 8000)]) == 256


def test_extreme_aspect_ratio_gets_at_least_one_stride_per_side():
    policy = Preprocess(resize=256, aspect="keep", multiple=32)
    height, width = policy.output_shape((10, 2000))
    assert (height, width) == (32, 3616) and height % 32 == 0 and width % 32 == 0
    # a side is never rounded down to nothing
    assert Preprocess(resize=32, aspect="keep", multiple=32).output_shape((4, 4000)) == (32, 1024)
