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
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ValidationError

from pyimgano.contracts import validate_labels, validate_maps, validate_scores
from pyimgano.errors import InvalidParams, ModelLoadError, NotFittedError
from pyimgano.images import ImageInput, image_shapes, load_image, load_images
from pyimgano.thresholds import make_strategy

MODEL_CONFIG_FILE = "pyimgano-model.json"
MODEL_STATE_FILE = "state.npz"
MODEL_FORMAT = 1


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


class Detector:
    """Base class of anomaly detectors.

    Attributes:
        params_model: the pydantic model of the parameters (class attribute: the class the
            detector's spec names). ``None``: parameters are kept as given, unvalidated.
        config: the validated parameters, an instance of ``params_model``.
        threshold_: score above which ``predict`` says 1 (anomalous); set by
            ``calibrate``, ``set_threshold`` or ``fit(..., calibration=...)``.
        component: the detector's qualified name (``plugin:name``), set by the registry.
    """

    component: str = "detector"
    plugin: str | None = None
    supports_maps: ClassVar[bool] = True
    learns_from_anomalies: ClassVar[bool] = False  # fit(..., anomalies=...) is implemented
    params_model: ClassVar[type[BaseModel] | None] = None
    config: BaseModel | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        model = cls.__dict__.get("params_model")
        if model is not None:
            _install_params(cls, model)

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

    def _get_state(self) -> dict[str, np.ndarray]:
        """Fitted state as named numeric arrays (saved to npz, no pickle)."""
        raise NotImplementedError(f"{type(self).__name__} does not support save()")

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not support load()")

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
        arrays = load_images(images)
        if not arrays:
            raise ValueError(f"{self.component}: fit() needs at least one training image, got an empty set")
        if anomalies is not None:
            from pyimgano.fewshot import load_anomalies

            defects, masks = load_anomalies(anomalies, anomaly_masks, self.component)
            self._fit_with_anomalies(arrays, defects, masks)
        else:
            self._fit(arrays)
        self.is_fitted_ = True
        if calibration is not None:
            self.calibrate(calibration, calibration_labels, strategy=threshold)
        return self

    def score(self, images: ImageInput | Sequence[ImageInput]) -> tuple[np.ndarray, Any]:
        """Scores and maps in one pass, validated against the contracts."""
        self._check_fitted()
        arrays = load_images(images)
        if not arrays:
            return np.zeros(0), np.zeros((0, 0, 0), dtype=np.float32)
        scores, maps = self._score(arrays)
        scores = validate_scores(scores, len(arrays), component=self.component, plugin=self.plugin)
        if maps is not None:
            maps = validate_maps(maps, image_shapes(arrays), component=self.component, plugin=self.plugin)
        return scores, maps

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

    def calibrate(
        self,
        images: ImageInput | Sequence[ImageInput],
        labels: Sequence[int] | None = None,
        strategy: Any = "quantile",
    ) -> float:
        """Set ``threshold_`` from held-out images with a strategy (see :mod:`pyimgano.thresholds`)."""
        scores = self.decision_function(images)
        lab = None if labels is None else validate_labels(labels, len(scores), component="calibration labels")
        self.threshold_ = make_strategy(strategy).compute(scores, lab)
        return self.threshold_

    def set_threshold(self, value: float) -> Detector:
        self.threshold_ = float(value)
        return self

    # -- persistence -------------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> Path:
        """Save to a directory: JSON config + arrays in npz. Never pickle."""
        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = self._get_state()
        np.savez(directory / MODEL_STATE_FILE, **{k: np.asarray(v) for k, v in state.items()})
        self._save_files(directory)
        config = {
            "format": MODEL_FORMAT,
            "detector": self.component,
            "plugin": self.plugin,
            "plugin_version": _plugin_version(self.plugin),
            "params": _jsonable_params(self),
            "threshold": self.threshold_,
            "state_file": MODEL_STATE_FILE,
        }
        (directory / MODEL_CONFIG_FILE).write_text(json.dumps(config, indent=2))
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Detector:
        """Load a saved detector through the registry (see :func:`load_detector`)."""
        return load_detector(directory)

    def _check_fitted(self) -> None:
        if not self.is_fitted_:
            raise NotFittedError(f"{self.component} is not fitted; call fit(normal_images) first")

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


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
    from pyimgano.plugins import _describe_param_error

    try:
        return model.model_validate(params)
    except ValidationError as exc:
        problems = "; ".join(_describe_param_error(err, model) for err in exc.errors())
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


def load_detector(directory: str | os.PathLike) -> Detector:
    """Load a detector saved with ``save``; the directory names the detector and plugin."""
    from pyimgano.plugins import get_registry

    directory = Path(directory)
    config_path = directory / MODEL_CONFIG_FILE
    if not config_path.is_file():
        raise ModelLoadError(f"{directory}: not a saved pyimgano model (no {MODEL_CONFIG_FILE})")
    try:
        config = json.loads(config_path.read_text())
        name = config["detector"]
        params = config.get("params") or {}
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{config_path}: corrupt model config ({exc})") from None
    if config.get("format") != MODEL_FORMAT:
        raise ModelLoadError(f"{config_path}: model format {config.get('format')!r} is not supported")
    registry = get_registry()
    plugin = config.get("plugin") or name.split(":", 1)[0]
    try:
        record = registry.plugin(plugin)
    except Exception:  # noqa: BLE001
        raise ModelLoadError(
            f"{directory}: saved by detector {name!r} of plugin {plugin!r} "
            f"(version {config.get('plugin_version')}), which is not installed"
        ) from None
    if record.status != "ok":
        raise ModelLoadError(f"{directory}: needs plugin {plugin!r}, which is {record.status}: {record.error}")
    if not _compatible(config.get("plugin_version"), record.version):
        raise ModelLoadError(
            f"{directory}: saved with {plugin} {config.get('plugin_version')}, "
            f"incompatible with the installed {record.version}"
        )
    from pyimgano.registry import create_detector

    detector = create_detector(name, **params)
    state_path = directory / config.get("state_file", MODEL_STATE_FILE)
    try:
        with np.load(state_path, allow_pickle=False) as data:
            state = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ModelLoadError(f"{state_path}: unreadable model state ({exc})") from None
    try:
        detector._set_state(state)
        detector._load_files(directory)
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"{directory}: state does not fit {name}: {type(exc).__name__}: {exc}") from None
    detector.is_fitted_ = True
    threshold = config.get("threshold")
    detector.threshold_ = None if threshold is None else float(threshold)
    return detector
