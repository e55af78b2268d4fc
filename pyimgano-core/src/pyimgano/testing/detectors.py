"""Conformance checks for detectors, and their two front ends.

Each ``check_*`` function takes a detector (a registered name such as ``"example:mad"``, a
factory returning a fresh detector, or a :class:`DetectorTarget`) and raises
:class:`CheckFailed` naming the check when the detector breaks the contract. Which checks
run depends on the detector's :class:`pyimgano.DetectorCapabilities`.

* :func:`check_detector` runs every check and returns one :class:`CheckResult` each;
* :func:`parametrize_with_checks` gives pytest one test per (detector, check), so
  ``pytest -k check_save_load_round_trip`` selects one check.
"""

from __future__ import annotations

import enum
import inspect
import json
import sys
import tempfile
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ValidationError

from pyimgano.contracts import validate_labels, validate_maps, validate_scores
from pyimgano.errors import InvalidParams, NotFittedError, PyimganoError
from pyimgano.seeding import seed_everything
from pyimgano.specs import DetectorCapabilities
from pyimgano.testing._core import (
    Check,
    CheckFailed,
    CheckResult,
    SetupFailed,
    always,
    describe,
    pytest_params,
    run_checks,
    selector,
    wrap_check,
)
from pyimgano.testing.data import CheckImages, defective, make_check_images, texture, to_grayscale, to_rgba

SEED = 0
SEED_PARAMS = ("seed", "random_state")
# Minimum image-level AUROC (defective vs normal test images) and mean pixel AUROC inside
# defective images; the generated defect is a saturated disk on a mid-grey texture.
MIN_IMAGE_AUROC = 0.75
MIN_PIXEL_AUROC = 0.75


# -- the detector under test ------------------------------------------------------------
@dataclass
class DetectorTarget:
    """A detector the kit checks: how to build a fresh one, and what it declares.

    The first fit on the kit's images is cached, so checks that only score share it.
    """

    label: str
    make_fresh: Callable[..., Any]
    capabilities: DetectorCapabilities = field(default_factory=DetectorCapabilities)
    params: dict[str, Any] = field(default_factory=dict)
    registry_name: str | None = None
    seed_param: str | None = None
    known_failures: dict[str, str] = field(default_factory=dict)
    _fitted: Any = field(default=None, repr=False)
    _images: CheckImages | None = field(default=None, repr=False)

    @property
    def images(self) -> CheckImages:
        if self._images is None:
            self._images = make_check_images(n_train=max(8, self.capabilities.min_train_images))
        return self._images

    def make(self, seed: int | None = None) -> Any:
        """A fresh, unfitted detector (with ``seed`` passed when its params take one), built
        from seeded global generators and returned with them seeded again, so what it draws
        when built and when fitted is the same in every check, run and process.

        torch is seeded only once imported (:func:`pyimgano.seeding.seed_everything`): when
        building the detector is what imported it, the detector is built again from the
        seeded torch, so the first check (run alone or after others) sees what later ones see.
        """
        params = dict(self.params)
        if seed is not None and self.seed_param and self.seed_param not in params:
            params[self.seed_param] = seed
        torch_before = "torch" in sys.modules
        seed_everything(SEED)
        detector = self.make_fresh(**params)
        if not torch_before and "torch" in sys.modules:
            seed_everything(SEED)
            detector = self.make_fresh(**params)
        seed_everything(SEED)
        return detector

    def fitted(self) -> Any:
        """The shared detector fitted on the kit's training images (fit once, then cached)."""
        if self._fitted is None:
            detector = self.make(SEED)
            try:
                returned = detector.fit(self.images.train)
            except Exception as exc:
                self._fitted = ("error", exc)
                raise SetupFailed(f"fit on {len(self.images.train)} generated images failed: {describe(exc)}") from exc
            self._fitted = ("ok", (detector, returned))
        status, value = self._fitted
        if status == "error":
            first_line = describe(value).splitlines()[0]
            short = first_line if len(first_line) <= 120 else first_line[:117] + "..."
            raise SetupFailed(f"fit on the generated images failed (in full under the first check run): {short}")
        return value[0]

    def fit_returned(self) -> Any:
        self.fitted()
        return self._fitted[1][1]

    def __str__(self) -> str:
        return self.label


def _seed_param_of(fields: Iterable[str]) -> str | None:
    return next((name for name in SEED_PARAMS if name in set(fields)), None)


def detector_target(
    detector: Any,
    *,
    params: Mapping[str, Any] | None = None,
    capabilities: DetectorCapabilities | Mapping[str, Any] | None = None,
    known_failures: Mapping[str, str] | None = None,
) -> DetectorTarget:
    """Describe a detector for the kit.

    Args:
        detector: a registered name (``"plugin:name"`` or a bare name), a class or factory
            returning a fresh detector, or a :class:`DetectorTarget` (returned as is).
        params: keyword arguments for every fresh instance; for a registered detector
            they go on top of its spec's ``capabilities.check_params``.
        capabilities: for a factory (a registered detector uses its spec's).
        known_failures: ``{check_name: reason}`` for checks known to fail (for a registered
            detector, on top of its spec's ``capabilities.known_failures``).
    """
    if isinstance(detector, DetectorTarget):
        return detector
    known = dict(known_failures or {})
    if isinstance(detector, str):
        from pyimgano.factories import create_detector
        from pyimgano.plugins import get_registry

        registry = get_registry()
        spec, record = registry.resolve("detector", detector)
        qualified = f"{record.name}:{spec.name}"
        caps = spec.capabilities
        merged = {**caps.check_params, **dict(params or {})}
        registry.validate_params("detector", qualified, merged)
        return DetectorTarget(
            label=qualified,
            make_fresh=lambda **kw: create_detector(qualified, **kw),
            capabilities=caps,
            params=merged,
            registry_name=qualified,
            seed_param=_seed_param_of(spec.params.model_fields),
            known_failures={**caps.known_failures, **known},
        )
    if not callable(detector):
        raise TypeError(
            f"expected a detector name, a factory returning a fresh detector, or a DetectorTarget; "
            f"got {type(detector).__name__}"
        )
    if isinstance(capabilities, Mapping):
        capabilities = DetectorCapabilities(**capabilities)
    try:
        fields = inspect.signature(detector).parameters
    except (TypeError, ValueError):
        fields = {}
    return DetectorTarget(
        label=getattr(detector, "__qualname__", None) or repr(detector),
        make_fresh=detector,
        capabilities=capabilities or DetectorCapabilities(),
        params=dict(params or {}),
        seed_param=_seed_param_of(fields),
        known_failures=known,
    )


# -- helpers ------------------------------------------------------------------------------
def _auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve by average ranks (ties count one half)."""
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    order = np.argsort(scores, kind="mergesort")
    ordered = scores[order]
    first = np.r_[True, ordered[1:] != ordered[:-1]]
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], scores.size]
    ranks = np.empty(scores.size)
    ranks[order] = ((starts + ends + 1) / 2.0)[np.cumsum(first) - 1]
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _scores(target: DetectorTarget, detector: Any, images: list[np.ndarray]) -> np.ndarray:
    return validate_scores(detector.decision_function(images), len(images), component=target.label)


def _maps(target: DetectorTarget, detector: Any, images: list[np.ndarray]) -> list[np.ndarray]:
    """Maps as returned, after checking they are float32 and at each input's size."""
    maps = detector.predict_anomaly_map(images)
    shapes = [tuple(img.shape[:2]) for img in images]
    items = list(maps) if isinstance(maps, (np.ndarray, list, tuple)) else None
    if items is None:
        raise ValueError(f"predict_anomaly_map returned a {type(maps).__name__}; expected an N x H x W float32 array")
    for i, item in enumerate(items):
        arr = np.asarray(item)
        if arr.dtype != np.float32:
            raise ValueError(f"anomaly map {i} has dtype {arr.dtype}; expected float32")
    validate_maps(maps, shapes, component=target.label)
    return [np.asarray(m) for m in items]


def _clear_error(exc: BaseException) -> bool:
    return isinstance(exc, (ValueError, PyimganoError)) and bool(str(exc).strip())


def _needs(capability: str) -> Callable[[DetectorTarget], str | None]:
    def applies(target: DetectorTarget) -> str | None:
        return None if getattr(target.capabilities, capability) else f"capabilities.{capability} is False"

    return applies


DETECTOR_CHECKS: list[Check] = []


def _fitting(applies: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    """A check that fits the detector on the kit's images applies to detectors that fit on images only."""
    def fits(target: DetectorTarget) -> str | None:
        return _needs("fits_on_images")(target) or applies(target)

    return fits


def _check(applies: Callable[[Any], str | None] = always,
           fits: bool = True) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register a check; ``fits``: it fits the detector on the kit's generated images."""
    def register(func: Callable[..., None]) -> Callable[..., None]:
        wrapped = wrap_check(func.__name__, func, detector_target)
        DETECTOR_CHECKS.append(Check(func.__name__, wrapped, _fitting(applies) if fits else applies))
        return wrapped

    return register


# -- the checks ---------------------------------------------------------------------------
@_check()
def check_fit_returns_self(target: DetectorTarget) -> None:
    """``fit(images)`` returns the detector itself (so ``Det().fit(x).predict(y)`` works)."""
    detector = target.fitted()
    returned = target.fit_returned()
    if returned is not detector:
        raise CheckFailed("check_fit_returns_self",
                          f"fit() returned {type(returned).__name__} {returned!r:.80}; expected self")


def _registered(target: DetectorTarget) -> str | None:
    return None if target.registry_name else "not a registered detector (a factory)"


@_check(_registered, fits=False)
def check_params_match_spec(target: DetectorTarget) -> None:
    """``get_params()`` validates against the spec's params model (``load`` rebuilds from it)."""
    from pyimgano.plugins import get_registry

    detector = target.make(SEED)
    if not hasattr(detector, "get_params"):
        raise CheckFailed("check_params_match_spec", "the detector has no get_params()")
    params = detector.get_params()
    spec, _ = get_registry().resolve("detector", target.registry_name)
    try:
        spec.params.model_validate(params)
    except Exception as exc:
        problems = exc.errors() if hasattr(exc, "errors") else str(exc)
        raise CheckFailed("check_params_match_spec", f"get_params() {params} does not validate against "
                    f"{spec.params.__name__}: {problems}; the detector could not be reloaded") from exc
    config = getattr(detector, "config", None)
    if isinstance(config, BaseModel) and type(config) is not spec.params:
        raise CheckFailed("check_params_match_spec", f"the detector validates its parameters into "
                    f"{type(config).__name__}, its spec registers {spec.params.__name__}; declare "
                    f"params_model = {spec.params.__name__} (one source of truth)")


@_check(fits=False)
def check_use_before_fit_raises(target: DetectorTarget) -> None:
    """Scoring an unfitted detector raises a clear error (``NotFittedError``), not garbage."""
    detector = target.make(SEED)
    try:
        detector.decision_function(target.images.test_good[:1])
    except (NotFittedError, RuntimeError, ValueError) as exc:
        if not str(exc).strip():
            raise CheckFailed(
                "check_use_before_fit_raises", f"raised {type(exc).__name__} with an empty message"
            ) from None
        return
    except Exception as exc:
        raise CheckFailed(
            "check_use_before_fit_raises",
            f"raised {type(exc).__name__}: {exc}; expected pyimgano.NotFittedError naming the detector",
        ) from exc
    raise CheckFailed("check_use_before_fit_raises", "decision_function() on an unfitted detector returned scores; "
                "expected pyimgano.NotFittedError")


@_check()
def check_scores_finite_one_per_image(target: DetectorTarget) -> None:
    """``decision_function`` returns a 1-D float array with one finite value per image."""
    detector = target.fitted()
    for images in (target.images.test, target.images.test_good[:1]):
        raw = detector.decision_function(images)
        if not isinstance(raw, np.ndarray):
            raise CheckFailed("check_scores_finite_one_per_image",
                              f"returned a {type(raw).__name__}; expected a numpy array")
        validate_scores(raw, len(images), component=target.label)


@_check()
def check_defect_scores_higher(target: DetectorTarget) -> None:
    """Higher means more anomalous: images with an obvious defect score above normal ones."""
    detector = target.fitted()
    images = target.images
    scores = _scores(target, detector, images.test)
    auroc = _auroc(images.test_labels, scores)
    if auroc < MIN_IMAGE_AUROC:
        good = np.round(scores[images.test_labels == 0], 4).tolist()
        bad = np.round(scores[images.test_labels == 1], 4).tolist()
        raise CheckFailed(
            "check_defect_scores_higher",
            f"image AUROC {auroc:.2f} < {MIN_IMAGE_AUROC} on images with an obvious bright defect "
            f"(normal scores {good}, defective {bad}); higher scores must mean more anomalous",
        )


@_check(_needs("pixel_maps"))
def check_map_shape_and_dtype(target: DetectorTarget) -> None:
    """``predict_anomaly_map`` returns finite float32 maps of each input's height and width."""
    detector = target.fitted()
    maps = detector.predict_anomaly_map(target.images.test)
    if not isinstance(maps, np.ndarray):
        raise CheckFailed("check_map_shape_and_dtype", f"returned a {type(maps).__name__} for same-size images; "
                    "expected an N x H x W float32 array")
    n, (h, w) = len(target.images.test), target.images.test[0].shape[:2]
    if maps.shape != (n, h, w):
        raise CheckFailed("check_map_shape_and_dtype", f"anomaly maps of shape {maps.shape}; expected {(n, h, w)}")
    if maps.dtype != np.float32:
        raise CheckFailed("check_map_shape_and_dtype", f"anomaly maps of dtype {maps.dtype}; expected float32")
    _maps(target, detector, target.images.test)


@_check(_needs("pixel_maps"))
def check_maps_locate_defect(target: DetectorTarget) -> None:
    """Map values inside the defect are higher than outside it (pixel AUROC per image)."""
    detector = target.fitted()
    images = target.images
    maps = _maps(target, detector, images.test_defect)
    per_image = [_auroc(mask, m) for mask, m in zip(images.test_masks, maps)]
    mean = float(np.mean(per_image))
    if mean < MIN_PIXEL_AUROC:
        raise CheckFailed(
            "check_maps_locate_defect",
            f"mean pixel AUROC {mean:.2f} < {MIN_PIXEL_AUROC} inside images with an obvious bright defect "
            f"(per image {np.round(per_image, 2).tolist()}); map values must be higher where the defect is",
        )


@_check()
def check_predict_agrees_with_threshold(target: DetectorTarget) -> None:
    """``predict`` returns 0/1 labels equal to ``decision_function(x) > threshold_``."""
    detector = target.fitted()
    images = target.images.test
    previous = getattr(detector, "threshold_", None)
    scores = _scores(target, detector, images)
    cut = float(np.median(scores))
    try:
        if hasattr(detector, "set_threshold"):
            detector.set_threshold(cut)
        else:
            detector.threshold_ = cut
        if getattr(detector, "threshold_", None) != cut:
            raise CheckFailed("check_predict_agrees_with_threshold", f"threshold_ is {detector.threshold_!r} after "
                        f"set_threshold({cut!r})")
        labels = validate_labels(detector.predict(images), len(images), component=target.label)
        expected = (scores > cut).astype(np.int64)
        if not np.array_equal(labels, expected):
            wrong = np.flatnonzero(labels != expected).tolist()
            raise CheckFailed(
                "check_predict_agrees_with_threshold",
                f"predict() disagrees with decision_function() > threshold_ ({cut:.6g}) at images {wrong}: "
                f"labels {labels.tolist()}, scores {np.round(scores, 6).tolist()}",
            )
    finally:
        detector.threshold_ = previous


@_check(_needs("deterministic"))
def check_deterministic_with_seed(target: DetectorTarget) -> None:
    """Two fresh instances fitted with the same seed on the same images give equal scores."""
    target.fitted()  # imports the detector's modules first, so both runs below seed them alike
    images = target.images
    runs = []
    for _ in range(2):
        detector = target.make(SEED).fit(images.train)
        scores = _scores(target, detector, images.test)
        maps = _maps(target, detector, images.test) if target.capabilities.pixel_maps else []
        runs.append((scores, maps))
    (s1, m1), (s2, m2) = runs
    seeded = f"with {target.seed_param}={SEED}" if target.seed_param else f"after seeding global generators with {SEED}"
    if not np.allclose(s1, s2, rtol=1e-5, atol=1e-7):
        diff = float(np.max(np.abs(s1 - s2)))
        raise CheckFailed("check_deterministic_with_seed", f"two fresh instances fitted {seeded} on the same images "
                    f"give different scores (max abs difference {diff:.3g}); declare "
                    "capabilities.deterministic=False if the detector cannot be seeded")
    for a, b in zip(m1, m2):
        if not np.allclose(a, b, rtol=1e-4, atol=1e-6):
            raise CheckFailed("check_deterministic_with_seed", f"two fresh instances fitted {seeded} give different "
                        f"anomaly maps (max abs difference {float(np.max(np.abs(a - b))):.3g})")


@_check(_needs("out_of_fold"))
def check_out_of_fold(target: DetectorTarget) -> None:
    """``fit_out_of_fold(train)`` gives one finite score (and a map at each image's size) per
    training image, and leaves the detector fitted as ``fit(train)`` does."""
    name = "check_out_of_fold"
    images = target.images
    target.fitted()
    detector = target.make(SEED)
    from pyimgano.detector import Detector

    if not getattr(detector, "supports_out_of_fold", False) or type(detector)._fit_out_of_fold is Detector._fit_out_of_fold:
        raise CheckFailed(name, "capabilities.out_of_fold is True but the detector does not implement "
                                "_fit_out_of_fold")
    scores, maps = detector.fit_out_of_fold(images.train)
    validate_scores(scores, len(images.train), component=target.label)
    if target.capabilities.pixel_maps:
        if maps is None:
            raise CheckFailed(name, "fit_out_of_fold returned no maps although capabilities.pixel_maps is True")
        shapes = [tuple(np.asarray(m).shape) for m in maps]
        if shapes != [tuple(img.shape[:2]) for img in images.train]:
            raise CheckFailed(name, f"out-of-fold maps have shapes {shapes[:3]}...; expected each training image's size")
    if target.capabilities.deterministic:
        after, plain = _scores(target, detector, images.test), _scores(target, target.fitted(), images.test)
        if not np.allclose(after, plain, rtol=1e-5, atol=1e-7):
            raise CheckFailed(name, "after fit_out_of_fold the detector scores the test images differently from one "
                                    f"fitted with fit() (max abs difference {float(np.max(np.abs(after - plain))):.3g})")


def _reload(target: DetectorTarget, detector: Any, directory: Path) -> Any:
    """``load`` of a model the kit saved in a temporary folder (named ``<saved model>`` in errors)."""
    from pyimgano.errors import ModelLoadError

    try:
        return _load_saved(target, detector, directory)
    except ModelLoadError as exc:
        raise ModelLoadError(str(exc).replace(str(directory), "<saved model>")) from None


def _load_saved(target: DetectorTarget, detector: Any, directory: Path) -> Any:
    if target.registry_name is not None:
        from pyimgano.detector import load_detector

        return load_detector(directory)
    # a factory outside the registry: rebuild it from the saved state with load's checks
    from pyimgano.modelfile import check_loaded_state, read_state

    fresh = target.make(SEED)
    path = directory / "state.npz"
    state = read_state(path)
    check_loaded_state(fresh, state, path)
    fresh._set_state(state)
    fresh._load_files(directory)
    fresh.is_fitted_ = True
    fresh.threshold_ = detector.threshold_
    return fresh


@_check(_needs("save_load"))
def check_save_load_round_trip(target: DetectorTarget) -> None:
    """A saved and reloaded detector gives identical scores, maps and threshold."""
    detector = target.fitted()
    images = target.images.test
    if not hasattr(detector, "save"):
        raise CheckFailed("check_save_load_round_trip", "the detector has no save(directory); declare "
                    "capabilities.save_load=False if it cannot be saved")
    previous = getattr(detector, "threshold_", None)
    scores = _scores(target, detector, images)
    detector.threshold_ = float(np.median(scores))
    try:
        with tempfile.TemporaryDirectory(prefix="pyimgano-check-") as tmp:
            directory = Path(tmp) / "model"
            detector.save(directory)
            loaded = _reload(target, detector, directory)
            if loaded is detector:
                raise CheckFailed("check_save_load_round_trip", "load returned the same object")
            again = _scores(target, loaded, images)
            if not np.allclose(scores, again, rtol=1e-6, atol=1e-9):
                diff = float(np.max(np.abs(scores - again)))
                raise CheckFailed("check_save_load_round_trip", f"scores after save/load differ from before "
                            f"(max abs difference {diff:.3g}): before {np.round(scores, 6).tolist()}, "
                            f"after {np.round(again, 6).tolist()}")
            if target.capabilities.pixel_maps:
                for i, (a, b) in enumerate(zip(_maps(target, detector, images), _maps(target, loaded, images))):
                    if not np.allclose(a, b, rtol=1e-5, atol=1e-7):
                        raise CheckFailed("check_save_load_round_trip", f"anomaly map {i} after save/load differs "
                                    f"(max abs difference {float(np.max(np.abs(a - b))):.3g})")
            if getattr(loaded, "threshold_", None) != detector.threshold_:
                raise CheckFailed("check_save_load_round_trip", f"threshold_ {detector.threshold_!r} came back as "
                            f"{getattr(loaded, 'threshold_', None)!r}")
    finally:
        detector.threshold_ = previous


UNKNOWN_PARAM = "no_such_parameter_for_the_kit"


def _params_model(target: DetectorTarget) -> type[BaseModel] | None:
    """The params model: the spec's for a registered detector, else the class's ``params_model``."""
    if target.registry_name is not None:
        from pyimgano.plugins import get_registry

        return get_registry().resolve("detector", target.registry_name)[0].params
    model = getattr(target.make_fresh, "params_model", None)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _literal_choices(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) is typing.Literal:
        return list(typing.get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return list(annotation)
    return [c for arg in typing.get_args(annotation) for c in _literal_choices(arg)]


def _candidates(annotation: Any, value: Any) -> tuple[int, list[Any]]:
    """(preference, other values to try) for one field: flags first, then choices, then numbers."""
    if isinstance(value, bool):
        return 0, [not value]
    choices = _literal_choices(annotation)
    if choices:
        return 1, [c for c in choices if c != value]
    if isinstance(value, int):
        return 2, [value + 1, value - 1, value * 2, value // 2]
    if isinstance(value, float):
        return 2, [value * 2, value / 2, value + 1.0, value - 1.0, 0.5]
    return 3, []  # None, strings, lists: no generic other value


def _state_shape_names(detector: Any) -> frozenset[str]:
    """Names in the detector's ``state_arrays`` shapes: parameters the fitted state depends on."""
    declared = getattr(detector, "state_arrays", None) or {}
    return frozenset(dim for spec in declared.values() for dim in spec.shape if isinstance(dim, str))


def _other_value(
    model: type[BaseModel], params: Mapping[str, Any], avoid: frozenset[str] = frozenset()
) -> tuple[str, Any] | None:
    """A parameter and another value the model accepts for it, ``params`` otherwise unchanged.

    Booleans come first, then choices (Literal, Enum), then numbers, each in declaration
    order; parameters left at None, strings and lists are never picked, nor those in
    ``avoid`` (parameters that fix the shape of the fitted state: they take effect on the
    next fit, and a fitted detector refuses to save a state that no longer fits them).
    """
    current = model.model_validate(dict(params))
    ranked = []
    for order, (name, info) in enumerate(model.model_fields.items()):
        if name in avoid:
            continue
        value = getattr(current, name)
        preference, candidates = _candidates(info.annotation, value)
        if candidates:
            ranked.append((preference, order, name, value, candidates))
    for _, _, name, value, candidates in sorted(ranked, key=lambda item: item[:2]):
        for candidate in candidates:
            try:
                changed = getattr(model.model_validate({**dict(params), name: candidate}), name)
            except ValidationError:
                continue
            if changed != value:
                return name, changed
    return None


def _changeable(target: DetectorTarget) -> str | None:
    model = _params_model(target)
    if model is None:
        return "no params model (a factory without params_model)"
    try:
        found = _other_value(model, target.params, _state_shape_names(target.make(SEED)))
    except ValidationError as exc:
        return f"the kit's parameters do not validate against {model.__name__}: {exc.errors()}"
    return None if found is not None else f"no parameter of {model.__name__} can take another value generically"


@_check(_changeable)
def check_set_params_round_trip(target: DetectorTarget) -> None:
    """``set_params`` returns self, ``get_params`` shows the new value, and save/load keeps it.

    The parameter is picked from the params model (a flag, a choice, else a number); the
    fitted detector gets its old value back afterwards.
    """
    name_ = "check_set_params_round_trip"
    detector = target.fitted()
    model = _params_model(target)
    before = detector.get_params()
    found = _other_value(model, before, _state_shape_names(detector))
    if found is None:
        raise CheckFailed(name_, f"get_params() {before} leaves no parameter another valid value")
    name, value = found
    call = f"set_params({name}={value!r})"
    try:
        returned = detector.set_params(**{name: value})
        if returned is not detector:
            raise CheckFailed(name_, f"{call} returned {type(returned).__name__} {returned!r:.80}; expected self")
        shown = detector.get_params().get(name, "(missing)")
        if shown != value:
            raise CheckFailed(name_, f"get_params() shows {name}={shown!r} after {call}; parameters must be "
                              "read from one place (the validated config), not copied at construction")
        try:
            detector.set_params(**{UNKNOWN_PARAM: 1})
        except ValueError as exc:
            if UNKNOWN_PARAM not in str(exc):
                raise CheckFailed(name_, f"set_params({UNKNOWN_PARAM}=1) raised without naming the "
                                  f"parameter: {describe(exc)}") from None
        else:
            raise CheckFailed(name_, f"set_params({UNKNOWN_PARAM}=1) was accepted; expected InvalidParams")
        if target.capabilities.save_load and hasattr(detector, "save"):
            with tempfile.TemporaryDirectory(prefix="pyimgano-check-") as tmp:
                directory = Path(tmp) / "model"
                detector.save(directory)
                from pyimgano.detector import MODEL_CONFIG_FILE

                saved = json.loads((directory / MODEL_CONFIG_FILE).read_text()).get("params") or {}
                stored = getattr(model.model_validate(saved), name)
                if stored != value:
                    raise CheckFailed(name_, f"save() after {call} wrote {name}={saved.get(name, '(missing)')!r}")
                if target.registry_name is not None:
                    loaded = _reload(target, detector, directory).get_params().get(name, "(missing)")
                    if loaded != value:
                        raise CheckFailed(name_, f"after {call}, save and load, the detector has {name}={loaded!r}")
    finally:
        try:
            detector.set_params(**{name: before[name]})
        except Exception:  # noqa: BLE001 - the failure above is the one to report
            pass


@_check()
def check_grayscale_and_rgba_input(target: DetectorTarget) -> None:
    """Grayscale (HxW) and RGBA (HxWx4) images are scored like RGB ones."""
    detector = target.fitted()
    rgb = target.images.test_good[:1] + target.images.test_defect[:1]
    for kind, images in (("grayscale", [to_grayscale(i) for i in rgb]), ("RGBA", [to_rgba(i) for i in rgb])):
        try:
            _scores(target, detector, images)
            if target.capabilities.pixel_maps:
                _maps(target, detector, images)
        except Exception as exc:
            raise CheckFailed("check_grayscale_and_rgba_input", f"{kind} input: {describe(exc)}") from exc


@_check(fits=False)
def check_empty_training_set_rejected(target: DetectorTarget) -> None:
    """``fit([])`` (and fewer than ``min_train_images``) raises a clear ``ValueError``."""
    minimum = target.capabilities.min_train_images
    cases = [("an empty training set", [])]
    if minimum > 1:
        fewer = f"{minimum - 1} training images (min_train_images={minimum})"
        cases.append((fewer, target.images.train[: minimum - 1]))
    for what, images in cases:
        detector = target.make(SEED)
        try:
            detector.fit(images)
        except Exception as exc:
            if _clear_error(exc):
                continue
            raise CheckFailed("check_empty_training_set_rejected", f"fit() with {what} raised {type(exc).__name__}: "
                        f"{exc!s:.200}; expected a ValueError that says what is wrong") from exc
        raise CheckFailed("check_empty_training_set_rejected",
                          f"fit() with {what} did not raise; expected a ValueError")


@_check()
def check_unseen_image_size(target: DetectorTarget) -> None:
    """Images of sizes not seen in training (and mixed in one call) are scored, maps at their size."""
    detector = target.fitted()
    shapes = [(48, 80), (80, 40)]
    images = [texture(3000 + i, h, w) for i, (h, w) in enumerate(shapes)]
    images.append(defective(3100, *shapes[0])[0])
    _scores(target, detector, images)
    if target.capabilities.pixel_maps:
        maps = detector.predict_anomaly_map(images)
        got = [tuple(np.asarray(m).shape) for m in maps]
        want = [img.shape[:2] for img in images]
        if got != want:
            raise CheckFailed("check_unseen_image_size",
                              f"anomaly maps of shapes {got} for images of unseen sizes {want}")
        _maps(target, detector, images)


# -- front ends ---------------------------------------------------------------------------
def check_names() -> list[str]:
    """Names of every detector check, in the order they run."""
    return [c.name for c in DETECTOR_CHECKS]


def check_detector(
    detector: Any,
    *,
    params: Mapping[str, Any] | None = None,
    capabilities: DetectorCapabilities | Mapping[str, Any] | None = None,
    known_failures: Mapping[str, str] | None = None,
    checks: Iterable[str] | None = None,
) -> list[CheckResult]:
    """Run every applicable check on one detector; one :class:`CheckResult` per check.

    ``known_failures`` (``{check_name: reason}``) turn those failures into
    ``known failure`` results that carry the reason; ``checks`` restricts the run to names.
    """
    target = detector_target(detector, params=params, capabilities=capabilities, known_failures=known_failures)
    wanted = None if checks is None else set(checks)
    if wanted is not None and wanted - set(check_names()):
        raise InvalidParams(f"unknown check(s) {sorted(wanted - set(check_names()))}; checks are: {check_names()}")
    known = {**target.known_failures, **dict(known_failures or {})}
    return run_checks(DETECTOR_CHECKS, target, target.label, known, selector(wanted))


def parametrize_with_checks(
    detectors: Iterable[Any],
    *,
    known_failures: Mapping[str, str] | Callable[[DetectorTarget], Mapping[str, str]] | None = None,
) -> Any:
    """A ``pytest.mark.parametrize`` decorator: one test per (detector, check).

    Use it on a test taking ``component`` and ``check``::

        from pyimgano.testing import parametrize_with_checks

        @parametrize_with_checks(["myplugin:mydetector"])
        def test_conformance(component, check):
            check(component)

    Items of ``detectors`` are what :func:`detector_target` accepts. Test ids are
    ``<detector>-<check>``; known failures (``{check: reason}``, or a function of the
    target) become ``xfail`` with the reason, checks ruled out by capabilities ``skip``.
    """
    targets = [detector_target(d) for d in detectors]

    def known_for(target: DetectorTarget) -> Mapping[str, str]:
        extra = known_failures(target) if callable(known_failures) else (known_failures or {})
        return {**target.known_failures, **dict(extra)}

    pairs = [(t, check, t.label) for t in targets for check in DETECTOR_CHECKS]
    return pytest_params(pairs, known_for)
