"""Threshold strategies: how scores become 0/1 labels and maps become defect masks.

The same strategies serve both levels: an *image* threshold cuts image scores, a *pixel*
threshold cuts (post-processed) anomaly maps. Thresholds are fitted on held-out normal
images or a labelled calibration set the caller provides, never on the test images of a
benchmark.

One parser, :func:`make_strategy`, reads every form the CLI, ``bench.toml`` and Python
accept: a strategy object, a float (fixed), a dict (``{"strategy": "quantile", "q": 0.99}``)
or a spec string: ``fpr:ALPHA`` (``fpr:ALPHA:strict``), ``quantile`` / ``quantile:Q``,
``fixed:V``, ``f1``. The statistics of ``fpr`` live in :mod:`pyimgano.calibration`.
"""

from __future__ import annotations

import math
import typing
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from pyimgano.errors import InvalidParams, MetricError

DEFAULT_IMAGE_QUANTILE = 0.99  # what a bare ``quantile`` means
# the image threshold's default: reject at most this share of good parts (a conformal rank
# of the normal calibration scores, exact from 19 scores on)
DEFAULT_FPR = 0.05
# the pixel threshold's default: this quantile of the pixels of the normal calibration maps
# (out-of-fold maps where the detector gives them; higher quantiles collapse on capsules)
DEFAULT_PIXEL_QUANTILE = 0.999
# the pipeline's default strategies, chosen from the measurements in docs/pipeline.md
# ("Choosing the defaults"): written here once; the CLI, bench.toml and Pipeline read these
DEFAULT_IMAGE_THRESHOLD = f"fpr:{DEFAULT_FPR}"
DEFAULT_PIXEL_THRESHOLD = f"quantile:{DEFAULT_PIXEL_QUANTILE}"
SPEC_FORMS = ("quantile:Q (0 < Q <= 1), fpr:ALPHA (a false-reject rate, 0 < ALPHA < 1; fpr:ALPHA:strict refuses "
              "too few calibration scores), fixed:V (a finite number) or f1")


class _Strategy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: whether ``compute`` needs labels with both classes (anomalous examples)
    needs_labels: ClassVar[bool] = False

    def compute(self, scores: np.ndarray, labels: np.ndarray | None = None) -> float:  # pragma: no cover
        raise NotImplementedError

    def spec(self) -> str:
        """The spec string that parses back to this strategy, e.g. ``quantile:0.99``."""
        raise NotImplementedError  # pragma: no cover

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class FixedThreshold(_Strategy):
    """A user-given value."""

    strategy: Literal["fixed"] = "fixed"
    value: float

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number, got {value}")
        return value

    def compute(self, scores: np.ndarray, labels: np.ndarray | None = None) -> float:
        return float(self.value)

    def spec(self) -> str:
        return f"fixed:{self.value!r}"


class QuantileThreshold(_Strategy):
    """The q-quantile of held-out normal scores (or pixels); labels, if given, pick the normal ones."""

    strategy: Literal["quantile"] = "quantile"
    q: float = Field(DEFAULT_IMAGE_QUANTILE, gt=0.0, le=1.0)

    def compute(self, scores: np.ndarray, labels: np.ndarray | None = None, *, scratch: bool = False) -> float:
        """``scratch=True``: ``scores`` is a float64 vector the caller no longer needs, reordered
        in place instead of copied (the pixels of out-of-fold maps are tens of millions)."""
        fresh = scratch and labels is None and isinstance(scores, np.ndarray) and scores.dtype == np.float64
        scores = scores.ravel() if fresh else _normal(scores, labels)
        if scores.size == 0:
            raise MetricError("quantile threshold needs at least one normal calibration image")
        return float(np.quantile(scores, self.q, overwrite_input=fresh))

    def spec(self) -> str:
        return f"quantile:{self.q!r}"


class FprThreshold(_Strategy):
    """A false-reject rate: the conformal order statistic of normal calibration scores that
    keeps the share of good parts above the threshold at or below ``alpha``
    (:func:`pyimgano.calibration.fpr_threshold`; ``small_n`` says what happens when there
    are too few scores for ``alpha``: ``tail`` extrapolates and says so, ``strict`` refuses)."""

    strategy: Literal["fpr"] = "fpr"
    alpha: float = Field(gt=0.0, lt=1.0)
    small_n: Literal["tail", "strict"] = "tail"

    def fit(self, scores: np.ndarray, labels: np.ndarray | None = None) -> Any:
        """The :class:`pyimgano.calibration.FprFit` (threshold, n, method, note)."""
        from pyimgano.calibration import fpr_threshold

        return fpr_threshold(_normal(scores, labels), self.alpha, self.small_n)

    def compute(self, scores: np.ndarray, labels: np.ndarray | None = None) -> float:
        return self.fit(scores, labels).threshold

    def spec(self) -> str:
        return f"fpr:{self.alpha!r}" + (":strict" if self.small_n == "strict" else "")


class F1Threshold(_Strategy):
    """The threshold that maximises F1 on a labelled calibration set (midway between scores)."""

    strategy: Literal["f1"] = "f1"
    needs_labels: ClassVar[bool] = True

    def compute(self, scores: np.ndarray, labels: np.ndarray | None = None) -> float:
        if labels is None:
            raise MetricError("the F1-optimal threshold needs labels for the calibration images")
        labels = np.asarray(labels).astype(bool).ravel()
        scores = np.asarray(scores, dtype=np.float64).ravel()
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

    def spec(self) -> str:
        return "f1"


def _normal(scores: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
    """The scores of the normal images (labels, if given and not all 0, pick them)."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels is not None:
        labels = np.asarray(labels).ravel()
        if labels.any():
            scores = scores[labels == 0]
    return scores


ThresholdStrategy = Annotated[
    FixedThreshold | QuantileThreshold | F1Threshold | FprThreshold, Field(discriminator="strategy")
]
_adapter: TypeAdapter[Any] = TypeAdapter(ThresholdStrategy)


def strategy_names() -> list[str]:
    """The ``strategy`` names :func:`make_strategy` accepts."""
    members = typing.get_args(typing.get_args(ThresholdStrategy)[0])
    return [member.model_fields["strategy"].default for member in members]


def _from_string(text: str, what: str) -> dict[str, Any]:
    name, sep, arg = text.strip().partition(":")
    name, arg = name.strip().lower(), arg.strip()
    if name not in strategy_names():
        raise InvalidParams(f"{what} {text!r} does not parse; expected {SPEC_FORMS}")
    if name == "fpr":
        return _fpr_from_string(text, arg, what)
    if name == "f1":
        if sep:
            raise InvalidParams(f"{what} {text!r}: f1 takes no value; expected {SPEC_FORMS}")
        return {"strategy": "f1"}
    if not sep:
        if name == "fixed":
            raise InvalidParams(f"{what} {text!r}: fixed needs a value, e.g. fixed:0.5")
        return {"strategy": "quantile"}
    try:
        number = float(arg)
    except ValueError:
        raise InvalidParams(f"{what} {text!r}: {arg!r} is not a number; expected {SPEC_FORMS}") from None
    return {"strategy": name, ("q" if name == "quantile" else "value"): number}


def _fpr_from_string(text: str, arg: str, what: str) -> dict[str, Any]:
    value, _, rule = arg.partition(":")
    rule = rule.strip().lower()
    if not value.strip():
        raise InvalidParams(f"{what} {text!r}: fpr needs a target rate, e.g. fpr:0.01")
    if rule and rule != "strict":
        raise InvalidParams(f"{what} {text!r}: {rule!r} is not a rule for too few scores; fpr:ALPHA or "
                            "fpr:ALPHA:strict")
    try:
        alpha = float(value)
    except ValueError:
        raise InvalidParams(f"{what} {text!r}: {value.strip()!r} is not a number; expected {SPEC_FORMS}") from None
    return {"strategy": "fpr", "alpha": alpha, **({"small_n": "strict"} if rule else {})}


def make_strategy(spec: Any, what: str = "threshold") -> _Strategy:
    """Build a strategy from a strategy object, a float (fixed), a dict or a spec string.

    Anything else, or a value out of range (a quantile outside (0, 1], a non-finite fixed
    value), is one :class:`~pyimgano.errors.InvalidParams` line naming ``what``, the value
    and the accepted forms.
    """
    if isinstance(spec, _Strategy):
        return spec
    original = spec
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        spec = {"strategy": "fixed", "value": float(spec)}
    elif isinstance(spec, str):
        spec = _from_string(spec, what)
    elif isinstance(spec, dict):
        spec = {k: v for k, v in spec.items() if k != "value" or spec.get("strategy") == "fixed"}
    else:
        raise InvalidParams(f"{what} {_shown(original)}: expected {SPEC_FORMS}, a dict such as "
                            "{'strategy': 'quantile', 'q': 0.99}, or a number")
    try:
        return _adapter.validate_python(spec)
    except ValidationError as exc:
        problems = _strategy_problems(exc)
        hint = "" if "unknown strategy" in problems else f"; expected {SPEC_FORMS}"
        raise InvalidParams(f"{what} {_shown(original)}: {problems}{hint}") from None


def spec_of(strategy: _Strategy | None) -> str | None:
    """The spec string of a strategy (``None`` stays ``None``)."""
    return None if strategy is None else strategy.spec()


def _shown(spec: Any) -> str:
    text = repr(spec)
    return text if len(text) <= 80 else text[:77] + "..."


def _strategy_problems(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            problems.append(f"unknown strategy; choose one of {', '.join(strategy_names())}")
            continue
        where = ".".join(str(p) for p in err["loc"][1:] or err["loc"])  # the first item is the strategy tag
        message = err["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
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
