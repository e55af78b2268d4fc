"""Calibration, step by step: the validation split, the post-processing statistics, the
thresholds' values, the heatmaps' colour range, and what a threshold does on labelled
images (precision, recall, F1). Numbers in, numbers out; :class:`pyimgano.Pipeline` and
few-shot tuning (:mod:`pyimgano.pipeline.fewshot`) call them, and so can anyone."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from pyimgano.errors import InvalidParams, MetricError

# a quantile pixel threshold reads at most about this many normal pixels, evenly strided
# across the maps (out-of-fold maps of every training image can be far more; 2**24 pixels
# leave about 1,700 above the 0.9999 quantile)
MAX_CALIBRATION_PIXELS = 2**24


# -- calibration, step by step-----------------------------------------------------------------
def split_validation(
    n: int, val_fraction: float, seed: int, min_train_images: int = 1, detector: str = "the detector"
) -> tuple[list[int], list[int]]:
    """Indices (fit, validation) of ``n`` training images: a seeded random ``val_fraction``
    of them (at least one) is held out, and at least ``min_train_images`` stay for fitting."""
    if n <= 0:
        raise InvalidParams("no training images")
    n_val = max(1, int(math.floor(n * val_fraction + 0.5)))
    if n - n_val < min_train_images:
        raise InvalidParams(
            f"val_fraction {val_fraction} of {n} training image(s) holds out {n_val} for validation and leaves "
            f"{n - n_val} to fit {detector}, which needs at least {min_train_images} (min_train_images); "
            "give more training images, a smaller val_fraction, or val_images"
        )
    held = set(np.random.default_rng(seed).permutation(n)[:n_val].tolist())
    return [i for i in range(n) if i not in held], sorted(held)


def fit_postprocessing(config: list[dict[str, Any]], normal_maps: list[np.ndarray]) -> Any:
    """A fresh :class:`~pyimgano.postprocess.PostProcessing` of ``config``, its statistics
    fitted on the maps of normal validation (or training) images."""
    from pyimgano.postprocess.chain import PostProcessing

    chain = PostProcessing.from_config(config)
    if chain.needs_fit:
        if not normal_maps:
            raise InvalidParams(f"post-processing {config} needs statistics of normal validation maps; got none")
        chain.fit(list(normal_maps))
    return chain


def pixel_threshold_value(
    strategy: Any, maps: list[np.ndarray], labels: np.ndarray | None = None, masks: list | None = None
) -> float:
    """The pixel threshold of ``strategy`` on post-processed validation maps: a quantile of
    the pixels of the normal images, F1-optimal on labelled masks, or the fixed value."""
    from pyimgano.thresholds import FixedThreshold, FprThreshold, QuantileThreshold

    if isinstance(strategy, FixedThreshold):
        return float(strategy.value)
    if isinstance(strategy, (QuantileThreshold, FprThreshold)):
        normal = [m for i, m in enumerate(maps) if labels is None or not labels[i]]
        # the pixel vector is this call's own: a quantile may reorder it instead of copying it
        scratch = {"scratch": True} if isinstance(strategy, QuantileThreshold) else {}
        return finite(strategy.compute(normal_pixels(normal), **scratch), "pixel threshold")
    if masks is None:
        raise InvalidParams(f"pixel_threshold {strategy.spec()!r} needs defect masks of the validation images")
    truth = np.concatenate([np.zeros(np.shape(m), bool).ravel() if k is None else (np.asarray(k) > 0).ravel()
                            for m, k in zip(maps, masks)])
    pixels = np.concatenate([np.asarray(m, dtype=np.float64).ravel() for m in maps])
    return finite(strategy.compute(pixels, truth), "pixel threshold")


def normal_pixels(maps: Sequence[np.ndarray], limit: int = MAX_CALIBRATION_PIXELS) -> np.ndarray:
    """The pixels of normal maps as one float64 array; past ``limit`` pixels in all, every
    k-th pixel of each map (the same stride everywhere, so each map keeps its share)."""
    total = sum(int(np.size(m)) for m in maps)
    if total == 0:
        return np.zeros(0)
    step = max(1, math.ceil(total / limit))
    # stride first, then widen: only the pixels kept are converted (a float64 copy of every
    # full-size map cost more than the rest of the calibration), cast straight into the result
    return np.concatenate([np.asarray(m).ravel()[::step] for m in maps], dtype=np.float64)


def finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise MetricError(f"the {what} came out as {value}; the validation maps or scores are not finite")
    return float(value)


def needs_data(strategy: Any) -> bool:
    from pyimgano.thresholds import FixedThreshold

    return not isinstance(strategy, FixedThreshold)


def heatmap_range(normal_maps: list[np.ndarray], pixel_threshold: float | None) -> list[float] | None:
    """A colour range for heatmaps: from the lowest normal validation value, with the pixel
    threshold halfway (so warm colours mean above it); None without maps."""
    if not normal_maps:
        return None
    lo = float(min(np.min(m) for m in normal_maps))
    if pixel_threshold is not None and pixel_threshold > lo:
        return [lo, float(2 * pixel_threshold - lo)]
    hi = float(max(np.max(m) for m in normal_maps))
    return [lo, hi if hi > lo else lo + 1.0]


# -- figures at a threshold --------------------------------------------------------------------
def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def image_figures(labels: np.ndarray, scores: np.ndarray, threshold: float | None) -> dict[str, float | None]:
    """Precision, recall, F1 and FPR of ``score > threshold`` against the labels."""
    keys = ("image_precision", "image_recall", "image_f1", "image_fpr")
    if threshold is None:
        return dict.fromkeys(keys)
    truth = np.asarray(labels).astype(bool)
    flagged = np.asarray(scores, dtype=np.float64) > threshold
    tp = int(np.count_nonzero(flagged & truth))
    fp = int(np.count_nonzero(flagged & ~truth))
    fn = int(np.count_nonzero(~flagged & truth))
    n_good = int(np.count_nonzero(~truth))
    return dict(zip(keys, (_ratio(tp, tp + fp), _ratio(tp, tp + fn), _ratio(2 * tp, 2 * tp + fp + fn),
                           _ratio(fp, n_good))))


def pixel_figures(masks: list[np.ndarray] | None, maps: list[np.ndarray] | None,
                  threshold: float | None) -> dict[str, float | None]:
    """Precision, recall, F1 and IoU of ``map > threshold`` against the masks, over all pixels."""
    keys = ("pixel_precision", "pixel_recall", "pixel_f1", "pixel_iou")
    if threshold is None or masks is None or maps is None:
        return dict.fromkeys(keys)
    tp = fp = fn = 0
    for mask, amap in zip(masks, maps):
        truth = np.asarray(mask, dtype=bool)
        flagged = np.asarray(amap) > threshold
        tp += int(np.count_nonzero(flagged & truth))
        fp += int(np.count_nonzero(flagged & ~truth))
        fn += int(np.count_nonzero(~flagged & truth))
    return dict(zip(keys, (_ratio(tp, tp + fp), _ratio(tp, tp + fn), _ratio(2 * tp, 2 * tp + fp + fn),
                           _ratio(tp, tp + fp + fn))))
