"""Image geometry shared by data sets, detectors and metrics: the one resize path.

Every resize in pyimgano goes through :func:`resize_image`, :func:`resize_mask` and
:func:`resize_map` (one resampling implementation, PIL's, antialiased when shrinking);
:func:`resize_matrix` gives the same map resize as a matrix per axis, for code that fuses it
with other linear steps (PatchCore's map smoothing).

A :class:`Preprocess` is a geometry policy: resize an image to ``resize``, then optionally
crop its centre to ``crop``. With ``aspect="keep"`` an int ``resize`` N is a pixel budget:
the image keeps its aspect ratio at about N x N pixels (a 1500 x 1000 image at N=512 becomes
624 x 416), so N means the same compute for square and oblong images; ``multiple`` rounds
every side to a multiple of a network's stride (an adjustment of less than half a stride,
never a squash). Masks get exactly the same geometry with nearest-neighbour sampling, so a
mask stays binary and aligned with its image. A map computed at the model size is mapped
back to the original image size (:meth:`Preprocess.map_to_original`), for metrics at the
original resolution (the MVTec AD convention); the border a centre crop removed is filled
with the map's minimum, i.e. "not anomalous".

Tiling, for images far larger than a network input: :func:`tile_boxes` cuts an image into
overlapping tiles whose offsets are multiples of a stride, and :func:`stitch_tiles` averages
per-tile values (patch grids or maps) back into one array. :func:`auto_side` is the rule that
picks a network input size from the training images' sizes (``image_size="auto"``).

All of this is NumPy and PIL only, so a torch-free runtime reuses it unchanged.

Example::

    policy = Preprocess(resize=256, crop=224)
    image, mask = policy.apply(image, mask)      # 224 x 224
    full = policy.map_to_original(amap, (900, 900))
    Preprocess(resize=512, aspect="keep", multiple=16).output_shape((1000, 1500))  # (416, 624)
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Size = int | tuple[int, int]
Interpolation = Literal["bilinear", "bicubic", "area", "nearest"]
Aspect = Literal["stretch", "keep"]
Box = tuple[int, int, int, int]

# auto_side: the largest network input side the automatic choice picks (about 576 x 576 pixels:
# on VisA-sized images small defects need it, and faiss:patchcore still scores over 5 images/s on
# 2 CPU cores; docs/patchcore.md has the measurements)
AUTO_MAX_SIDE = 576

__all__ = [
    "AUTO_MAX_SIDE",
    "Preprocess",
    "apply_to_image",
    "auto_side",
    "apply_to_mask",
    "map_to_original",
    "output_shape",
    "resize_image",
    "resize_map",
    "resize_mask",
    "resize_matrix",
    "round_to_multiple",
    "stitch_tiles",
    "tile_boxes",
]


def _as_hw(value: Size) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    return (int(value[0]), int(value[1]))


def round_to_multiple(value: float, multiple: int) -> int:
    """``value`` rounded to the nearest multiple of ``multiple`` (at least one multiple)."""
    return max(multiple, int(math.floor(value / multiple + 0.5)) * multiple)


class Preprocess(BaseModel):
    """Resize to ``resize``, then centre-crop to ``crop``.

    ``resize``: an int N (``aspect="stretch"``: N x N; ``aspect="keep"``: about N x N pixels in
    the image's own aspect ratio), or (height, width); ``None`` keeps the input size.
    ``multiple`` rounds each resized side to a multiple of it (a network's stride).
    ``crop=None`` keeps the resized image whole.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    resize: Size | None = Field(None, description="target size: N (square) or (height, width); None keeps it")
    aspect: Aspect = Field(
        "stretch",
        description="with an int resize N: 'stretch' to N x N, or 'keep' the aspect ratio at about N x N pixels",
    )
    multiple: int = Field(1, ge=1, description="round each resized side to a multiple of this (a network stride)")
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
    def _consistent(self) -> Preprocess:
        if self.aspect == "keep" and self.resize is not None and not isinstance(self.resize, int):
            raise ValueError(
                f"aspect='keep' takes an int resize (a pixel budget N: about N x N pixels), got {self.resize!r}"
            )
        if self.resize is not None and self.crop is not None and self.aspect == "stretch":
            rh, rw = self.resized_shape((1, 1))
            ch, cw = _as_hw(self.crop)
            if ch > rh or cw > rw:
                raise ValueError(f"crop {self.crop!r} is larger than resize {self.resize!r}")
        return self

    def resized_shape(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """(height, width) an input of ``shape`` is resized to (before the crop)."""
        height, width = int(shape[0]), int(shape[1])
        if self.resize is None:
            out = (float(height), float(width))
        elif self.aspect == "keep":
            scale = math.sqrt(float(self.resize) ** 2 / (height * width))
            out = (height * scale, width * scale)
        else:
            out = tuple(float(v) for v in _as_hw(self.resize))
        if self.multiple == 1:
            return int(round(out[0])), int(round(out[1]))
        return round_to_multiple(out[0], self.multiple), round_to_multiple(out[1], self.multiple)

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

    def channel(c: int) -> np.ndarray:
        return np.asarray(Image.fromarray(array[:, :, c].astype(np.float32)).resize((width, height), resample))

    out = np.empty((height, width, array.shape[2]), dtype=array.dtype)
    # PIL's float images have one channel; it releases the GIL while resizing, so the channels
    # of a large image go to threads (the same values: 25 -> 16 ms for a VisA image on 2 cores)
    pool = _channel_pool() if array.shape[0] * array.shape[1] >= THREADED_RESIZE_PIXELS else None
    for c, resized in enumerate((map if pool is None else pool.map)(channel, range(array.shape[2]))):
        out[:, :, c] = resized
    return out


# float images with at least this many pixels have their channels resized in threads
THREADED_RESIZE_PIXELS = 256 * 1024


@lru_cache(maxsize=1)
def _channel_pool() -> ThreadPoolExecutor | None:
    """Threads for the channels of one float image (None with one core: nothing to gain)."""
    from pyimgano.runtime.engines import machine_threads

    threads = min(3, machine_threads())
    return None if threads < 2 else ThreadPoolExecutor(threads, thread_name_prefix="pyimgano-resize")


def _crop(array: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    top, left, h, w = box
    if (top, left) == (0, 0) and array.shape[:2] == (h, w):
        return array
    return np.ascontiguousarray(array[top : top + h, left : left + w])


def tile_boxes(height: int, width: int, tile: Size, overlap: int = 0, multiple: int = 1) -> list[Box]:
    """(top, left, height, width) of tiles covering a ``height`` x ``width`` image, row by row.

    Neighbouring tiles overlap by at least ``overlap`` pixels; tiles are spread evenly, the
    first at 0 and the last at the far edge, with offsets that are multiples of ``multiple``
    (so a network's feature grids of the tiles line up with the whole image's). A side
    shorter than the tile gets one tile of the image's length. ``height``, ``width`` and the
    tile sides must be multiples of ``multiple``.
    """
    tile_h, tile_w = _as_hw(tile)
    if overlap < 0:
        raise ValueError(f"tile overlap must be >= 0, got {overlap}")
    for name, value in (("height", height), ("width", width), ("tile height", tile_h), ("tile width", tile_w)):
        if value < 1 or value % multiple:
            raise ValueError(f"{name} {value} must be a positive multiple of {multiple}")
    rows = _tile_starts(height, tile_h, overlap, multiple)
    cols = _tile_starts(width, tile_w, overlap, multiple)
    return [(top, left, min(tile_h, height), min(tile_w, width)) for top in rows for left in cols]


def _tile_starts(length: int, tile: int, overlap: int, multiple: int) -> list[int]:
    if tile >= length:
        return [0]
    if overlap >= tile:
        raise ValueError(f"tile overlap {overlap} must be smaller than the tile side {tile}")
    span = length - tile  # the last tile starts here; a multiple of `multiple`
    count = max(2, math.ceil(span / (tile - overlap)) + 1)
    while True:
        starts = sorted({int(round(i * span / (count - 1) / multiple)) * multiple for i in range(count)})
        if all(b - a <= tile - overlap for a, b in zip(starts, starts[1:])):
            return starts
        count += 1


def stitch_tiles(values: list[np.ndarray], boxes: list[Box], shape: tuple[int, int]) -> np.ndarray:
    """Per-tile HxW arrays placed at their boxes in a ``shape`` array, overlaps averaged (float32)."""
    total = np.zeros(shape, dtype=np.float64)
    count = np.zeros(shape, dtype=np.float64)
    for value, (top, left, h, w) in zip(values, boxes):
        value = np.asarray(value)
        if value.shape != (h, w):
            raise ValueError(f"tile of shape {value.shape} does not match its box {h}x{w}")
        total[top : top + h, left : left + w] += value
        count[top : top + h, left : left + w] += 1
    if (count == 0).any():
        raise ValueError("the tiles do not cover the whole array")
    return (total / count).astype(np.float32)


def auto_side(shapes: list[tuple[int, ...]], max_side: int = AUTO_MAX_SIDE, multiple: int = 32) -> int:
    """The network input side chosen from image sizes: never an upscale, at most ``max_side``.

    The median over ``shapes`` of sqrt(height x width) (the side of a square with the same
    pixel count), capped at ``max_side`` and rounded down to a multiple of ``multiple`` (at
    least one multiple). Square 256 px images give 256; MVTec AD (700-1024 px) and VisA
    (1500 x 1000) give 576.
    """
    if not shapes:
        raise ValueError("auto_side needs at least one image shape")
    side = float(np.median([math.sqrt(int(s[0]) * int(s[1])) for s in shapes]))
    side = min(side, float(max_side))
    return max(multiple, int(side // multiple) * multiple)


def apply_to_image(image: np.ndarray, policy: Preprocess) -> np.ndarray:
    return policy.apply_to_image(image)


def apply_to_mask(mask: np.ndarray, policy: Preprocess) -> np.ndarray:
    return policy.apply_to_mask(mask)


def map_to_original(anomaly_map: np.ndarray, original_shape: tuple[int, ...], policy: Preprocess) -> np.ndarray:
    return policy.map_to_original(anomaly_map, original_shape)


def output_shape(shape: tuple[int, ...], policy: Preprocess) -> tuple[int, int]:
    return policy.output_shape(shape)
