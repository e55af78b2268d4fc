"""AUPRO: area under the per-region-overlap curve up to an FPR limit (MVTec AD definition).

Definition (as the official MVTec AD evaluation code computes it):

* ground-truth regions are the 8-connected components of each image's mask;
* at a threshold ``t`` a pixel is "anomalous" when its score is ``>= t``; the FPR is the
  fraction of all defect-free pixels (over the whole set) that are anomalous, and the PRO
  is the mean over all regions (of all images) of the fraction of the region's pixels that
  are anomalous;
* every distinct score is a threshold (pixels with equal scores enter together), the curve
  starts at (0, 0), and it is integrated by the trapezoid rule up to ``fpr_limit``, with the
  PRO linearly interpolated at the limit; the area is divided by ``fpr_limit``.

How it is computed without sorting every pixel: thresholds whose FPR is past the limit do
not matter, except the first one (for the interpolation). That threshold ``t*`` is the
k-th largest normal score, found with ``np.partition``; only normal pixels ``>= t*`` are
sorted (values only), and only defect pixels ``>= t*`` are sorted with their region
weights. Between two consecutive distinct defect scores the PRO is constant, so the curve
there is a horizontal segment whose area needs only its end points: for each distinct
defect score ``d`` the curve passes through (FPR(> d), PRO(> d)) and (FPR(>= d), PRO(>= d)),
and the normal counts at ``d`` come from ``searchsorted`` into the sorted normal scores.
The result is the same piecewise-linear curve, so the same area, as the full computation.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage

from pyimgano.errors import MetricError
from pyimgano.metrics._inputs import pixel_level, sharing, split_pixels, split_sorted, undefined
from pyimgano.metrics.params import DEFAULT_FPR_LIMIT

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def region_weights(masks: list[np.ndarray]) -> tuple[np.ndarray, int]:
    """For every defect pixel (image by image, C order): 1 / size of its 8-connected region.

    Returns the weights and the number of regions over all images.
    """
    parts = []
    n_regions = 0
    for mask in masks:
        if not mask.any():
            continue
        labels, n = ndimage.label(mask, structure=EIGHT_CONNECTED)
        ids = labels[mask]
        sizes = np.bincount(ids, minlength=n + 1).astype(np.float64)
        parts.append(1.0 / sizes[ids])
        n_regions += n
    weights = np.concatenate(parts) if parts else np.empty(0, np.float64)
    return weights, n_regions


def _first_count_past(limit: float, n: int) -> int:
    """Smallest count ``k`` with ``k / n > limit`` (in float64, as the FPR is computed)."""
    k = int(math.floor(limit * n)) + 1
    while k > 1 and (k - 1) / n > limit:
        k -= 1
    while k <= n and k / n <= limit:
        k += 1
    return k


def area_to_limit(x: np.ndarray, y: np.ndarray, limit: float) -> float:
    """Trapezoid area under (x, y) for x in [0, limit], interpolating y at the limit, / limit.

    ``x`` must be non-decreasing and start at 0.
    """
    inside = int(np.searchsorted(x, limit, side="right"))
    xs, ys = x[:inside], y[:inside]
    area = float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) * 0.5))
    if inside < x.size and xs[-1] < limit:
        x0, x1, y0, y1 = x[inside - 1], x[inside], y[inside - 1], y[inside]
        y_limit = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
        area += 0.5 * (y0 + y_limit) * (limit - x0)
    return area / limit


def pro_area(
    normals: np.ndarray,
    defects: np.ndarray,
    weights: np.ndarray,
    fpr_limit: float,
    *,
    normals_sorted: bool = False,
) -> float:
    """Normalised area under the PRO curve up to ``fpr_limit``.

    ``normals``: scores of all defect-free pixels (reordered in place unless sorted
    ascending already, as ``normals_sorted`` says); ``defects``: scores of all defect
    pixels; ``weights``: each defect pixel's 1 / (region size x number of regions).
    """
    n0 = normals.size
    k = _first_count_past(fpr_limit, n0)
    if k > n0:  # the limit is FPR 1: every threshold counts
        if not normals_sorted:
            normals.sort()
        top, t, n_ge_t = normals, -np.inf, n0
    else:
        cut = n0 - k
        if not normals_sorted:
            normals.partition(cut)
            normals[cut:].sort()
        top = normals[cut:]
        t = top[0]
        below = normals[:cut]
        n_ge_t = k + int(np.count_nonzero(below == t) if not normals_sorted else cut - np.searchsorted(below, t))

    keep = defects >= t
    dv, dw = defects[keep], weights[keep]
    order = np.argsort(dv)[::-1]
    dv = dv[order]
    cum = np.minimum(np.cumsum(dw[order]), 1.0)
    total = float(cum[-1]) if cum.size else 0.0

    above = dv > t  # the group equal to t (if any) is the last point, counted with all normals
    n_above = int(np.count_nonzero(above))
    ends = np.flatnonzero(np.r_[dv[1:n_above] != dv[: n_above - 1], True]) if n_above else np.empty(0, np.int64)
    values = dv[ends]
    pro_ge = cum[ends]
    pro_gt = np.r_[0.0, pro_ge][:-1]
    fp_ge = top.size - np.searchsorted(top, values, side="left")
    fp_gt = fp_ge.copy()
    tied = fp_ge > 0  # a normal pixel scores exactly d only if the first one >= d equals d
    tied[tied] = top[top.size - fp_ge[tied]] == values[tied]
    fp_gt[tied] = top.size - np.searchsorted(top, values[tied], side="right")
    pro_above_t = float(pro_ge[-1]) if n_above else 0.0
    fp_above_t = top.size - int(np.searchsorted(top, t, side="right"))

    fp = np.concatenate([[0], np.column_stack([fp_gt, fp_ge]).ravel(), [fp_above_t, n_ge_t]])
    pro = np.concatenate([[0.0], np.column_stack([pro_gt, pro_ge]).ravel(), [pro_above_t, total]])
    return area_to_limit(fp / n0, pro, fpr_limit)


def check_fpr_limit(fpr_limit: float) -> float:
    limit = float(fpr_limit)
    if not 0.0 < limit <= 1.0:
        raise MetricError(f"fpr_limit must be in (0, 1]; got {fpr_limit!r}")
    return limit


def aupro(masks: Any, maps: Any, fpr_limit: float = DEFAULT_FPR_LIMIT, *, nan_on_undefined: bool = False) -> float:
    """Normalised area under the PRO curve up to ``fpr_limit`` (MVTec AD definition).

    ``masks``: N x H x W bool/0-1/0-255 ground truth (or a list of H x W arrays);
    ``maps``: anomaly maps of the same shapes, higher = more anomalous. Undefined (an error,
    or NaN with a warning when ``nan_on_undefined``) without a defect region or without a
    defect-free pixel.
    """
    limit = check_fpr_limit(fpr_limit)
    if sharing():  # the other pixel metrics sort every normal pixel anyway: one sort for all
        mask_list, defects, normals = split_sorted(masks, maps)
        return pro_from_split(mask_list, defects, normals, limit, nan_on_undefined=nan_on_undefined,
                              normals_sorted=True)
    mask_list, map_list, dtype = pixel_level(masks, maps)
    defects, normals = split_pixels(mask_list, map_list, dtype)
    return pro_from_split(mask_list, defects, normals, limit, nan_on_undefined=nan_on_undefined)


def pro_from_split(
    masks: list[np.ndarray],
    defects: np.ndarray,
    normals: np.ndarray,
    limit: float,
    *,
    nan_on_undefined: bool,
    normals_sorted: bool = False,
) -> float:
    if normals.size == 0:
        return undefined("aupro", "there are no defect-free pixels", nan_on_undefined)
    weights, n_regions = region_weights(masks)
    if n_regions == 0:
        return undefined("aupro", "the masks have no defect region", nan_on_undefined)
    weights /= n_regions
    return pro_area(normals, defects, weights, limit, normals_sorted=normals_sorted)
