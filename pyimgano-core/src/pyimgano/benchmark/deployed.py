"""What a calibrated pipeline does on the test split: figures at its thresholds, and curves.

:func:`deployed_metrics` is results.json's ``deployed`` block: precision, recall, F1 and FPR
of the image labels at the image threshold, and precision, recall, F1 and IoU of the defect
masks at the pixel threshold, counted over all test pixels. A ratio whose denominator is
zero (no good image, no defect, nothing flagged) is ``None``.

:func:`curves` gives the points of the report's pictures: the image ROC curve and the PRO
curve up to the AUPRO FPR limit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from pyimgano.pipeline.calibration import image_figures, pixel_figures

if TYPE_CHECKING:
    from pyimgano.benchmark.results import Deployed

MAX_CURVE_POINTS = 200

__all__ = ["curves", "deployed_metrics", "image_figures", "metrics_and_curves", "pixel_figures", "pro_curve",
           "roc_curve"]


def deployed_metrics(
    labels: np.ndarray,
    scores: np.ndarray,
    image_threshold: float | None,
    masks: list[np.ndarray] | None,
    maps: list[np.ndarray] | None,
    pixel_threshold: float | None,
    promise: Any = None,
) -> Deployed:
    """results.json's ``deployed`` block (:class:`pyimgano.benchmark.results.Deployed`);
    ``promise``: the pipeline's :class:`pyimgano.calibration.Promise`, if it has one."""
    from pyimgano.benchmark.results import Deployed

    pixel = pixel_threshold if (masks is not None and maps is not None) else None
    promised = {} if promise is None else {"image_fpr_target": promise.target, "image_fpr_upper": promise.upper,
                                           "n_calibration": promise.n}
    return Deployed(image_threshold=image_threshold, **image_figures(labels, scores, image_threshold), **promised,
                    pixel_threshold=pixel, **pixel_figures(masks, maps, pixel))


def _thin(x: np.ndarray, y: np.ndarray, n: int = MAX_CURVE_POINTS) -> list[list[float]]:
    if x.size > n:
        keep = np.unique(np.r_[np.linspace(0, x.size - 1, n).round().astype(np.int64), x.size - 1])
        x, y = x[keep], y[keep]
    return [[round(float(a), 6) for a in x], [round(float(b), 6) for b in y]]


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> list[list[float]] | None:
    """[fpr, tpr] of the image scores (every distinct score a threshold); None with one class."""
    truth = np.asarray(labels).astype(bool)
    if truth.all() or not truth.any():
        return None
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")
    s, y = np.asarray(scores, dtype=np.float64)[order], truth[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tpr = np.r_[0.0, np.cumsum(y)[last] / y.sum()]
    fpr = np.r_[0.0, np.cumsum(~y)[last] / (~y).sum()]
    return _thin(fpr, tpr)


def pro_curve(masks: list[np.ndarray], maps: list[np.ndarray], fpr_limit: float) -> list[list[float]] | None:
    """[fpr, pro] up to ``fpr_limit`` (the AUPRO definition, sampled at up to 200 thresholds);
    None without a defect region or a defect-free pixel."""
    from pyimgano.metrics._inputs import split_sorted
    from pyimgano.metrics.pro import region_weights

    # the pixel metrics' own split and sort: shared with them inside one shared_split block
    # (metrics_and_curves), computed here otherwise
    bool_masks, defects, normals = split_sorted(masks, maps)
    weights, n_regions = region_weights(bool_masks)
    if n_regions == 0 or normals.size == 0:
        return None
    order = np.argsort(-defects, kind="mergesort")
    defects, cum = defects[order], np.cumsum(weights[order] / n_regions)
    n0 = normals.size
    counts = np.unique(np.linspace(1, max(1, int(fpr_limit * n0)), MAX_CURVE_POINTS).round().astype(np.int64))
    thresholds = normals[n0 - counts]  # the count-th largest normal value
    fp = n0 - np.searchsorted(normals, thresholds, side="left")
    n_hit = np.searchsorted(-defects, -thresholds, side="right")  # defects >= threshold
    pro = np.where(n_hit > 0, cum[np.maximum(n_hit - 1, 0)], 0.0)
    return _thin(np.r_[0.0, fp / n0], np.r_[0.0, np.minimum(pro, 1.0)])


def metrics_and_curves(labels: np.ndarray, scores: np.ndarray, masks: list[np.ndarray] | None,
                       maps: list[np.ndarray] | None, metrics: Any, notes: list[str],
                       fpr_limit: float) -> tuple[dict[str, float | None], dict[str, float], dict[str, Any]]:
    """:func:`pyimgano.benchmark.metric_set.compute_metrics` and :func:`curves` of the same test
    split: the pixels are split and sorted once for both (tens of millions of them)."""
    from pyimgano.benchmark.metric_set import compute_metrics, pixel_inputs
    from pyimgano.metrics._inputs import shared_split

    pixel_masks, pixel_maps = pixel_inputs(masks, maps)
    with shared_split():
        values, thresholds = compute_metrics(labels, scores, pixel_masks, pixel_maps, metrics, notes)
        return values, thresholds, curves(labels, scores, pixel_masks, pixel_maps, fpr_limit)


def curves(labels: np.ndarray, scores: np.ndarray, masks: list[np.ndarray] | None,
           maps: list[np.ndarray] | None, fpr_limit: float) -> dict[str, Any]:
    """The points of the report's curves: ``{"roc": [fpr, tpr] | None, "pro": [fpr, pro] | None,
    "fpr_limit": ...}``."""
    pro = pro_curve(masks, maps, fpr_limit) if masks is not None and maps is not None else None
    return {"roc": roc_curve(labels, scores), "pro": pro, "fpr_limit": fpr_limit}
