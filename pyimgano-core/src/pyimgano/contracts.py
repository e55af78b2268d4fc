"""Output contracts: what every plugin's output must look like before metrics see it.

Each contract is a pydantic model (so it is documented and serialisable) plus a
``validate_*`` function that the core calls on plugin output. A violation raises
:class:`pyimgano.ContractViolation` naming plugin, component, field, expected and actual.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pyimgano.errors import ContractViolation

__all__ = [
    "AnomalyMaps",
    "DatasetInfo",
    "DatasetSample",
    "ImageLabels",
    "ImageScores",
    "SplitCounts",
    "validate_labels",
    "validate_maps",
    "validate_scores",
]


def _describe(array: Any) -> str:
    if isinstance(array, np.ndarray):
        return f"an array of shape {array.shape} and dtype {array.dtype}"
    return f"a {type(array).__name__}"


def validate_scores(
    scores: Any, n_images: int | None = None, *, component: str = "detector", plugin: str | None = None
) -> np.ndarray:
    """Check image scores: 1-D float, one finite value per image. Returns a float64 copy."""

    def fail(expected: str, actual: str, detail: str | None = None) -> ContractViolation:
        return ContractViolation(
            plugin=plugin, component=component, field="image scores", expected=expected, actual=actual, detail=detail
        )

    try:
        arr = np.asarray(scores)
    except Exception as exc:  # noqa: BLE001 - ragged lists and the like
        raise fail("a 1-D float array", _describe(scores), str(exc)) from None
    if arr.ndim != 1:
        raise fail("a 1-D array (one score per image)", f"of shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        raise fail("a numeric (float) array", f"of dtype {arr.dtype}")
    if n_images is not None and arr.shape[0] != n_images:
        raise fail(f"{n_images} scores (one per image)", f"of length {arr.shape[0]}")
    arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = np.flatnonzero(bad)
        raise fail(
            "finite values",
            f"with {idx.size} non-finite value(s)",
            f"first at index {int(idx[0])}: {arr[idx[0]]!r}",
        )
    return arr


def validate_labels(
    labels: Any, n_images: int | None = None, *, component: str = "detector", plugin: str | None = None
) -> np.ndarray:
    """Check 0/1 labels: 1-D integer array with values in {0, 1}. Returns an int64 copy."""

    def fail(expected: str, actual: str) -> ContractViolation:
        return ContractViolation(plugin=plugin, component=component, field="labels", expected=expected, actual=actual)

    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise fail("a 1-D array (one label per image)", f"of shape {arr.shape}")
    if n_images is not None and arr.shape[0] != n_images:
        raise fail(f"{n_images} labels", f"of length {arr.shape[0]}")
    if arr.dtype == bool:
        return arr.astype(np.int64)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise fail("integer values 0 or 1", "with non-integer values")
    elif not np.issubdtype(arr.dtype, np.integer):
        raise fail("an integer array of 0/1", f"of dtype {arr.dtype}")
    values = np.unique(arr)
    if not np.isin(values, (0, 1)).all():
        raise fail("values 0 or 1", f"with values {values[:10].tolist()}")
    return arr.astype(np.int64)


def validate_maps(
    maps: Any,
    shapes: Sequence[tuple[int, int]] | None = None,
    *,
    component: str = "detector",
    plugin: str | None = None,
) -> np.ndarray | list[np.ndarray]:
    """Check anomaly maps: one finite float HxW map per image, H and W those of the image.

    ``shapes`` are the (H, W) of the input images. When all are equal the result is a
    float32 array N x H x W; otherwise a list of float32 HxW arrays.
    """

    def fail(expected: str, actual: str, detail: str | None = None) -> ContractViolation:
        return ContractViolation(
            plugin=plugin, component=component, field="anomaly maps", expected=expected, actual=actual, detail=detail
        )

    if isinstance(maps, np.ndarray):
        if maps.ndim != 3:
            raise fail("an N x H x W array", f"of shape {maps.shape}")
        items = list(maps)
        stacked_shape: tuple[int, ...] | None = maps.shape
    elif isinstance(maps, (list, tuple)):
        items = [np.asarray(m) for m in maps]
        stacked_shape = None
    else:
        raise fail("an N x H x W float array", _describe(maps))

    if shapes is not None:
        shapes = [tuple(int(v) for v in s[:2]) for s in shapes]
        if len(items) != len(shapes):
            actual = f"of shape {stacked_shape}" if stacked_shape else f"for {len(items)} images"
            raise fail(f"{len(shapes)} maps (one per image)", actual)
        uniform = len(set(shapes)) <= 1
        for i, (item, shape) in enumerate(zip(items, shapes)):
            if item.shape != shape:
                if stacked_shape is not None and uniform:
                    raise fail(f"{(len(shapes), *shape)}", f"of shape {stacked_shape}")
                raise fail(f"map {i} of shape {shape}", f"with map {i} of shape {item.shape}")
    out = []
    for i, item in enumerate(items):
        if item.ndim != 2:
            raise fail("HxW maps", f"with map {i} of shape {item.shape}")
        if not (np.issubdtype(item.dtype, np.floating) or np.issubdtype(item.dtype, np.integer)):
            raise fail("float maps", f"of dtype {item.dtype}")
        item = item.astype(np.float32, copy=False)
        # min and max are NaN or infinite exactly when some value is: two passes, no temporary
        if item.size and not (np.isfinite(item.min()) and np.isfinite(item.max())):
            n_bad = int((~np.isfinite(item)).sum())
            raise fail("finite values", f"with {n_bad} non-finite value(s) in map {i}")
        out.append(item)
    if not out:
        return np.zeros((0, 0, 0), dtype=np.float32)
    if stacked_shape is not None and maps.dtype == np.float32:
        return maps  # already the N x H x W float32 array: checked, not copied
    if len({m.shape for m in out}) == 1:
        return stack_maps(out)
    return out


def stack_maps(maps: Sequence[np.ndarray]) -> np.ndarray:
    """Equal-shape HxW maps -> one float32 N x H x W array, written map by map into one
    allocation (:func:`empty_maps`; megapixel maps of a whole training set are gigabytes)."""
    out = empty_maps(len(maps), *np.shape(maps[0]))
    for i, m in enumerate(maps):
        out[i] = m
    return out


PLAIN_PAGES_BYTES = 64 * 2**20  # from this size on, maps are allocated in ordinary pages


def empty_maps(n: int, height: int, width: int) -> np.ndarray:
    """An uninitialised float32 ``n x height x width`` array for maps (:func:`empty_array`)."""
    return empty_array((int(n), int(height), int(width)), np.float32)


def empty_array(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialised array; from :data:`PLAIN_PAGES_BYTES` on, an anonymous memory mapping in
    ordinary pages.

    numpy asks the kernel for transparent huge pages for large arrays, and where the kernel
    compacts memory to find them (``defrag=madvise``, a common default) the first write to a
    fresh gigabyte stalled for 2.5-6 s on the 2-core development machine, against 0.4 s in
    ordinary pages (out-of-fold maps of 120 VisA training images, 720 MB). The mapping is
    released with the array."""
    dtype = np.dtype(dtype)
    shape = tuple(int(v) for v in shape)
    count = int(np.prod(shape, dtype=np.int64))
    if count * dtype.itemsize < PLAIN_PAGES_BYTES:
        return np.empty(shape, dtype=dtype)
    import mmap

    return np.frombuffer(mmap.mmap(-1, count * dtype.itemsize), dtype=dtype, count=count).reshape(shape)


class _ArrayModel(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    values: Any = Field(description="the array")
    component: str = "detector"
    plugin: str | None = None


class ImageScores(_ArrayModel):
    """One finite float score per image, higher = more anomalous."""

    n_images: int | None = None

    @model_validator(mode="after")
    def _check(self) -> ImageScores:
        object.__setattr__(
            self, "values", validate_scores(self.values, self.n_images, component=self.component, plugin=self.plugin)
        )
        return self


class ImageLabels(_ArrayModel):
    """One 0/1 label per image (1 = anomalous)."""

    n_images: int | None = None

    @model_validator(mode="after")
    def _check(self) -> ImageLabels:
        object.__setattr__(
            self, "values", validate_labels(self.values, self.n_images, component=self.component, plugin=self.plugin)
        )
        return self


class AnomalyMaps(_ArrayModel):
    """One finite float32 HxW map per image, at the image's own resolution."""

    shapes: list[tuple[int, int]] | None = None

    @model_validator(mode="after")
    def _check(self) -> AnomalyMaps:
        object.__setattr__(
            self, "values", validate_maps(self.values, self.shapes, component=self.component, plugin=self.plugin)
        )
        return self


class DatasetSample(BaseModel):
    """One image of a data set split. ``label`` 1 means defective."""

    model_config = ConfigDict(frozen=True)

    image_path: Path
    label: Literal[0, 1]
    mask_path: Path | None = None
    defect_type: str = "good"
    category: str

    @model_validator(mode="after")
    def _check(self) -> DatasetSample:
        if self.label == 0 and self.mask_path is not None:
            raise ValueError(f"good image {self.image_path} must not have a mask (got {self.mask_path})")
        return self


class SplitCounts(BaseModel):
    """Image counts of one split of one category."""

    good: int = Field(0, ge=0)
    defect: int = Field(0, ge=0)

    @property
    def total(self) -> int:
        return self.good + self.defect


class DatasetInfo(BaseModel):
    """What a data set holds, known without reading pixels."""

    name: str
    categories: list[str]
    counts: dict[str, dict[str, SplitCounts]] = Field(
        default_factory=dict, description="category -> split ('train'/'test') -> counts"
    )
    defect_types: dict[str, list[str]] = Field(default_factory=dict, description="category -> defect kinds")
    has_masks: bool = True
    root: Path | None = None
