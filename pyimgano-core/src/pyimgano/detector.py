"""The detector API every plugin implements (scikit-learn / PyOD conventions).

Subclass :class:`Detector` and implement ``_fit`` and ``_score``; the base class handles
image input (paths, PIL images, arrays of any channel count), contract validation,
thresholds and saving. Images reach ``_fit``/``_score`` as a list of HxWx3 uint8 RGB
arrays at their original size; ``_score`` returns maps at each image's own size.

Parameters have one source of truth: a subclass names its pydantic params model
(``params_model``, the same class its spec registers); keyword arguments are validated once
into ``self.config``, and ``get_params``, ``set_params``, attribute access (``det.sigma``),
``repr`` and ``save`` all read or write that one validated object.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ValidationError

from pyimgano.contracts import validate_labels, validate_maps, validate_scores
from pyimgano.errors import (
    InvalidParams,
    ModelLoadError,
    NotFittedError,
    PyimganoError,
    validation_problems,
)
from pyimgano.images import ImageInput, image_shapes, load_image, load_images
from pyimgano.modelfile import (
    MODEL_CONFIG_FILE,
    MODEL_FORMAT,
    MODEL_STATE_FILE,
    ModelFile,
    StateArray,
    check_loaded_state,
    check_saved_state,
    read_model_file,
    read_state,
    state_path,
)
from pyimgano.specs import DetectorCapabilities
from pyimgano.thresholds import finite_threshold, make_strategy

__all__ = [
    "MODEL_CONFIG_FILE",
    "MODEL_FORMAT",
    "MODEL_STATE_FILE",
    "Detector",
    "StateArray",
    "load_detector",
]


class Param:
    """A detector attribute that reads and writes one field of the validated ``config``.

    Installed for every field of a subclass's ``params_model``: ``det.sigma`` reads
    ``det.config.sigma``; ``det.sigma = 0`` is ``det.set_params(sigma=0)`` (validated).
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        config = obj.__dict__.get("config")
        if config is None:
            raise AttributeError(f"{type(obj).__name__}.{self.name}: parameters are set in Detector.__init__")
        return getattr(config, self.name)

    def __set__(self, obj: Any, value: Any) -> None:
        obj.set_params(**{self.name: value})

    def __repr__(self) -> str:
        return f"Param({self.name!r})"


_LEGACY_ATTRIBUTES = {"supports_maps": "pixel_maps", "learns_from_anomalies": "learns_from_anomalies",
                      "supports_out_of_fold": "out_of_fold"}


def _warn_legacy(what: str, *fields: str) -> None:
    warnings.warn(f"{what} is deprecated and goes in the next release; declare {', '.join(fields)} in the "
                  f"DetectorCapabilities of the detector's spec (docs/plugins.md)", DeprecationWarning, stacklevel=3)


def _capability_view(attr: str, field: str, doc: str) -> property:
    """A read view of ``capabilities.<field>``; setting it (deprecated) narrows the instance's."""

    def get(self: Detector) -> bool:
        return getattr(self.capabilities, field)

    def set_(self: Detector, value: bool) -> None:
        _warn_legacy(f"{type(self).__name__}: setting {attr} on a detector", field)
        self.capabilities = self.capabilities.model_copy(update={field: bool(value)})

    return property(get, set_, doc=doc)


def registered_capabilities(cls: type, component: str | None = None) -> DetectorCapabilities | None:
    """The capabilities of the registered spec for ``component`` (``plugin:name`` or bare),
    else of the spec whose factory names ``cls``; None when no plugin registers it."""
    from pyimgano.errors import PyimganoError
    from pyimgano.plugins import get_registry

    try:
        registry = get_registry()
    except PyimganoError:  # a broken plugin in strict mode: the detector still works, with defaults
        return None
    if component and component != "detector":
        try:
            return registry.resolve("detector", component)[0].capabilities
        except PyimganoError:
            pass
    factory = f"{cls.__module__}:{cls.__qualname__}"
    return next((spec.capabilities for spec, _ in registry.components("detector").values()
                 if spec.factory == factory), None)


def capabilities_of(cls: type, component: str | None = None) -> DetectorCapabilities:
    """A detector class's capabilities: its registered spec's (:func:`registered_capabilities`),
    else the defaults. A deprecated class attribute (``supports_maps = False``) is reconciled
    here, once: with a spec it can only narrow the spec's value, without one it is the value."""
    registered = registered_capabilities(cls, component)
    caps = registered or DetectorCapabilities()
    legacy = getattr(cls, "_legacy_capabilities", {})
    if not legacy:
        return caps
    update = {k: getattr(caps, k) and v for k, v in legacy.items()} if registered else legacy
    return caps.model_copy(update=update)


class Detector:
    """Base class of anomaly detectors.

    Attributes:
        params_model: the pydantic model of the parameters (class attribute: the class the
            detector's spec names). ``None``: parameters are kept as given, unvalidated.
        config: the validated parameters, an instance of ``params_model``.
        threshold_: score above which ``predict`` says 1 (anomalous); set by
            ``calibrate``, ``set_threshold`` or ``fit(..., calibration=...)``; always finite.
        component: the detector's qualified name (``plugin:name``), set by the registry.
        state_arrays: what ``_get_state`` returns and ``_set_state`` accepts, by array name
            (class attribute, :class:`StateArray`): a saved state is checked against it before
            ``_set_state`` sees it, and a fitted one before it is saved. ``None``: unchecked.
        capabilities: what the detector can do (:class:`DetectorCapabilities`): its registered
            spec's, found by ``component`` or by the class the spec's factory names; defaults
            for a detector no plugin registers. An instance may narrow them (``core:exported``
            has maps only when its graph does). ``supports_maps`` and ``learns_from_anomalies``
            read ``capabilities.pixel_maps`` and ``capabilities.learns_from_anomalies``.
    """

    component: str = "detector"
    plugin: str | None = None
    _legacy_capabilities: ClassVar[dict[str, bool]] = {}
    params_model: ClassVar[type[BaseModel] | None] = None
    state_arrays: ClassVar[Mapping[str, StateArray] | None] = None
    config: BaseModel | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        model = cls.__dict__.get("params_model")
        if model is not None:
            _install_params(cls, model)
        legacy = {field: cls.__dict__[attr] for attr, field in _LEGACY_ATTRIBUTES.items()
                  if attr in cls.__dict__ and not isinstance(cls.__dict__[attr], property)}
        if legacy:
            attrs = [attr for attr, field in _LEGACY_ATTRIBUTES.items() if field in legacy]
            for attr in attrs:
                delattr(cls, attr)
            _warn_legacy(f"{cls.__module__}.{cls.__qualname__}: declaring {', '.join(attrs)} as class attributes", *legacy)
            cls._legacy_capabilities = {**cls._legacy_capabilities, **{k: bool(v) for k, v in legacy.items()}}

    # -- capabilities: one declaration, the spec's ----------------------------------
    @property
    def capabilities(self) -> DetectorCapabilities:
        caps = self.__dict__.get("_capabilities")
        if caps is None:
            caps = self._capabilities = capabilities_of(type(self), self.component)
        return caps

    @capabilities.setter
    def capabilities(self, value: DetectorCapabilities | Mapping[str, Any]) -> None:
        self._capabilities = value if isinstance(value, DetectorCapabilities) else DetectorCapabilities(**value)

    supports_maps = _capability_view(
        "supports_maps", "pixel_maps", "``capabilities.pixel_maps``: ``predict_anomaly_map`` returns maps")
    learns_from_anomalies = _capability_view(
        "learns_from_anomalies", "learns_from_anomalies",
        "``capabilities.learns_from_anomalies``: ``fit(..., anomalies=...)`` is implemented")
    supports_out_of_fold = _capability_view(
        "supports_out_of_fold", "out_of_fold", "``capabilities.out_of_fold``: ``_fit_out_of_fold`` is implemented")

    def __init__(self, **params: Any) -> None:
        model = type(self).params_model
        if model is not None:
            self.config = _validated(model, params, self._describe())
        else:
            self._params = dict(params)
        self.threshold_: float | None = None
        self.is_fitted_ = False

    # -- to implement ---------------------------------------------------------------
    def _fit(self, images: list[np.ndarray]) -> None:
        raise NotImplementedError

    def _score(self, images: list[np.ndarray]) -> tuple[np.ndarray, Any]:
        """Return (scores of shape N, maps N x H x W at input size, or None)."""
        raise NotImplementedError

    def _fit_with_anomalies(
        self, images: list[np.ndarray], anomalies: list[np.ndarray], masks: list[np.ndarray] | None
    ) -> None:
        """Train on normal ``images`` and labelled ``anomalies`` (HxW bool ``masks`` or None);
        detectors with ``learns_from_anomalies = True`` implement it."""
        raise NotImplementedError(f"{type(self).__name__} declares learns_from_anomalies but has no "
                                  "_fit_with_anomalies")

    def _fit_out_of_fold(self, images: list[np.ndarray]) -> tuple[np.ndarray, Any]:
        """Fit on ``images`` as ``_fit`` does and return their (scores, maps), each as if the
        image had been left out of training; detectors with ``supports_out_of_fold = True``
        implement it (a memory bank: search the bank without the image's own rows)."""
        raise NotImplementedError(f"{type(self).__name__} declares supports_out_of_fold but has no "
                                  "_fit_out_of_fold")

    def _get_state(self) -> dict[str, np.ndarray]:
        """Fitted state as named numeric arrays (saved to npz, no pickle)."""
        raise NotImplementedError(f"{type(self).__name__} does not support save()")

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not support load()")

    def state_sizes(self) -> dict[str, int]:
        """Sizes the named dimensions of ``state_arrays`` must have, known from the parameters.

        By default the integer parameters (a dimension named ``image_size`` must equal the
        ``image_size`` parameter); a detector adds what it derives, such as a feature width.
        """
        return {k: v for k, v in self.get_params().items() if isinstance(v, int) and not isinstance(v, bool)}

    def _save_files(self, directory: Path) -> None:
        """Optional: write extra files (an index, safetensors) beside the state."""

    def _load_files(self, directory: Path) -> None:
        """Optional: read what ``_save_files`` wrote."""

    # -- parameters ---------------------------------------------------------------------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The current parameters (a copy), as ``create_detector`` and ``load`` take them.

        ``deep`` is accepted for scikit-learn compatibility (detectors hold no nested estimators).
        """
        del deep
        if self.config is not None:
            return self.config.model_dump()
        return dict(self._params)

    def set_params(self, **params: Any) -> Detector:
        """Change parameters (scikit-learn semantics): validated, returns ``self``.

        A value the params model rejects, or a name it does not have, raises
        :class:`~pyimgano.errors.InvalidParams` naming the parameter and what is allowed,
        and changes nothing. A fitted detector is not refitted: parameters that only ``fit``
        reads take effect on the next ``fit``.
        """
        if not params:
            return self
        if self.config is not None:
            current = {name: getattr(self.config, name) for name in type(self.config).model_fields}
            self.config = _validated(type(self.config), {**current, **params}, self._describe())
            return self
        unknown = sorted(set(params) - set(self._params))
        if unknown:
            raise InvalidParams(
                f"invalid parameters for {self._describe()}: unknown parameter(s) {unknown}; "
                f"valid parameters: {', '.join(sorted(self._params)) or 'none'}"
            )
        for name, value in params.items():
            self._params[name] = value
            if name in self.__dict__:  # the habit of also keeping each parameter as an attribute
                setattr(self, name, value)
        return self

    def _describe(self) -> str:
        return f"detector {self.component}" if self.component != Detector.component else type(self).__name__

    # -- public API -------------------------------------------------------------------

    def fit(
        self,
        images: ImageInput | Sequence[ImageInput],
        y: Any = None,
        *,
        anomalies: Sequence[ImageInput] | None = None,
        anomaly_masks: Sequence[Any] | None = None,
        calibration: Sequence[ImageInput] | None = None,
        calibration_labels: Sequence[int] | None = None,
        threshold: Any = "quantile",
    ) -> Detector:
        """Train on normal images; optionally set ``threshold_`` from calibration images.

        ``anomalies`` (and their ``anomaly_masks``: HxW arrays or mask files) are a few
        labelled defective images, for detectors that learn from them
        (``learns_from_anomalies``, docs/few-shot.md); any other detector refuses them.
        ``y`` is accepted for scikit-learn compatibility; anything but all-zero labels is
        an error (labelled defects go to ``anomalies``).
        """
        if y is not None and np.asarray(y).any():
            raise ValueError(f"{self.component}: fit() trains on normal images only; y must be all 0 or None")
        if anomalies is None and anomaly_masks is not None:
            raise InvalidParams(f"{self.component}: anomaly_masks describe anomalies; give anomalies too")
        if anomalies is not None and not self.learns_from_anomalies:
            raise InvalidParams(f"{self.component}: fit() learns from normal images only and cannot use anomalies; "
                                "labelled defects can calibrate a pyimgano.Pipeline instead (docs/few-shot.md)")
        strategy = make_strategy(threshold) if calibration is not None else None  # a bad one fails before training
        arrays = load_images(images)
        if not arrays:
            raise ValueError(f"{self.component}: fit() needs at least one training image, got an empty set")
        if anomalies is not None:
            from pyimgano.images import load_anomalies

            defects, masks = load_anomalies(anomalies, anomaly_masks, self.component)
            self._fit_with_anomalies(arrays, defects, masks)
        else:
            self._fit(arrays)
        self.is_fitted_ = True
        if strategy is not None:
            self.calibrate(calibration, calibration_labels, strategy=strategy)
        return self

    def score(self, images: ImageInput | Sequence[ImageInput]) -> tuple[np.ndarray, Any]:
        """Scores and maps in one pass, validated against the contracts."""
        self._check_fitted()
        arrays = load_images(images)
        if not arrays:
            return np.zeros(0), np.zeros((0, 0, 0), dtype=np.float32)
        return self._checked_output(arrays, *self._score(arrays))

    def _checked_output(self, arrays: list[np.ndarray], scores: Any, maps: Any) -> tuple[np.ndarray, Any]:
        scores = validate_scores(scores, len(arrays), component=self.component, plugin=self.plugin)
        if maps is not None:
            maps = validate_maps(maps, image_shapes(arrays), component=self.component, plugin=self.plugin)
        return scores, maps

    def fit_out_of_fold(self, images: ImageInput | Sequence[ImageInput]) -> tuple[np.ndarray, Any]:
        """Fit on normal ``images`` (as :meth:`fit`) and return their out-of-fold scores and
        maps, each as if the image had been left out: calibration evidence without holding
        images out of training, usually for little more than the fit.

        Only detectors that declare ``supports_out_of_fold`` offer it; for any other,
        :func:`pyimgano.calibration.cross_fit_scores` gives the same by K-fold cross-fitting.
        """
        if not self.supports_out_of_fold:
            raise InvalidParams(f"{self.component} has no out-of-fold scoring (supports_out_of_fold); "
                                "use K-fold cross-fitting (calibration='kfold') or a holdout")
        arrays = load_images(images)
        if not arrays:
            raise ValueError(f"{self.component}: fit_out_of_fold() needs at least one training image, got none")
        scores, maps = self._fit_out_of_fold(arrays)
        self.is_fitted_ = True
        return self._checked_output(arrays, scores, maps)

    def decision_function(self, images: ImageInput | Sequence[ImageInput]) -> np.ndarray:
        """Anomaly score per image (float64, higher = more anomalous)."""
        return self.score(images)[0]

    def predict_anomaly_map(self, images: ImageInput | Sequence[ImageInput]) -> Any:
        """N x H x W float32 maps at input resolution (a list when input sizes differ)."""
        if not self.supports_maps:
            raise NotImplementedError(f"{self.component} does not produce anomaly maps")
        maps = self.score(images)[1]
        if maps is None:
            raise NotImplementedError(f"{self.component} does not produce anomaly maps")
        return maps

    def get_anomaly_map(self, image: ImageInput) -> np.ndarray:
        """The HxW float32 map of one image (path, PIL image or array)."""
        maps = self.predict_anomaly_map([load_image(image)])
        return maps[0]

    def predict(self, images: ImageInput | Sequence[ImageInput]) -> np.ndarray:
        """0/1 labels: 1 where the score is above ``threshold_``."""
        if self.threshold_ is None:
            raise NotFittedError(
                f"{self.component}: no threshold set; call calibrate(normal_images) "
                "(quantile of held-out normal scores), calibrate(images, labels, strategy='f1'), "
                "or set_threshold(value)"
            )
        scores = self.decision_function(images)
        return validate_labels((scores > self.threshold_).astype(np.int64), len(scores), component=self.component)

    def export_reference(self) -> Detector:
        """The detector an exported graph must reproduce (``pyimgano export``'s parity check).

        This detector itself by default. A detector whose graph computes something it only
        approximates (PatchCore's approximate search against the graph's exact one) returns
        the exact variant, so the check compares like with like; the export then states the
        approximation's own effect on the check images (``docs/deploy.md``)."""
        return self

    def calibrate(
        self,
        images: ImageInput | Sequence[ImageInput],
        labels: Sequence[int] | None = None,
        strategy: Any = "quantile",
    ) -> float:
        """Set ``threshold_`` from held-out images with a strategy (see :mod:`pyimgano.thresholds`)."""
        chosen = make_strategy(strategy)
        scores = self.decision_function(images)
        lab = None if labels is None else validate_labels(labels, len(scores), component="calibration labels")
        value = chosen.compute(scores, lab)
        self.threshold_ = finite_threshold(value, f"{self.component}: the {chosen.strategy} threshold")
        return self.threshold_

    def set_threshold(self, value: float) -> Detector:
        """Set ``threshold_``; a value that is not a finite number is :class:`InvalidParams`."""
        self.threshold_ = finite_threshold(value, f"{self.component}: threshold")
        return self

    # -- persistence -------------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> Path:
        """Save to a folder: ``pyimgano-model.json`` + the state arrays in npz; never pickle.

        The folder is written beside its target and swapped in only when complete
        (:func:`pyimgano.atomic.replacing_dir`): a failure (a full disk) leaves an older
        model there as it was. The whole folder is replaced, so it must be new, empty, or a
        saved model (else :class:`~pyimgano.errors.OutputExists`). Raises :class:`OutputError` when it
        cannot be written.
        """
        from pyimgano.atomic import replacing_dir

        self._check_fitted()
        directory = Path(directory)
        target = directory.resolve() if directory.is_symlink() else directory  # a link keeps pointing at the model
        check_model_output(target)
        state = {k: np.asarray(v) for k, v in self._get_state().items()}
        check_saved_state(self, state)
        try:
            config = ModelFile(
                format=MODEL_FORMAT,
                detector=self.component,
                plugin=self.plugin,
                plugin_version=_plugin_version(self.plugin),
                params=_jsonable_params(self),
                threshold=None if self.threshold_ is None else finite_threshold(self.threshold_, "threshold_"),
                state_file=MODEL_STATE_FILE,
            )
            text = json.dumps(config.model_dump(mode="json"), indent=2, allow_nan=False) + "\n"
        except ValidationError as exc:
            problem = validation_problems(exc, top="model file")
            raise InvalidParams(f"{self._describe()} cannot be saved: {problem}") from None
        except ValueError as exc:  # a threshold or parameter JSON cannot hold (NaN, infinity)
            raise InvalidParams(f"{self._describe()} cannot be saved: {exc}") from None
        with replacing_dir(target) as tmp:  # a full disk: OutputError naming the folder
            np.savez(tmp / MODEL_STATE_FILE, **state)
            self._save_files(tmp)
            (tmp / MODEL_CONFIG_FILE).write_text(text, encoding="utf-8")
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Detector:
        """Load a saved detector through the registry (see :func:`load_detector`).

        Called on a subclass, the model must have been saved by that kind of detector.
        """
        detector = load_detector(directory)
        if not isinstance(detector, cls):
            raise ModelLoadError(f"{directory}: saved by detector {detector.component} "
                                 f"({type(detector).__name__}), not a {cls.__name__}")
        return detector

    def _check_fitted(self) -> None:
        if not self.is_fitted_:
            raise NotFittedError(f"{self.component} is not fitted; call fit(normal_images) first")

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


def fitted_attributes(detector: Any) -> dict[str, Any]:
    """A detector's small fitted attributes (``input_size_``, ``coreset_ratio_``...): what fit chose."""
    out: dict[str, Any] = {}
    for name, value in vars(detector).items():
        if name.startswith("_") or not name.endswith("_") or name == "threshold_":
            continue
        if isinstance(value, (bool, int, float, str)):
            out[name] = value
        elif isinstance(value, tuple) and len(value) <= 4 and all(isinstance(v, int) for v in value):
            out[name] = list(value)
    return out


def _install_params(cls: type[Detector], model: type[BaseModel]) -> None:
    """Give ``cls`` one :class:`Param` per field of ``model``, and ``model``'s keyword signature."""
    import inspect

    for name in model.model_fields:
        for klass in cls.__mro__:
            if name in klass.__dict__ and not isinstance(klass.__dict__[name], Param):
                raise TypeError(
                    f"{cls.__name__}: parameter {name!r} of {model.__name__} would hide "
                    f"{klass.__name__}.{name}; rename the parameter or the attribute"
                )
        setattr(cls, name, Param(name))
    cls.__signature__ = inspect.Signature([
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=inspect.Parameter.empty if field.is_required() else field.get_default(),
            annotation=field.annotation,
        )
        for name, field in model.model_fields.items()
    ])


def _validated(model: type[BaseModel], params: dict[str, Any], who: str) -> BaseModel:
    """``params`` validated into ``model``; :class:`InvalidParams` naming each bad parameter."""

    try:
        return model.model_validate(params)
    except ValidationError as exc:
        problems = validation_problems(exc, model)
        raise InvalidParams(f"invalid parameters for {who}: {problems}") from None


def _jsonable_params(detector: Detector) -> dict[str, Any]:
    from pyimgano.plugins import get_registry

    if detector.config is not None:
        return detector.config.model_dump(mode="json")
    params = detector.get_params()
    try:
        spec, _ = get_registry().resolve("detector", detector.component)
        return spec.params.model_validate(params).model_dump(mode="json")
    except Exception:  # noqa: BLE001 - not from the registry: best effort
        return json.loads(json.dumps(params, default=str))


def _plugin_version(plugin: str | None) -> str | None:
    if plugin is None:
        return None
    from pyimgano.plugins import get_registry

    try:
        return get_registry().plugin(plugin).version
    except Exception:  # noqa: BLE001
        return None


def _compatible(saved: str | None, installed: str | None) -> bool:
    if not saved or not installed:
        return True
    s, i = saved.split("."), installed.split(".")
    if s[0] != i[0]:
        return False
    return not (s[0] == "0" and len(s) > 1 and len(i) > 1 and s[1] != i[1])


# the files of a model folder saved before folders recorded their contents (atomic.CONTENTS_FILE):
# the model, pipeline, training and export files, the state, a graph and its weights, safetensors
_SAVED_SUFFIXES = frozenset({".json", ".npz", ".onnx", ".xml", ".bin", ".safetensors"})


def _older_model_file(name: str) -> bool:
    return "/" not in name and Path(name).suffix in _SAVED_SUFFIXES


def check_model_output(directory: str | Path) -> None:
    """Refuse (:class:`~pyimgano.errors.OutputExists`) a model output folder that is neither new,
    empty, nor a saved model holding only its own files (:func:`pyimgano.atomic.check_output_dir`)."""
    from pyimgano.atomic import check_output_dir

    check_output_dir(directory, MODEL_CONFIG_FILE, legacy=_older_model_file)


def load_detector(directory: str | os.PathLike) -> Detector:
    """Load a detector saved with ``save``; the folder names the detector and plugin.

    Everything is checked before the detector is built or sees its state: the model file
    against :class:`pyimgano.modelfile.ModelFile`, the plugin and its version, the
    parameters, the state file's place (inside the folder) and size
    (:mod:`pyimgano.limits`), and the state against the detector's ``state_arrays``. Any
    problem is one :class:`ModelLoadError` naming the file.
    """
    from pyimgano.plugins import get_registry

    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ModelLoadError(f"{directory}: is a file; a saved model is a folder (with {MODEL_CONFIG_FILE})")
    model = read_model_file(directory)
    config_path = directory / MODEL_CONFIG_FILE
    name, plugin, version = model.detector, model.plugin_name, model.plugin_version
    registry = get_registry()
    try:
        record = registry.plugin(plugin)
    except Exception:  # noqa: BLE001
        raise ModelLoadError(
            f"{directory}: saved by detector {name!r} of plugin {plugin!r} (version {version}), which is not installed"
        ) from None
    if record.status != "ok":
        raise ModelLoadError(f"{directory}: needs plugin {plugin!r}, which is {record.status}: {record.error}")
    if not _compatible(version, record.version):
        raise ModelLoadError(f"{directory}: saved with {plugin} {version}, incompatible with the installed {record.version}")
    try:
        spec, _ = registry.resolve("detector", name)
    except PyimganoError:
        raise ModelLoadError(
            f"{directory}: saved by detector {name!r}, which {record.provider()} does not have "
            f"(its detectors: {', '.join(record.names('detector')) or 'none'})"
        ) from None
    _check_saved_params(config_path, name, spec.params, model.params)
    path = state_path(directory, model)
    state = read_state(path)  # limits and format first: nothing heavy is imported for a bad file
    from pyimgano.factories import create_detector

    try:
        detector = create_detector(name, **model.params)
    except InvalidParams as exc:
        raise ModelLoadError(f"{config_path}: {exc}") from None
    try:
        check_loaded_state(detector, state, path)
        detector._set_state(state)
        detector._load_files(directory)
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - a plugin's own checks raise anything
        raise ModelLoadError(f"{directory}: state does not fit {name}: {type(exc).__name__}: {exc}") from None
    detector.is_fitted_ = True
    detector.threshold_ = model.threshold
    return detector


def _check_saved_params(config_path: Path, name: str, params_model: type[BaseModel], params: dict[str, Any]) -> None:
    """Parameters the detector does not have mean the file belongs to another detector: say so once."""
    if params_model.model_config.get("extra") != "forbid":
        return
    unknown = [key for key in params if key not in params_model.model_fields]
    if unknown:
        valid = ", ".join(params_model.model_fields) or "none"
        raise ModelLoadError(
            f"{config_path}: parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
            f"{'are' if len(unknown) > 1 else 'is'} not of detector {name} (its parameters: {valid}): "
            "was this model saved by another detector?"
        )
