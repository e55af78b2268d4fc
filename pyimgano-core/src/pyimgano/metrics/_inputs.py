"""Input checks shared by every metric: shapes, finiteness, 0/1 masks, undefined cases.

Masks may be bool, 0/1 or 0/255 (binarised per image); anything else is an error. Maps
keep their float dtype (float16 and small integers become float32, other integers float64)
so that comparisons between scores stay exact and large sets are not copied into float64.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np

from pyimgano.contracts import empty_array
from pyimgano.errors import MetricError


class UndefinedMetricWarning(UserWarning):
    """A metric is undefined for the given inputs and NaN was returned (``nan_on_undefined=True``)."""


def undefined(metric: str, reason: str, nan_on_undefined: bool) -> float:
    """Raise :class:`MetricError`, or warn and return NaN when the caller asked for that."""
    message = f"{metric} is undefined: {reason}"
    if not nan_on_undefined:
        raise MetricError(message + " (pass nan_on_undefined=True to get NaN instead)")
    warnings.warn(message + "; returning NaN", UndefinedMetricWarning, stacklevel=3)
    return float("nan")


def _score_dtype(dtypes: Sequence[np.dtype], what: str) -> np.dtype:
    for dtype in dtypes:
        if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.bool_)):
            raise MetricError(f"{what} must be real numbers; got dtype {dtype}")
    return np.result_type(np.float32, *dtypes)


def _check_finite(array: np.ndarray, what: str) -> None:
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = np.flatnonzero(~np.isfinite(array.ravel()))
        value = array.ravel()[bad[0]]
        raise MetricError(f"{what} has {bad.size} non-finite value(s) (NaN or inf), e.g. {value!r}")


def binary_mask(mask: np.ndarray, what: str) -> np.ndarray:
    """A bool view/copy of a 0/1 or 0/255 mask; other values raise :class:`MetricError`."""
    if mask.dtype == bool:
        return mask
    if not (np.issubdtype(mask.dtype, np.integer) or np.issubdtype(mask.dtype, np.floating)):
        raise MetricError(f"{what} must be bool or 0/1 (or 0/255) numbers; got dtype {mask.dtype}")
    if mask.size == 0:
        return mask.astype(bool)
    nonzero = mask != 0
    high = mask.max()
    n_nonzero = int(np.count_nonzero(nonzero))
    if n_nonzero == 0 or (high in (1, 255) and int(np.count_nonzero(mask == high)) == n_nonzero):
        return nonzero
    flat = mask.ravel()
    odd = flat[(flat != 0) & (flat != 1) & (flat != 255)]
    found = f"found {np.unique(odd)[:3].tolist()}" if odd.size else "found both 1 and 255"
    raise MetricError(f"{what} must contain only 0/1 (or only 0/255) values; {found}")


def image_level(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """Check image labels (0/1) and scores (finite), one each per image."""
    y = np.asarray(labels)
    s = np.asarray(scores)
    if y.ndim != 1 or s.ndim != 1:
        raise MetricError(f"labels and scores must be 1-D (one per image); got shapes {y.shape} and {s.shape}")
    if y.shape != s.shape:
        raise MetricError(f"labels and scores differ in length: {y.shape[0]} labels, {s.shape[0]} scores")
    if y.size == 0:
        raise MetricError("labels and scores are empty: a metric needs at least one image")
    if y.dtype != bool:
        if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
            raise MetricError(f"labels must be 0/1; got dtype {y.dtype}")
        odd = y[(y != 0) & (y != 1)]
        if odd.size:
            raise MetricError(f"labels must be 0/1; found {np.unique(odd)[:3].tolist()}")
    dtype = _score_dtype([s.dtype], "scores")
    s = s.astype(dtype, copy=False)
    _check_finite(s, "scores")
    return y.astype(bool), s


def _image_list(value: Any, what: str) -> list[np.ndarray]:
    if isinstance(value, (list, tuple)):
        arrays = [np.asarray(item) for item in value]
        for i, array in enumerate(arrays):
            if array.ndim != 2:
                raise MetricError(f"{what}[{i}] must be an H x W array; got shape {array.shape}")
        return arrays
    array = np.asarray(value)
    if array.ndim != 3:
        raise MetricError(
            f"{what} must be an N x H x W array or a list of H x W arrays; got shape {array.shape}"
            + (" (wrap a single map as [map])" if array.ndim == 2 else "")
        )
    return list(array)


def pixel_level(masks: Any, maps: Any) -> tuple[list[np.ndarray], list[np.ndarray], np.dtype]:
    """Check masks and maps image by image.

    Returns bool masks, the maps (views where possible) and the common score dtype.
    """
    mask_list = _image_list(masks, "masks")
    map_list = _image_list(maps, "maps")
    if len(mask_list) != len(map_list):
        raise MetricError(f"got {len(mask_list)} masks but {len(map_list)} maps")
    if not map_list:
        raise MetricError("masks and maps are empty: a metric needs at least one image")
    for i, (mask, amap) in enumerate(zip(mask_list, map_list)):
        if mask.shape != amap.shape:
            raise MetricError(f"masks[{i}] has shape {mask.shape} but maps[{i}] has shape {amap.shape}")
    if sum(m.size for m in map_list) == 0:
        raise MetricError("the maps have no pixels")
    dtype = _score_dtype([m.dtype for m in map_list], "maps")
    bool_masks = [binary_mask(mask, f"masks[{i}]") for i, mask in enumerate(mask_list)]
    for i, amap in enumerate(map_list):
        _check_finite(amap, f"maps[{i}]")
    return bool_masks, map_list, dtype


def split_pixels(
    masks: list[np.ndarray], maps: list[np.ndarray], dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray]:
    """All defect-pixel scores and all normal-pixel scores, each one contiguous array."""
    n_pos = sum(int(np.count_nonzero(m)) for m in masks)
    n_all = sum(m.size for m in masks)
    pos = empty_array((n_pos,), dtype)
    neg = empty_array((n_all - n_pos,), dtype)
    p = q = 0
    for mask, amap in zip(masks, maps):
        k = int(np.count_nonzero(mask))
        pos[p : p + k] = amap[mask]
        neg[q : q + amap.size - k] = amap[~mask]
        p += k
        q += amap.size - k
    return pos, neg


# (masks, maps, (bool masks, defect scores in mask order, normal scores sorted)) per pair of
# objects, inside shared_split() only
_SHARED: ContextVar[dict | None] = ContextVar("pyimgano_metrics_shared_split", default=None)


@contextmanager
def shared_split() -> Iterator[None]:
    """Inside this block, pixel metrics of the same ``masks`` and ``maps`` objects check, split
    and sort their pixels once (the benchmark computes four pixel metrics over each category's
    test maps: tens of millions of pixels, each split and sort a second or more). A block inside
    another shares the outer one's pixels."""
    if _SHARED.get() is not None:
        yield
        return
    token = _SHARED.set({})
    try:
        yield
    finally:
        _SHARED.reset(token)


def sharing() -> bool:
    """Whether a :func:`shared_split` block is active."""
    return _SHARED.get() is not None


def split_sorted(masks: Any, maps: Any) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Checked bool masks, the defect-pixel scores (in mask order) and the normal-pixel scores
    sorted ascending; shared inside :func:`shared_split` (callers must not reorder them)."""
    cache = _SHARED.get()
    key = (id(masks), id(maps))
    if cache is not None and key in cache:
        return cache[key][2]
    mask_list, map_list, dtype = pixel_level(masks, maps)
    defects, normals = split_pixels(mask_list, map_list, dtype)
    normals.sort()
    result = (mask_list, defects, normals)
    if cache is not None:
        cache[key] = (masks, maps, result)  # the objects stay alive, so their ids stay theirs
    return result
