"""Image-level metrics: ground-truth 0/1 labels first, then scores (higher = more anomalous)."""

from __future__ import annotations

from typing import Any

import numpy as np

from pyimgano.metrics import _ranking
from pyimgano.metrics._inputs import image_level, undefined


def _ranking_of(labels: Any, scores: Any) -> _ranking.Ranking:
    y, s = image_level(labels, scores)
    return _ranking.rank(np.sort(s[y]), np.sort(s[~y]))


def image_auroc(labels: Any, scores: Any, *, nan_on_undefined: bool = False) -> float:
    """Area under the ROC curve of image scores (needs both normal and anomalous images)."""
    r = _ranking_of(labels, scores)
    if r.n_pos == 0 or r.n_neg == 0:
        return undefined("image_auroc", "labels hold a single class", nan_on_undefined)
    return _ranking.auroc(r)


def image_ap(labels: Any, scores: Any, *, nan_on_undefined: bool = False) -> float:
    """Average precision of image scores (needs at least one anomalous image)."""
    r = _ranking_of(labels, scores)
    if r.n_pos == 0:
        return undefined("image_ap", "there is no anomalous image", nan_on_undefined)
    return _ranking.average_precision(r)


def image_f1_max(labels: Any, scores: Any, *, nan_on_undefined: bool = False) -> tuple[float, float]:
    """Best F1 over all thresholds and that threshold (anomalous where score >= threshold)."""
    r = _ranking_of(labels, scores)
    if r.n_pos == 0:
        nan = undefined("image_f1_max", "there is no anomalous image", nan_on_undefined)
        return nan, nan
    return _ranking.f1_max(r)
