"""The shared preprocessing policy: same geometry for images and masks, maps back to original size."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from pyimgano.preprocess import (
    Preprocess,
    apply_to_mask,
    map_to_original,
    output_shape,
    resize_image,
    resize_map,
    resize_mask,
    resize_matrix,
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


@pytest.mark.parametrize("shape, size", [((8, 6), (64, 40)), ((90, 120), (33, 47)), ((32, 32), (32, 96))])
def test_resize_matrix_is_resize_map_along_one_axis(shape, size):
    amap = np.random.default_rng(0).random(shape).astype(np.float32)
    rows, cols = resize_matrix(shape[0], size[0]), resize_matrix(shape[1], size[1])
    assert rows.shape == (size[0], shape[0]) and rows.dtype == np.float64 and not rows.flags.writeable
    np.testing.assert_allclose(rows @ amap @ cols.T, resize_map(amap, size), atol=1e-5)
    # a resize keeps constants constant: every row of the matrix sums to one
    np.testing.assert_allclose(rows.sum(1), 1.0, atol=1e-6)
