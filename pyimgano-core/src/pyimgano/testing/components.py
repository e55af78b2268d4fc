"""Conformance checks for data set, metric and post-processor plugins.

Like the detector checks, each ``check_*`` function takes a registered name (or a target
built by :func:`dataset_target`, :func:`metric_target`, :func:`postprocessor_target`) and
raises :class:`CheckFailed` naming itself; :func:`check_dataset`, :func:`check_metric` and
:func:`check_postprocessor` run them all and return one result per check.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pyimgano.contracts import DatasetInfo, DatasetSample
from pyimgano.errors import DatasetError
from pyimgano.testing._core import Check, CheckFailed, CheckResult, always, describe, run_checks, selector, wrap_check
from pyimgano.testing.data import blob_mask

__all__ = [
    "DATASET_CHECKS",
    "METRIC_CHECKS",
    "POSTPROCESSOR_CHECKS",
    "check_dataset",
    "check_metric",
    "check_postprocessor",
    "dataset_target",
    "metric_target",
    "postprocessor_target",
]


def _registrar(checks: list[Check], prepare: Callable[[Any], Any]):
    def check(applies: Callable[[Any], str | None] = always):
        def register(func: Callable[..., None]) -> Callable[..., None]:
            wrapped = wrap_check(func.__name__, func, prepare)
            checks.append(Check(func.__name__, wrapped, applies))
            return wrapped

        return register

    return check


def _resolve(kind: str, name: str) -> tuple[Any, str]:
    from pyimgano.plugins import get_registry

    spec, record = get_registry().resolve(kind, name)
    return spec, f"{record.name}:{spec.name}"


def _validated(kind: str, name: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    from pyimgano.plugins import get_registry

    model = get_registry().validate_params(kind, name, dict(params or {}))
    return {key: getattr(model, key) for key in type(model).model_fields}


# == data sets ===========================================================================
@dataclass
class DatasetTarget:
    """A data set the kit checks: its spec, where it lives, and the opened object (cached)."""

    label: str
    spec: Any
    root: Path | None = None
    category: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    max_images: int = 4
    _opened: Any = field(default=None, repr=False)

    def open(self) -> Any:
        if self._opened is None:
            from pyimgano.factories import load_dataset

            try:
                self._opened = ("ok", load_dataset(self.label, root=self.root, category=self.category, **self.options))
            except Exception as exc:  # noqa: BLE001
                self._opened = ("error", exc)
        status, value = self._opened
        if status == "error":
            raise DatasetError(f"load_dataset({self.label!r}, root={self.root}, category={self.category!r}) "
                               f"failed: {describe(value)}") from value
        return value

    def __str__(self) -> str:
        return self.label


def dataset_target(
    dataset: Any, *, root: Any = None, category: str | None = None, options: Mapping[str, Any] | None = None,
    max_images: int = 4,
) -> DatasetTarget:
    """Describe a registered data set for the kit (``category`` defaults to the spec's first)."""
    if isinstance(dataset, DatasetTarget):
        return dataset
    spec, qualified = _resolve("dataset", dataset)
    if category is None and spec.categories:
        category = spec.categories[0]
    root = None if root is None else Path(root)
    return DatasetTarget(qualified, spec, root, category, dict(options or {}), max_images)


def _needs_root(target: DatasetTarget) -> str | None:
    if target.spec.needs_root and target.root is None:
        return "needs a root folder: pass root= (pyimgano check-plugin --root DIR)"
    return None


DATASET_CHECKS: list[Check] = []
_dataset_check = _registrar(DATASET_CHECKS, dataset_target)


def _info(target: DatasetTarget) -> DatasetInfo:
    info = target.open().info
    return info if isinstance(info, DatasetInfo) else DatasetInfo.model_validate(info, from_attributes=True)


def _category(target: DatasetTarget) -> str:
    return target.category or _info(target).categories[0]


@_dataset_check(_needs_root)
def check_dataset_opens(target: DatasetTarget) -> None:
    """``load_dataset`` returns an object with ``.info``, ``.train``, ``.test`` and ``.load``."""
    data = target.open()
    missing = [attr for attr in ("info", "train", "test", "load") if not hasattr(data, attr)]
    if missing:
        raise CheckFailed("check_dataset_opens", f"the data set object lacks {missing}")


@_dataset_check(_needs_root)
def check_dataset_info_contract(target: DatasetTarget) -> None:
    """``.info`` is a valid ``DatasetInfo`` that lists the opened category with train/test counts."""
    info = _info(target)
    if not info.categories:
        raise CheckFailed("check_dataset_info_contract", "info.categories is empty")
    category = _category(target)
    if category not in info.categories:
        raise CheckFailed("check_dataset_info_contract",
                          f"category {category!r} is not in info.categories {info.categories}")
    splits = info.counts.get(category, {})
    if not {"train", "test"} <= set(splits):
        raise CheckFailed("check_dataset_info_contract", f"info.counts[{category!r}] has splits {sorted(splits)}; "
                          "expected 'train' and 'test'")


def _samples(target: DatasetTarget, split: str) -> list[DatasetSample]:
    out = []
    for i, sample in enumerate(getattr(target.open(), split)):
        try:
            if not isinstance(sample, DatasetSample):
                sample = DatasetSample.model_validate(sample, from_attributes=True)
        except Exception as exc:
            raise CheckFailed("check_dataset_samples_satisfy_contract",
                              f"{split}[{i}] is not a valid DatasetSample: {exc}") from exc
        out.append(sample)
    return out


@_dataset_check(_needs_root)
def check_dataset_samples_satisfy_contract(target: DatasetTarget) -> None:
    """Samples are ``DatasetSample``s of this category; train is all normal; files exist;
    defective test images have masks when the data set has masks."""
    name = "check_dataset_samples_satisfy_contract"
    info, category = _info(target), _category(target)
    train, test = _samples(target, "train"), _samples(target, "test")
    if not train:
        raise CheckFailed(name, "the train split is empty")
    if not test:
        raise CheckFailed(name, "the test split is empty")
    if any(s.label != 0 for s in train):
        bad = next(s for s in train if s.label != 0)
        raise CheckFailed(name, f"train split holds a defective image {bad.image_path}; train must be normal only")
    for split, samples in (("train", train), ("test", test)):
        for sample in samples:
            if sample.category != category:
                raise CheckFailed(name, f"{split} sample {sample.image_path} has category {sample.category!r}; "
                                  f"expected {category!r}")
            if not Path(sample.image_path).is_file():
                raise CheckFailed(name, f"{split} image {sample.image_path} does not exist")
            if sample.mask_path is not None and not Path(sample.mask_path).is_file():
                raise CheckFailed(name, f"{split} mask {sample.mask_path} does not exist")
            if split == "test" and sample.label == 1 and info.has_masks and sample.mask_path is None:
                raise CheckFailed(name, f"defective test image {sample.image_path} has no mask_path, "
                                  "but info.has_masks is True")


@_dataset_check(_needs_root)
def check_dataset_counts_match_info(target: DatasetTarget) -> None:
    """``info.counts`` equals the numbers of normal and defective samples of each split."""
    info, category = _info(target), _category(target)
    data = target.open()
    for split in ("train", "test"):
        labels = [int(s.label) for s in getattr(data, split)]
        actual = {"good": labels.count(0), "defect": labels.count(1)}
        declared = info.counts.get(category, {}).get(split)
        if declared is None:
            raise CheckFailed("check_dataset_counts_match_info", f"info.counts has no {category}/{split}")
        expected = {"good": declared.good, "defect": declared.defect}
        if actual != expected:
            raise CheckFailed("check_dataset_counts_match_info",
                              f"{category}/{split}: info.counts says {expected}, the samples are {actual}")


@_dataset_check(_needs_root)
def check_dataset_masks_align_with_images(target: DatasetTarget) -> None:
    """``load(sample)`` gives an HxWx3 uint8 image and, for defects, a non-empty HxW mask of its size."""
    name = "check_dataset_masks_align_with_images"
    data = target.open()
    test = list(data.test)
    picked = [s for s in test if s.label == 1][: target.max_images]
    picked += [s for s in test if s.label == 0][:1] + list(data.train)[:1]
    for sample in picked:
        image, mask = data.load(sample)
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise CheckFailed(name, f"load({sample.image_path}) gave an image of shape {image.shape} and dtype "
                              f"{image.dtype}; expected HxWx3 uint8")
        if sample.label == 0:
            if mask is not None and np.asarray(mask).any():
                raise CheckFailed(name, f"normal image {sample.image_path} has a non-empty mask")
            continue
        if mask is None:
            if sample.mask_path is not None:
                raise CheckFailed(name, f"load({sample.image_path}) gave no mask though mask_path is "
                                  f"{sample.mask_path}")
            continue
        mask = np.asarray(mask)
        if mask.shape != image.shape[:2]:
            raise CheckFailed(name, f"mask of {sample.image_path} has shape {mask.shape}; the image is "
                              f"{image.shape[:2]}")
        if not mask.any():
            raise CheckFailed(name, f"the mask of defective image {sample.image_path} is empty")
        if mask.dtype != bool and not np.isin(np.unique(mask), (0, 1)).all():
            raise CheckFailed(name, f"mask of {sample.image_path} has values {np.unique(mask)[:5].tolist()}; "
                              "expected bool or 0/1")


def check_dataset(
    dataset: Any, *, root: Any = None, category: str | None = None, options: Mapping[str, Any] | None = None,
    known_failures: Mapping[str, str] | None = None, checks: Iterable[str] | None = None,
) -> list[CheckResult]:
    """Run every data set check on a registered data set (a ``root`` is needed for most)."""
    target = dataset_target(dataset, root=root, category=category, options=options)
    return run_checks(DATASET_CHECKS, target, target.label, known_failures, selector(checks))


# == metrics =============================================================================
@dataclass
class MetricTarget:
    """A metric the kit checks; ``load`` returns the function (imported on first use)."""

    label: str
    load: Callable[[], Callable[..., Any]]
    level: str
    higher_is_better: bool = True
    params: dict[str, Any] = field(default_factory=dict)
    value_range: tuple[float, float] | None = (0.0, 1.0)
    returns_threshold: bool = False

    def __str__(self) -> str:
        return self.label

    @property
    def func(self) -> Callable[..., Any]:
        return self.load()

    def __call__(self, truth: Any, predictions: Any) -> float:
        value = self.func(truth, predictions, **self.params)
        shown = f"{type(value).__name__} {value!r:.80}"
        if self.returns_threshold:
            if not (isinstance(value, tuple) and len(value) == 2 and all(_is_number(v) for v in value)):
                raise CheckFailed("check_metric_returns_number", f"returned {shown}; it declares "
                                  "returns_threshold=True, so a (value, threshold) pair of numbers was expected")
            return float(value[0])
        if not _is_number(value):
            hint = (" (a metric that returns (value, threshold) declares returns_threshold=True in its MetricSpec)"
                    if isinstance(value, tuple) else "")
            raise CheckFailed("check_metric_returns_number", f"returned {shown}; expected a float{hint}")
        return float(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


_FROM_SPEC: Any = object()


def metric_target(
    metric: Any, *, params: Mapping[str, Any] | None = None, value_range: Any = _FROM_SPEC,
    level: str | None = None, higher_is_better: bool = True, returns_threshold: bool = False,
) -> MetricTarget:
    """Describe a metric: a registered name (level, direction, range and whether it returns
    (value, threshold) come from its spec; ``value_range`` overrides the spec's), or a
    function with ``level`` ('image'/'pixel')."""
    if isinstance(metric, MetricTarget):
        return metric
    if isinstance(metric, str):
        from pyimgano.plugins import get_registry

        spec, qualified = _resolve("metric", metric)
        return MetricTarget(qualified, lambda: get_registry().load_factory("metric", qualified), spec.level,
                            spec.higher_is_better, _validated("metric", qualified, params),
                            spec.value_range if value_range is _FROM_SPEC else value_range, spec.returns_threshold)
    if level not in ("image", "pixel"):
        raise ValueError("a metric function needs level='image' or level='pixel'")
    return MetricTarget(getattr(metric, "__name__", repr(metric)), lambda: metric, level, higher_is_better,
                        dict(params or {}), (0.0, 1.0) if value_range is _FROM_SPEC else value_range,
                        returns_threshold)


def _metric_inputs(level: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ground truth, perfect predictions, and inverted predictions for a level."""
    rng = np.random.default_rng(0)
    if level == "image":
        truth = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
        perfect = truth + rng.uniform(0.0, 0.5, truth.size)
        return truth, perfect, -perfect
    truth = np.stack([blob_mask(seed, 32, 40) for seed in range(3)] + [np.zeros((32, 40), bool)])
    perfect = (truth + rng.uniform(0.0, 0.3, truth.shape)).astype(np.float32)
    return truth, perfect, (1.0 - perfect).astype(np.float32)


METRIC_CHECKS: list[Check] = []
_metric_check = _registrar(METRIC_CHECKS, metric_target)


@_metric_check()
def check_metric_returns_number(target: MetricTarget) -> None:
    """The metric returns a finite real number (or the (value, threshold) pair its spec
    declares), the same on every call."""
    truth, perfect, _ = _metric_inputs(target.level)
    first, second = target(truth, perfect), target(truth, perfect)
    if not np.isfinite(first):
        raise CheckFailed("check_metric_returns_number", f"returned {first} on valid input; expected a finite value")
    if first != second:
        raise CheckFailed("check_metric_returns_number", f"two calls on the same input returned {first} and {second}")


@_metric_check(lambda t: None if t.value_range is not None else "value_range is None")
def check_metric_value_range(target: MetricTarget) -> None:
    """Values lie in the declared range ([0, 1] by default) for good and bad predictions."""
    low, high = target.value_range
    truth, perfect, inverted = _metric_inputs(target.level)
    for what, predictions in (("perfect", perfect), ("inverted", inverted)):
        value = target(truth, predictions)
        if not low <= value <= high:
            raise CheckFailed("check_metric_value_range", f"value {value} for {what} predictions is outside "
                              f"[{low}, {high}]")


@_metric_check()
def check_metric_orders_predictions(target: MetricTarget) -> None:
    """Perfect predictions score better than inverted ones (per ``higher_is_better``)."""
    truth, perfect, inverted = _metric_inputs(target.level)
    good, bad = target(truth, perfect), target(truth, inverted)
    if (good <= bad) if target.higher_is_better else (good >= bad):
        better = "higher" if target.higher_is_better else "lower"
        raise CheckFailed("check_metric_orders_predictions", f"perfect predictions give {good}, inverted ones {bad}; "
                          f"expected the perfect value to be {better} (higher_is_better={target.higher_is_better})")


@_metric_check()
def check_metric_rejects_mismatched_inputs(target: MetricTarget) -> None:
    """Ground truth and predictions of different lengths raise a clear ``ValueError``."""
    truth, perfect, _ = _metric_inputs(target.level)
    try:
        value = target.func(truth[:-1], perfect, **target.params)
    except ValueError as exc:
        if str(exc).strip():
            return
        raise CheckFailed("check_metric_rejects_mismatched_inputs", "raised ValueError with an empty message") from exc
    except Exception as exc:
        raise CheckFailed("check_metric_rejects_mismatched_inputs", f"raised {type(exc).__name__}: {exc!s:.200}; "
                          "expected a ValueError (pyimgano.MetricError) naming the mismatch") from exc
    raise CheckFailed("check_metric_rejects_mismatched_inputs", f"returned {value!r:.40} for {len(truth) - 1} "
                      f"ground-truth items and {len(perfect)} predictions; expected a ValueError")


def check_metric(
    metric: Any, *, params: Mapping[str, Any] | None = None, value_range: Any = _FROM_SPEC,
    known_failures: Mapping[str, str] | None = None, checks: Iterable[str] | None = None, **kwargs: Any,
) -> list[CheckResult]:
    """Run every metric check; ``value_range`` (default: the spec's, else [0, 1]; None: no
    bounded range) overrides a registered metric's declared range."""
    target = metric_target(metric, params=params, value_range=value_range, **kwargs)
    return run_checks(METRIC_CHECKS, target, target.label, known_failures, selector(checks))


# == post-processors =====================================================================
@dataclass
class PostprocessorTarget:
    label: str
    make: Callable[[], Any]
    fits_statistics: bool = False

    def __str__(self) -> str:
        return self.label

    def ready(self) -> Any:
        """A fresh step, fitted on normal-looking maps when it needs statistics."""
        step = self.make()
        if self.fits_statistics:
            step.fit(_maps(5, 32, 40, defect=False))
        return step


def postprocessor_target(step: Any, *, params: Mapping[str, Any] | None = None,
                         fits_statistics: bool = False) -> PostprocessorTarget:
    """Describe a post-processor: a registered name, or a factory returning a fresh step."""
    if isinstance(step, PostprocessorTarget):
        return step
    if isinstance(step, str):
        from pyimgano.factories import create_postprocessor

        spec, qualified = _resolve("postprocessor", step)
        kwargs = dict(params or {})
        _validated("postprocessor", qualified, kwargs)
        return PostprocessorTarget(qualified, lambda: create_postprocessor(qualified, **kwargs), spec.fits_statistics)
    kwargs = dict(params or {})
    return PostprocessorTarget(getattr(step, "__qualname__", repr(step)), lambda: step(**kwargs), fits_statistics)


def _maps(n: int, height: int, width: int, defect: bool = True, seed: int = 0) -> np.ndarray:
    """Maps in [0, 1]: low noisy background, a high blob on every map when ``defect``."""
    rng = np.random.default_rng(seed)
    maps = rng.uniform(0.05, 0.2, size=(n, height, width)).astype(np.float32)
    if defect:
        for i in range(n):
            maps[i][blob_mask(100 + i, height, width)] = 0.9
    return maps


def _apply(target: PostprocessorTarget, check: str, maps: np.ndarray) -> np.ndarray:
    out = target.ready()(maps.copy())
    if not isinstance(out, np.ndarray):
        raise CheckFailed(check, f"returned {type(out).__name__}; expected a numpy array")
    if out.shape != maps.shape:
        raise CheckFailed(check, f"returned shape {out.shape} for maps of shape {maps.shape}; expected the same shape")
    if not (out.dtype == bool or np.issubdtype(out.dtype, np.number)):
        raise CheckFailed(check, f"returned dtype {out.dtype}; expected a float (or bool/0-1 mask) array")
    if np.issubdtype(out.dtype, np.floating) and not np.isfinite(out).all():
        raise CheckFailed(check, f"returned {int((~np.isfinite(out)).sum())} non-finite values")
    return out


POSTPROCESSOR_CHECKS: list[Check] = []
_postprocessor_check = _registrar(POSTPROCESSOR_CHECKS, postprocessor_target)


@_postprocessor_check()
def check_postprocessor_returns_maps(target: PostprocessorTarget) -> None:
    """Calling the step on N x H x W float32 maps returns finite maps of the same shape."""
    _apply(target, "check_postprocessor_returns_maps", _maps(3, 32, 40))


@_postprocessor_check()
def check_postprocessor_leaves_input_alone(target: PostprocessorTarget) -> None:
    """The step does not modify its input in place."""
    maps = _maps(3, 32, 40)
    before = maps.copy()
    target.ready()(maps)
    if not np.array_equal(maps, before):
        raise CheckFailed("check_postprocessor_leaves_input_alone", "the input maps were modified in place")


@_postprocessor_check()
def check_postprocessor_any_size(target: PostprocessorTarget) -> None:
    """Maps of another size, and a batch of one, keep their shape."""
    for shape in ((1, 25, 31), (2, 48, 36)):
        _apply(target, "check_postprocessor_any_size", _maps(*shape, seed=1))


@_postprocessor_check()
def check_postprocessor_keeps_defect_highest(target: PostprocessorTarget) -> None:
    """A large, bright defect region stays above the background after the step."""
    maps = _maps(3, 32, 40)
    out = _apply(target, "check_postprocessor_keeps_defect_highest", maps).astype(np.float64)
    for i in range(maps.shape[0]):
        inside = blob_mask(100 + i, 32, 40)
        if not out[i][inside].mean() > out[i][~inside].mean():
            raise CheckFailed("check_postprocessor_keeps_defect_highest", f"map {i}: mean inside the defect "
                              f"{out[i][inside].mean():.4g} is not above the background {out[i][~inside].mean():.4g}")


def check_postprocessor(
    step: Any, *, params: Mapping[str, Any] | None = None, known_failures: Mapping[str, str] | None = None,
    fits_statistics: bool = False, checks: Iterable[str] | None = None,
) -> list[CheckResult]:
    """Run every post-processor check on a registered step (or a factory)."""
    target = postprocessor_target(step, params=params, fits_statistics=fits_statistics)
    return run_checks(POSTPROCESSOR_CHECKS, target, target.label, known_failures, selector(checks))
