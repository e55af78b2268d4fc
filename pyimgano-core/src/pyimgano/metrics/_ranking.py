"""Exact ranking counts behind AUROC, AP and F1-max, from two sorted score arrays.

Recall changes only at scores that some positive takes, and F1 is highest at one of them,
so every one of these metrics needs, for each distinct positive score ``v``, only the
number of positives ``>= v`` and of negatives ``>= v`` and ``== v``. With the negatives
sorted once, those are two ``searchsorted`` calls; no per-threshold curve over all
(possibly tens of millions of) pixels is built.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Ranking:
    """Counts at each distinct positive score (ascending)."""

    values: np.ndarray  # distinct scores of the positives, ascending
    n_at: np.ndarray  # positives with exactly that score
    tp: np.ndarray  # positives scoring >= value
    fp: np.ndarray  # negatives scoring >= value
    fp_eq: np.ndarray  # negatives scoring == value
    n_pos: int
    n_neg: int


def rank(pos_sorted: np.ndarray, neg_sorted: np.ndarray) -> Ranking:
    """Counts from ascending positive and negative scores (same dtype)."""
    n_pos, n_neg = pos_sorted.size, neg_sorted.size
    starts = np.flatnonzero(np.r_[True, pos_sorted[1:] != pos_sorted[:-1]]) if n_pos else np.empty(0, np.int64)
    values = pos_sorted[starts]
    n_at = np.diff(np.r_[starts, n_pos]).astype(np.int64)
    tp = (n_pos - starts).astype(np.int64)
    below = np.searchsorted(neg_sorted, values, side="left").astype(np.int64)
    not_above = np.searchsorted(neg_sorted, values, side="right").astype(np.int64)
    return Ranking(values, n_at, tp, n_neg - below, not_above - below, n_pos, n_neg)


def auroc(r: Ranking) -> float:
    """Probability that a positive outscores a negative, ties counting one half.

    Equals the trapezoidal area under the exact ROC curve (scikit-learn's value).
    """
    below = r.n_neg - r.fp
    twice_wins = np.dot(r.n_at, 2 * below + r.fp_eq)
    return float(twice_wins) / (2.0 * r.n_pos * r.n_neg)


def average_precision(r: Ranking) -> float:
    """Sum over thresholds of (recall increase) x precision, as scikit-learn defines AP."""
    precision = r.tp / (r.tp + r.fp)
    return float(np.dot(r.n_at, precision) / r.n_pos)


def f1_max(r: Ranking) -> tuple[float, float]:
    """Best F1 and the score threshold (predict 1 where score >= threshold) achieving it.

    Among equally good thresholds the lowest is returned.
    """
    f1 = 2.0 * r.tp / (r.tp + r.fp + r.n_pos)
    best = int(np.argmax(f1))
    return float(f1[best]), float(r.values[best])
