"""Image geometry shared by data sets, detectors and metrics: the one resize path.

Every resize in pyimgano goes through :func:`resize_image`, :func:`resize_mask` and
:func:`resize_map` (one resampling implementation, PIL's, antialiased when shrinking);
:func:`resize_matrix` gives the same map resize as a matrix per axis, for code that fuses it
with other linear steps (PatchCore's map smoothing).

A :class:`Preprocess` is a geometry policy: resize an image to ``resize``, then optionally
crop its centre to ``crop``. Masks get exactly the same geometry with nearest-neighbour
sampling, so a mask stays binary and aligned with its image. A map computed at the model
size is mapped back to the original image size (:meth:`Preprocess.map_to_original`), for
metrics at the original resolution (the MVTec AD convention); the border a centre crop
removed is filled with the map's minimum, i.e. "not anomalous". New geometries (keep the
aspect ratio, tiles) are new policy fields with the same three methods: ``apply_to_image``,
``apply_to_mask``, ``map_to_original``.

Example::

    policy = Preprocess(resize=256, crop=224)
    image, mask = policy.apply(image, mask)      # 224 x 224
    full = policy.map_to_original(amap, (900, 900))
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Size = int | tuple[int, int]
Interpolation = Literal["bilinear", "bicubic", "area", "nearest"]

__all__ = [
    "Preprocess",
    "apply_to_image",
    "apply_to_mask",
    "map_to_original",
    "output_shape",
    "resize_image",
    "resize_map",
    "resize_mask",
    "resize_matrix",
]


def _as_hw(value: Size) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    return (int(value[0]), int(value[1]))


class Preprocess(BaseModel):
    """Resize to ``resize`` (an int for square, or (height, width)), then centre-crop to ``crop``.

    ``resize=None`` keeps the input size; ``crop=None`` keeps the resized image whole.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    resize: Size | None = Field(None, description="target size: N (square) or (height, width); None keeps it")
    crop: Size | None = Field(None, description="centre crop after resizing: N or (height, width); None: no crop")
    interpolation: Interpolation = Field(
        "bilinear", description="resampling of images (masks always use nearest neighbour)"
    )

    @field_validator("resize", "crop")
    @classmethod
    def _positive(cls, value: Size | None) -> Size | None:
        if value is None:
            return None
        hw = _as_hw(value)
        if min(hw) < 1:
            raise ValueError(f"sizes must be positive, got {value!r}")
        return value if isinstance(value, int) else hw

    @model_validator(mode="after")
    def _crop_fits(self) -> Preprocess:
        if self.resize is not None and self.crop is not None:
            (rh, rw), (ch, cw) = _as_hw(self.resize), _as_hw(self.crop)
            if ch > rh or cw > rw:
                raise ValueError(f"crop {self.crop!r} is larger than resize {self.resize!r}")
        return self

    def resized_shape(self, shape: tuple[int, ...]) -> tuple[int, int]:
        return _as_hw(self.resize) if self.resize is not None else (int(shape[0]), int(shape[1]))

    def crop_box(self, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        """(top, left, height, width) of the centre crop inside the resized image."""
        rh, rw = self.resized_shape(shape)
        if self.crop is None:
            return 0, 0, rh, rw
        ch, cw = _as_hw(self.crop)
        if ch > rh or cw > rw:
            raise ValueError(f"crop {ch}x{cw} does not fit in an image of {rh}x{rw}")
        return (rh - ch) // 2, (rw - cw) // 2, ch, cw

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """(height, width) this policy turns an input of ``shape`` into."""
        _, _, h, w = self.crop_box(shape)
        return h, w

    def apply_to_image(self, image: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 (or HxW) image -> resized and cropped, same dtype."""
        image = np.asarray(image)
        out = resize_image(image, self.resized_shape(image.shape), self.interpolation)
        return _crop(out, self.crop_box(image.shape))

    def apply_to_mask(self, mask: np.ndarray) -> np.ndarray:
        """HxW mask -> bool mask with the image's geometry (nearest neighbour)."""
        mask = np.asarray(mask)
        out = resize_mask(mask, self.resized_shape(mask.shape))
        return _crop(out, self.crop_box(mask.shape))

    def apply(self, image: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Image and its mask (or None) with the same geometry."""
        image = np.asarray(image)
        if mask is not None and np.asarray(mask).shape[:2] != image.shape[:2]:
            raise ValueError(f"mask shape {np.asarray(mask).shape} differs from image shape {image.shape[:2]}")
        return self.apply_to_image(image), (None if mask is None else self.apply_to_mask(mask))

    def map_to_original(self, anomaly_map: np.ndarray, original_shape: tuple[int, ...]) -> np.ndarray:
        """A float map at the model size -> float32 map at ``original_shape`` (H, W).

        The inverse of the geometry: the map is placed in its crop box of the resized frame
        (the cropped-away border gets the map's minimum), then resized bilinearly.
        """
        amap = np.asarray(anomaly_map, dtype=np.float32)
        if amap.ndim != 2:
            raise ValueError(f"anomaly map must be HxW, got shape {amap.shape}")
        top, left, h, w = self.crop_box(original_shape)
        if amap.shape != (h, w):
            raise ValueError(f"anomaly map of shape {amap.shape} does not match this policy's output {(h, w)}")
        rh, rw = self.resized_shape(original_shape)
        frame = np.full((rh, rw), amap.min() if amap.size else 0.0, dtype=np.float32)
        frame[top : top + h, left : left + w] = amap
        return resize_map(frame, (int(original_shape[0]), int(original_shape[1])))


def resize_image(image: np.ndarray, size: Size, interpolation: Interpolation = "bilinear") -> np.ndarray:
    """HxWx3 (or HxW) image -> ``size`` (N for square, or (height, width)), same dtype.

    uint8 images stay uint8 (rounded); float images keep their values' scale.
    """
    return _resize(np.asarray(image), _as_hw(size), interpolation)


def resize_mask(mask: np.ndarray, size: Size) -> np.ndarray:
    """HxW mask -> bool mask of ``size`` by nearest neighbour (stays binary)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be HxW, got shape {mask.shape}")
    return _resize(mask.astype(np.uint8), _as_hw(size), "nearest") > 0


def resize_map(anomaly_map: np.ndarray, size: Size) -> np.ndarray:
    """HxW float map -> float32 map of ``size`` (bilinear)."""
    amap = np.asarray(anomaly_map, dtype=np.float32)
    if amap.ndim != 2:
        raise ValueError(f"anomaly map must be HxW, got shape {amap.shape}")
    return _resize(amap, _as_hw(size), "bilinear")


@lru_cache(maxsize=64)
def resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """The n_out x n_in matrix of :func:`resize_map` along one axis (float64, read-only).

    ``resize_map(m, (h, w))`` equals ``resize_matrix(m.shape[0], h) @ m @ resize_matrix(m.shape[1], w).T``
    up to float32 rounding: the matrix is the resize of an identity, so it is the same resampling.
    """
    if n_in < 1 or n_out < 1:
        raise ValueError(f"sizes must be positive, got {n_in} -> {n_out}")
    matrix = _resize(np.eye(n_in, dtype=np.float32), (n_out, n_in), "bilinear").astype(np.float64)
    matrix.flags.writeable = False
    return matrix


def _resize(array: np.ndarray, size: tuple[int, int], interpolation: str) -> np.ndarray:
    """Resize with PIL (the one implementation); uint8/bool images and float maps keep their dtype."""
    from PIL import Image

    if array.shape[:2] == size:
        return array.copy()
    resample = {
        "nearest": Image.Resampling.NEAREST,
        "bilinear": Image.Resampling.BILINEAR,
        "bicubic": Image.Resampling.BICUBIC,
        "area": Image.Resampling.BOX,
    }[interpolation]
    height, width = size
    if array.dtype == np.uint8:
        return np.asarray(Image.fromarray(array).resize((width, height), resample))
    if array.ndim == 2:
        out = Image.fromarray(array.astype(np.float32)).resize((width, height), resample)
        return np.asarray(out, dtype=np.float32)
    channels = [
        np.asarray(Image.fromarray(array[:, :, c].astype(np.float32)).resize((width, height), resample))
        for c in range(array.shape[2])
    ]
    return np.stack(channels, axis=2).astype(array.dtype)


def _crop(array: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    top, left, h, w = box
    if (top, left) == (0, 0) and array.shape[:2] == (h, w):
        return array
    return np.ascontiguousarray(array[top : top + h, left : left + w])


def apply_to_image(image: np.ndarray, policy: Preprocess) -> np.ndarray:
    return policy.apply_to_image(image)


def apply_to_mask(mask: np.ndarray, policy: Preprocess) -> np.ndarray:
    return policy.apply_to_mask(mask)


def map_to_original(anomaly_map: np.ndarray, original_shape: tuple[int, ...], policy: Preprocess) -> np.ndarray:
    return policy.map_to_original(anomaly_map, original_shape)


def output_shape(shape: tuple[int, ...], policy: Preprocess) -> tuple[int, int]:
    return policy.output_shape(shape)
