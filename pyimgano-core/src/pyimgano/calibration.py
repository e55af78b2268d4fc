"""The statistics behind a threshold that keeps its promise (docs/pipeline.md, "What the
false-reject rate means").

A threshold is calibrated on the scores of *normal* images the detector has not learnt
from (held-out validation images, or out-of-fold scores of the training images). Three
facts follow from those n scores alone, with no assumption about their distribution
beyond new good parts being like them (exchangeable):

- **Conformal rank.** The k-th smallest of n calibration scores, k = ceil((n + 1)(1 - alpha)),
  rejects a new good part with probability at most alpha (:func:`conformal_rank`). It exists
  only when n >= 1/alpha - 1 (:func:`min_calibration`); below that no order statistic keeps
  the promise and :func:`fpr_threshold` falls back to a fitted exponential tail, saying so.
- **Upper bound.** Of n calibration scores, m lie above a threshold; the false-reject rate
  of that threshold is then at most the one-sided Clopper-Pearson upper limit
  ``beta.ppf(0.95, m + 1, n - m)`` with 95% confidence (:func:`clopper_pearson_upper`). For
  the conformal threshold this is exactly the distribution of its rate.
- **p-value.** A new image's conformal p-value is (1 + #calibration scores >= its score) / (n + 1)
  (:func:`p_values`): small means few normal images scored as high; an operator sorts by it.

Also here: how calibration scores are obtained (:data:`CALIBRATION_SOURCES`) and the
generic K-fold cross-fitting for detectors without a cheaper out-of-fold way
(:func:`cross_fit_scores`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from pyimgano.errors import InvalidParams, MetricError

#: confidence of the reported upper bound on the false-reject rate
BOUND_CONFIDENCE = 0.95
#: k rejects of m good images contradict a promised rate when k or more had less than this
#: probability at that rate (docs/pipeline.md, "Checking the promise on your own good images")
CONSISTENT_P = 0.05
#: how calibration scores are obtained (Pipeline ``calibration=``, ``--calibration``)
CALIBRATION_SOURCES = {
    "auto": "out-of-fold when the detector offers it (supports_out_of_fold), else holdout",
    "holdout": "a seeded val_fraction of the training images, held out from the detector",
    "oof": "the detector's own out-of-fold scores of every training image (an error if it has none)",
    "kfold": "kfold or kfold:K: K-fold cross-fitting, K+1 fits (any detector; K defaults to 5)",
}
DEFAULT_CALIBRATION = "auto"
DEFAULT_FOLDS = 5
#: the small-n rules of fpr:ALPHA (see :func:`fpr_threshold`)
SMALL_N_RULES = ("tail", "strict")
#: the exponential tail is fitted to the scores above this quantile of the calibration scores
TAIL_FROM_QUANTILE = 0.5


# -- the three facts ------------------------------------------------------------------------------
def min_calibration(alpha: float) -> int:
    """The fewest calibration scores for which a conformal threshold at rate ``alpha`` exists."""
    return max(1, math.ceil(1.0 / alpha - 1.0 - 1e-9))


def conformal_rank(n: int, alpha: float) -> int | None:
    """k = ceil((n + 1)(1 - alpha)), 1-based, or None when k > n (too few scores for ``alpha``)."""
    k = math.ceil((n + 1) * (1.0 - alpha) - 1e-9)
    return k if 1 <= k <= n else (1 if k < 1 else None)


def clopper_pearson_upper(exceed: int, n: int, confidence: float = BOUND_CONFIDENCE) -> float | None:
    """One-sided upper confidence limit of a rate seen ``exceed`` times in ``n``; None for n = 0."""
    from scipy.special import betaincinv  # the beta distribution's quantile (scipy.stats.beta.ppf)

    if n <= 0:
        return None
    if exceed >= n:
        return 1.0
    return float(betaincinv(exceed + 1, n - exceed, confidence))


def rejects_probability(rejects: int, good: int, rate: float | None) -> float | None:
    """P(at least ``rejects`` of ``good`` good images rejected) were the false-reject rate
    ``rate``: below :data:`CONSISTENT_P`, the count contradicts the rate (None without a rate
    or without good images)."""
    from scipy.stats import binom

    return None if rate is None or not good else float(binom.sf(int(rejects) - 1, int(good), float(rate)))


def p_values(calibration_scores: Any, scores: Any) -> np.ndarray:
    """Conformal p-values of ``scores``: (1 + #calibration scores >= score) / (n + 1)."""
    cal = np.sort(np.asarray(calibration_scores, dtype=np.float64).ravel())
    s = np.asarray(scores, dtype=np.float64).ravel()
    at_or_above = cal.size - np.searchsorted(cal, s, side="left")
    return (1.0 + at_or_above) / (cal.size + 1.0)


# -- fpr:ALPHA ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FprFit:
    """What :func:`fpr_threshold` chose and why."""

    threshold: float
    n: int
    method: str  # "conformal" or "tail"
    rank: int | None  # the order statistic used (conformal), 1-based
    note: str | None = None


def small_n_message(alpha: float, n: int) -> str:
    """The one line saying that ``n`` calibration scores cannot support ``alpha``."""
    return (f"fpr:{alpha:g} needs at least {min_calibration(alpha)} normal calibration scores for a conformal "
            f"threshold; {n} are available")


def fpr_threshold(scores: Any, alpha: float, small_n: str = "tail") -> FprFit:
    """The threshold keeping the false-reject rate of normal images at or below ``alpha``.

    With n >= :func:`min_calibration` scores: the conformal rank's order statistic. Below
    that, ``small_n="strict"`` is an :class:`InvalidParams` line, ``"tail"`` fits an
    exponential tail to the scores above their median (mean excess ``b`` over the median
    ``u``, share above ``p``) and returns ``u + b * ln(p / alpha)``, never below the
    largest score: an extrapolation the n scores cannot certify (the reported bound says
    what they do support).
    """
    s = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    n = int(s.size)
    if n == 0:
        raise MetricError("fpr threshold needs at least one normal calibration score")
    rank = conformal_rank(n, alpha)
    if rank is not None:
        return FprFit(float(s[rank - 1]), n, "conformal", rank)
    message = small_n_message(alpha, n)
    if small_n == "strict":
        raise InvalidParams(message)
    u = float(np.quantile(s, TAIL_FROM_QUANTILE))
    above = s[s > u]
    top = float(s[-1])
    if above.size == 0:  # all scores equal above the median: nothing to fit
        return FprFit(top, n, "tail", None, f"{message}; the largest score is used")
    b = float(np.mean(above - u))
    value = u + b * math.log((above.size / n) / alpha)
    return FprFit(max(value, top), n, "tail", None,
                  f"{message}; the threshold extrapolates an exponential tail fitted above their median")


# -- the promise -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Promise:
    """What a calibrated image threshold promises about good parts (saved, printed, benchmarked)."""

    target: float | None  # the false-reject rate asked for (fpr:ALPHA; 1 - Q for quantile:Q)
    n: int  # normal calibration scores
    exceed: int  # of them above the threshold
    upper: float | None  # BOUND_CONFIDENCE upper bound on the false-reject rate
    source: str  # how the calibration scores were obtained
    method: str | None = None  # fpr: "conformal" or "tail"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """One line for fit's summary."""
        target = "no target" if self.target is None else f"target false-reject rate {self.target:g}"
        bound = "" if self.upper is None else (f", at most {self.upper:.3g} with {BOUND_CONFIDENCE:.0%} "
                                               f"confidence ({self.exceed} of {self.n} above)")
        return f"{target}{bound}; {self.n} {self.source} normal scores" + (
            " (tail fallback)" if self.method == "tail" else "")


def promise(strategy: Any, threshold: float, normal_scores: Any, source: str, method: str | None = None) -> Promise:
    """The :class:`Promise` of ``threshold`` given the normal calibration scores."""
    s = np.asarray(normal_scores, dtype=np.float64).ravel()
    exceed = int(np.count_nonzero(s > threshold))
    return Promise(target_rate(strategy), int(s.size), exceed, clopper_pearson_upper(exceed, int(s.size)),
                   source, method)


def target_rate(strategy: Any) -> float | None:
    """The false-reject rate a strategy asks for: alpha for fpr, 1 - q for quantile, else None."""
    kind = getattr(strategy, "strategy", None)
    if kind == "fpr":
        return float(strategy.alpha)
    if kind == "quantile":
        return float(1.0 - strategy.q)
    return None


# -- where calibration scores come from ------------------------------------------------------------
def parse_calibration(value: Any) -> tuple[str, int]:
    """(source, folds) of a ``calibration`` setting; one :class:`InvalidParams` line if unknown."""
    text = str(value).strip().lower() if isinstance(value, str) else None
    if text is None:
        raise InvalidParams(f"calibration {value!r}: expected one of {', '.join(CALIBRATION_SOURCES)} (kfold:K)")
    name, sep, arg = text.partition(":")
    if name not in CALIBRATION_SOURCES or (sep and name != "kfold"):
        raise InvalidParams(f"calibration {value!r}: expected one of {', '.join(CALIBRATION_SOURCES)} (kfold:K)")
    folds = DEFAULT_FOLDS
    if sep:
        try:
            folds = int(arg)
        except ValueError:
            folds = 0
        if folds < 2:
            raise InvalidParams(f"calibration {value!r}: K must be a whole number >= 2, e.g. kfold:5")
    return name, folds


def fold_indices(n: int, folds: int, seed: int) -> list[np.ndarray]:
    """A seeded split of ``range(n)`` into ``folds`` nearly equal parts."""
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.array_split(order, folds)]


def clone_detector(detector: Any) -> Any:
    """An unfitted detector of the same class and parameters (the registry's name kept)."""
    other = type(detector)(**detector.get_params())
    for attr in ("component", "plugin"):
        if attr in vars(detector):
            setattr(other, attr, getattr(detector, attr))
    return other


def cross_fit_scores(detector: Any, images: Sequence[np.ndarray], folds: int, seed: int
                     ) -> tuple[np.ndarray, list[np.ndarray] | None]:
    """Out-of-fold (scores, maps) of ``images`` by K-fold cross-fitting: each fold is scored
    by a fresh copy of ``detector`` fitted on the other folds (``detector`` itself is untouched)."""
    n = len(images)
    folds = min(folds, n)
    scores = np.empty(n, dtype=np.float64)
    maps: list[Any] = [None] * n
    has_maps = True
    for part in fold_indices(n, folds, seed):
        rest = np.setdiff1d(np.arange(n), part)
        copy = clone_detector(detector)
        copy.fit([images[i] for i in rest])
        s, m = copy.score([images[i] for i in part])
        scores[part] = s
        if m is None:
            has_maps = False
        else:
            for j, i in enumerate(part):
                maps[i] = np.asarray(m[j], dtype=np.float32)
    return scores, (maps if has_maps else None)
