"""Threshold strategies: how a detector turns scores into 0/1 labels.

Thresholds are fitted on held-out normal images or a labelled calibration set the
caller provides, never on the test images of a benchmark.
"""

from __future__ import annotations

import math
import typing
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from pyimgano.errors import InvalidParams, MetricError


class _Strategy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def compute(self, scores: np.ndarray, labels: np.ndarray | None = None) -> float:  # pragma: no cover
        raise NotImplementedError


class FixedThreshold(_Strategy):
    """A user-given value."""

    strategy: Literal["fixed"] = "fixed"
    value: float = Field(allow_inf_nan=False)

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


def strategy_names() -> list[str]:
    """The ``strategy`` names :func:`make_strategy` accepts."""
    members = typing.get_args(typing.get_args(ThresholdStrategy)[0])
    return [member.model_fields["strategy"].default for member in members]


def make_strategy(spec: Any) -> _Strategy:
    """Build a strategy from a strategy object, a float (fixed), a name, or a dict.

    Anything else, an unknown name or a bad field is :class:`InvalidParams`, in one line.
    """
    if isinstance(spec, _Strategy):
        return spec
    given = spec
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        spec = {"strategy": "fixed", "value": float(spec)}
    if isinstance(spec, str):
        spec = {"strategy": spec}
    choices = ", ".join(strategy_names())
    if not isinstance(spec, dict):
        raise InvalidParams(f"threshold strategy {_shown(given)}: expected a name ({choices}), a number "
                            "(a fixed threshold) or a dict with a 'strategy' key")
    try:
        return _adapter.validate_python(spec)
    except ValidationError as exc:
        raise InvalidParams(f"threshold strategy {_shown(given)}: {_strategy_problems(exc, choices)}") from None


def _shown(spec: Any) -> str:
    text = repr(spec)
    return text if len(text) <= 80 else text[:77] + "..."


def _strategy_problems(exc: ValidationError, choices: str) -> str:
    problems = []
    for err in exc.errors():
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            problems.append(f"unknown strategy; choose one of {choices}")
            continue
        where = ".".join(str(p) for p in err["loc"][1:] or err["loc"])  # the first item is the strategy tag
        problems.append(f"{where}: {err['msg']}" if where else err["msg"])
    return "; ".join(problems)


def finite_threshold(value: Any, source: str = "threshold") -> float:
    """``value`` as a float; :class:`InvalidParams` naming ``source`` unless it is a finite number."""
    try:
        number = float(value) if not isinstance(value, (str, bytes)) else None
    except (TypeError, ValueError):
        number = None
    if number is None:
        raise InvalidParams(f"{source} must be a number, got {_shown(value)}")
    if isinstance(value, bool) or not math.isfinite(number):
        raise InvalidParams(f"{source} must be a finite number, got {_shown(value)}")
    return number
