"""A third-party metric: how many defective images are caught at a bounded false-alarm rate."""

from __future__ import annotations

import math

import numpy as np

from pyimgano import MetricError


def recall_at_fpr(labels, scores, max_fpr: float = 0.0) -> float:
    """Fraction of anomalous images scored above a threshold that flags at most ``max_fpr``
    of the normal images (0: above every normal image)."""
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    if labels.shape != scores.shape or labels.ndim != 1:
        raise MetricError(f"labels of shape {labels.shape} and scores of shape {scores.shape} differ; "
                          "expected one label per score")
    normal = np.sort(scores[labels == 0])[::-1]
    anomalous = scores[labels == 1]
    if normal.size == 0 or anomalous.size == 0:
        raise MetricError("recall_at_fpr needs normal and anomalous images")
    allowed = math.floor(max_fpr * normal.size)  # normal images that may score above the threshold
    if allowed >= normal.size:
        return 1.0
    return float(np.mean(anomalous > normal[allowed]))
