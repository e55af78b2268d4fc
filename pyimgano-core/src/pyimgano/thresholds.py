"""Threshold strategies: how a detector turns scores into 0/1 labels.

Thresholds are fitted on held-out normal images or a labelled calibration set the
caller provides, never on the test images of a benchmark.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from pyimgano.errors import MetricError


class _Strategy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def compute(self, scores: np.ndarray, labels: np.ndarray | None = None) -> float:  # pragma: no cover
        raise NotImplementedError


class FixedThreshold(_Strategy):
    """A user-given value."""

    strategy: Literal["fixed"] = "fixed"
    value: float

    def compute(self, scores: np.ndarray, labels: np.ndarray | None = None) -> float:
        return float(self.value)


class QuantileThreshold(_Strategy):
    """The q-quantile of scores of held-out normal images (labels, if given, must be all 0)."""

    strategy: Literal["quantile"] = "quantile"
    q: float = Field(0.99, gt=0.0, le=1.0)

    def compute(self, scores: np.ndarray, labels: np.ndarray | None = None) -> float:
        scores = np.asarray(scores, dtype=np.float64)
        if labels is not None:
            labels = np.asarray(labels)
            if labels.any():
                scores = scores[labels == 0]
        if scores.size == 0:
            raise MetricError("quantile threshold needs at least one normal calibration image")
        return float(np.quantile(scores, self.q))


class F1Threshold(_Strategy):
    """The threshold that maximises F1 on a labelled calibration set (midway between scores)."""

    strategy: Literal["f1"] = "f1"

    def compute(self, scores: np.ndarray, labels: np.ndarray | None = None) -> float:
        if labels is None:
            raise MetricError("the F1-optimal threshold needs labels for the calibration images")
        labels = np.asarray(labels).astype(bool)
        scores = np.asarray(scores, dtype=np.float64)
        if labels.all() or not labels.any():
            raise MetricError("the F1-optimal threshold needs both normal and anomalous calibration images")
        order = np.argsort(-scores, kind="mergesort")
        s, y = scores[order], labels[order]
        tp = np.cumsum(y)
        fp = np.cumsum(~y)
        last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # last index of each distinct score
        tp, fp = tp[last], fp[last]
        f1 = 2 * tp / (tp + fp + labels.sum())
        best = int(np.argmax(f1))
        # predict() says 1 for score > threshold: put the cut between the lowest score
        # called anomalous and the next lower distinct score.
        cut = s[last[best]]
        below = s[last[best] + 1] if last[best] + 1 < s.size else None
        return float((cut + below) / 2.0) if below is not None else float(np.nextafter(cut, -np.inf))


ThresholdStrategy = Annotated[
    FixedThreshold | QuantileThreshold | F1Threshold, Field(discriminator="strategy")
]
_adapter: TypeAdapter[Any] = TypeAdapter(ThresholdStrategy)


def make_strategy(spec: Any) -> _Strategy:
    """Build a strategy from a strategy object, a float (fixed), a name, or a dict."""
    if isinstance(spec, _Strategy):
        return spec
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return FixedThreshold(value=float(spec))
    if isinstance(spec, str):
        spec = {"strategy": spec}
    return _adapter.validate_python(spec)
