"""The metrics a benchmark computes, read from the registered :class:`~pyimgano.MetricSpec` s.

Nothing here names a metric: every metric a plugin registers through
``pyimgano_register_metrics`` is resolved to a :class:`BenchMetric` (its results.json key,
column title, level, default parameters) and :func:`compute_metrics` calls each one that
applies: image metrics always, pixel metrics when there are anomaly maps and masks.

Keys: the core's own metrics keep their bare names (``image_auroc``, ``aupro``...), so
result folders written before metrics were plugins still read; a plugin's metric is keyed
by its qualified name (``example:recall_at_zero_fpr``), which no other plugin can take.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pyimgano.errors import ComponentNotFound, ConfigError, InvalidParams, MetricError, NameConflict
from pyimgano.plugins import BUILTIN_PLUGIN, get_registry
from pyimgano.specs import MetricSpec


def metric_key(qualified: str) -> str:
    """The results.json key of a metric: bare for the core's metrics, ``plugin:name`` otherwise."""
    plugin, _, name = qualified.partition(":")
    return name if plugin == BUILTIN_PLUGIN else qualified


@dataclass(frozen=True)
class MetricColumn:
    """What a table shows of one results.json metric key."""

    key: str
    title: str
    summary: str = ""
    level: str | None = None
    headline: bool = False


@dataclass(frozen=True)
class BenchMetric:
    """One registered metric as the benchmark uses it."""

    qualified: str
    spec: MetricSpec
    params: dict[str, Any]
    title: str

    @property
    def key(self) -> str:
        return metric_key(self.qualified)

    @property
    def level(self) -> str:
        return self.spec.level

    @property
    def column(self) -> MetricColumn:
        return MetricColumn(self.key, self.title, self.spec.summary, self.level, self.spec.headline)

    def compute(self, truth: Any, predictions: Any) -> tuple[float, float | None]:
        """(value, threshold or None); the threshold only where the spec says it returns one."""
        result = get_registry().load_factory("metric", self.qualified)(truth, predictions, **self.params)
        threshold = None
        if self.spec.returns_threshold:
            if not (isinstance(result, tuple) and len(result) == 2):
                raise MetricError(f"returned {type(result).__name__} {result!r:.60}; its spec declares "
                                  "returns_threshold=True, so a (value, threshold) pair was expected")
            result, threshold = result
        if isinstance(result, bool) or not isinstance(result, numbers.Real):
            raise MetricError(f"returned {type(result).__name__} {result!r:.60}; expected a number"
                              + ("" if self.spec.returns_threshold else
                                 " (a metric that returns (value, threshold) declares returns_threshold=True)"))
        return float(result), (None if threshold is None else float(threshold))


def registered_metrics() -> list[BenchMetric]:
    """Every registered metric the benchmark can call: image level first, then pixel
    level, each in registration order (the core's first)."""
    registry = get_registry()
    out = []
    for qualified, (spec, _) in registry.components("metric").items():
        try:
            params = registry.validate_params("metric", qualified, {})
        except InvalidParams:
            continue  # needs parameters without defaults: only a caller that gives them can use it
        out.append(BenchMetric(qualified, spec, params.model_dump(mode="json"), spec.display_title(params)))
    return sorted(out, key=lambda m: m.level != "image")


def resolve_metrics(names: Sequence[str] | None = None) -> list[BenchMetric]:
    """The metrics of a benchmark: every registered one (``None``) or the named ones, in the
    order given. A name is a key (``image_auroc``), a qualified name or a unique bare name;
    anything else is a one-line :class:`ConfigError` that lists the known metrics."""
    available = registered_metrics()
    if names is None:
        return available
    if not names:
        raise ConfigError(f"metrics is empty; name at least one of: {', '.join(m.key for m in available)}")
    by_qualified = {m.qualified: m for m in available}
    chosen: dict[str, BenchMetric] = {}
    registry = get_registry()
    for name in names:
        try:
            spec, record = registry.resolve("metric", name)
        except (ComponentNotFound, NameConflict) as exc:
            known = ", ".join(m.key for m in available)
            why = "" if isinstance(exc, ComponentNotFound) else f" ({exc})"
            raise ConfigError(f"unknown metric {name!r}{why}; known metrics: {known}") from None
        qualified = f"{record.name}:{spec.name}"
        if qualified not in by_qualified:
            raise ConfigError(f"metric {qualified!r} has parameters without defaults, which the benchmark "
                              f"cannot give; known metrics: {', '.join(m.key for m in available)}")
        chosen.setdefault(qualified, by_qualified[qualified])
    return list(chosen.values())


def describe_keys(keys: Sequence[str]) -> list[MetricColumn]:
    """The table columns of result keys; a key whose metric is no longer registered (an old
    folder, a removed plugin) is its own title."""
    known = {m.key: m.column for m in registered_metrics()}
    return [known.get(k, MetricColumn(k, k)) for k in keys]


def _stack(arrays: list[Any]) -> Any:
    """Equal-shape arrays as one array (float32 maps, the detectors' checked maps, written map by
    map into one allocation: :func:`pyimgano.contracts.stack_maps`), others as given; an array
    stays the same object."""
    import numpy as np

    from pyimgano.contracts import stack_maps

    if isinstance(arrays, np.ndarray):
        return arrays
    if not arrays or len({np.shape(a) for a in arrays}) != 1:
        return arrays
    if all(np.ndim(a) == 2 and np.asarray(a).dtype == np.float32 for a in arrays):
        return stack_maps(arrays)
    return np.stack(arrays)


def pixel_inputs(masks: list[Any] | None, maps: list[Any] | None) -> tuple[Any, Any]:
    """The (masks, maps) pair the pixel metrics take, equal-shape sets as one array each (None,
    None without both); the same pair given to :func:`compute_metrics` and the report's curves
    splits and sorts the pixels once (:func:`pyimgano.benchmark.deployed.metrics_and_curves`)."""
    if masks is None or maps is None:
        return None, None
    return _stack(masks), _stack(maps)


def compute_metrics(
    labels: Any,
    scores: Any,
    masks: list[Any] | None,
    maps: list[Any] | None,
    metrics: Sequence[BenchMetric] | None = None,
    notes: list[str] | None = None,
) -> tuple[dict[str, float | None], dict[str, float]]:
    """Every metric of ``metrics`` (default: every registered one) that applies.

    Image metrics take ``labels`` and ``scores``; pixel metrics take ``masks`` and ``maps``
    and are ``None`` when either is missing. A metric that is undefined for the data (one
    class only), returns NaN or fails is ``None`` with a note naming it, and the others are
    still computed. Returns ({key: value}, {key: threshold} of the metrics that return one).
    """
    from pyimgano.metrics._inputs import shared_split

    metrics = resolve_metrics() if metrics is None else metrics
    notes = notes if notes is not None else []
    values: dict[str, float | None] = {m.key: None for m in metrics}
    thresholds: dict[str, float] = {}
    pixel_masks, pixel_maps = pixel_inputs(masks, maps)
    with shared_split():  # the core's pixel metrics split and sort the pixels once between them
        for metric in metrics:
            if metric.level == "image":
                truth, predictions = labels, scores
            elif pixel_maps is not None:
                truth, predictions = pixel_masks, pixel_maps
            else:
                continue
            try:
                value, threshold = metric.compute(truth, predictions)
            except MetricError as exc:
                notes.append(f"{metric.key}: {exc}")
                continue
            except Exception as exc:  # noqa: BLE001 - one broken metric must not lose the run's other results
                notes.append(f"{metric.key}: {type(exc).__name__}: {exc}")
                continue
            if threshold is not None:
                thresholds[metric.key] = threshold
            values[metric.key] = value if math.isfinite(value) else None
    return values, thresholds
