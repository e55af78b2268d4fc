"""The settings of an inspection pipeline, declared once.

:class:`PipelineSettings` is the one place where a pipeline setting (post-processing, the
image and pixel threshold specs, the validation share, where calibration scores come from) has its type, default, bounds and
description. Everything else derives from it:

- :class:`pyimgano.Pipeline` takes its fields as keyword arguments;
- a ``bench.toml`` holds them at the top level (:class:`~pyimgano.benchmark.config.BenchmarkConfig`
  is a ``PipelineSettings``) and in each ``[[detectors]]`` entry (:data:`PipelineOverrides`:
  the same fields, absent meaning "the benchmark's");
- a benchmark job carries them resolved for its detector (:class:`ResolvedSettings`, which
  :class:`~pyimgano.benchmark.config.JobSpec` extends), and results.json records them
  (:meth:`ResolvedSettings.record`);
- ``pyimgano fit`` and ``pyimgano benchmark`` build their options from the fields
  (:func:`pyimgano.cli.options.add_model_options`), help texts and defaults included.

A new setting is one field here (``maps_only`` in its ``json_schema_extra`` when it only
applies to detectors with anomaly maps) and, where it changes calibration, its use in
:mod:`pyimgano.pipeline`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from pyimgano.bounds import Finite
from pyimgano.calibration import CALIBRATION_SOURCES, DEFAULT_CALIBRATION, parse_calibration
from pyimgano.errors import InvalidParams, validation_problems
from pyimgano.thresholds import DEFAULT_IMAGE_THRESHOLD, DEFAULT_PIXEL_THRESHOLD, make_strategy, spec_of

DEFAULT = "default"
NO_MASKS = "none"  # the pixel threshold written on a command line or in bench.toml: no masks
# json_schema_extra of a field: "maps_only", a setting for detectors with anomaly maps only;
# "metavar", how the command line names its value
SPEC = {"metavar": "SPEC"}


class PipelineSettings(BaseModel):
    """Post-processing, thresholds and the validation split of an inspection pipeline
    (docs/pipeline.md). Types, defaults, bounds and help texts live here only."""

    model_config = ConfigDict(extra="forbid")

    postprocess: list[dict[str, Any]] | str | None = Field(
        DEFAULT, json_schema_extra={"maps_only": True, "metavar": "CONFIG"},
        description="post-processing of the anomaly maps: 'default' (the detector's declared default), 'none' "
                    "(raw maps), a list of steps, or a JSON text or file holding one (docs/postprocess.md)")
    image_threshold: str | Finite | dict[str, Any] = Field(
        DEFAULT_IMAGE_THRESHOLD, json_schema_extra=SPEC,
        description="image threshold: fpr:ALPHA (a false-reject rate of at most ALPHA on good parts; "
                    "fpr:ALPHA:strict refuses too few calibration scores), quantile:Q of the normal calibration "
                    "scores, fixed:V, or f1 (labelled validation images only)")
    pixel_threshold: str | Finite | dict[str, Any] | None = Field(
        DEFAULT, json_schema_extra={"maps_only": True, **SPEC},
        description=f"pixel threshold on the post-processed maps: quantile:Q of the normal validation pixels "
                    f"('default': {DEFAULT_PIXEL_THRESHOLD} for a detector with maps), fixed:V, f1, or "
                    f"{NO_MASKS} (no masks)")
    val_fraction: float = Field(
        0.1, ge=0, lt=1,
        description="without validation images and with holdout calibration: the share of the training images "
                    "held out (seeded) to fit the post-processing statistics and both thresholds, never the "
                    "detector")
    calibration: str = Field(
        DEFAULT_CALIBRATION, json_schema_extra={"metavar": "SOURCE"},
        description="without validation images, where the normal calibration scores and maps come from: "
                    + "; ".join(f"{name}: {what}" for name, what in CALIBRATION_SOURCES.items()))

    @field_validator("image_threshold", mode="before")
    @classmethod
    def _a_strategy(cls, value: Any) -> Any:
        if value is None:
            raise ValueError(f"give a strategy, e.g. {cls.default('image_threshold')!r}")
        return value

    @field_validator("calibration")
    @classmethod
    def _a_source(cls, value: str) -> str:
        try:
            parse_calibration(value)
        except InvalidParams as exc:  # the setting and value lead the line already
            raise ValueError(str(exc).removeprefix(f"calibration {value!r}: ")) from None
        return value.strip().lower()

    @field_validator("pixel_threshold", mode="before")
    @classmethod
    def _no_masks(cls, value: Any) -> Any:
        return None if isinstance(value, str) and value.strip().lower() == NO_MASKS else value

    @classmethod
    def default(cls, name: str) -> Any:
        """The default of setting ``name`` (the one written in its field)."""
        return cls.model_fields[name].get_default(call_default_factory=True)

    @classmethod
    def maps_only(cls, name: str) -> bool:
        """Whether setting ``name`` applies to detectors with anomaly maps only."""
        extra = cls.model_fields[name].json_schema_extra
        return bool(isinstance(extra, dict) and extra.get("maps_only"))

    @classmethod
    def of(cls, settings: Any = None, **fields: Any) -> PipelineSettings:
        """Settings from None (the defaults), settings or a dict, with ``fields`` on top; a
        bad value is one :class:`InvalidParams` line naming the setting and the value."""
        base = settings.model_dump() if isinstance(settings, PipelineSettings) else dict(settings or {})
        data = {name: value for name, value in base.items() if name in cls.model_fields} | fields
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise InvalidParams(validation_problems(exc, cls, values=data)) from None

    def pipeline_settings(self) -> PipelineSettings:
        """These settings alone (a subclass, such as a benchmark's configuration, drops the rest)."""
        return PipelineSettings.model_validate({name: getattr(self, name) for name in PipelineSettings.model_fields})

    def resolve(self, traits: Any) -> ResolvedSettings:
        """The settings made concrete for a detector (:class:`~pyimgano.pipeline.DetectorTraits`):
        the step list checked against the registry, both strategies parsed. A setting the
        detector cannot use (steps or a pixel threshold without maps) is one clear line."""
        postprocess = self.postprocess
        if isinstance(postprocess, str):
            postprocess = parse_postprocess(postprocess, "postprocess")
        steps = postprocess_config(postprocess, traits)
        image = make_strategy(self.image_threshold, "image_threshold")
        pixel = pixel_strategy(self.pixel_threshold, traits)
        if parse_calibration(self.calibration)[0] == "oof" and not traits.out_of_fold:
            raise InvalidParams(f"calibration 'oof': detector {traits.name} has no out-of-fold scoring "
                                "(supports_out_of_fold); use kfold (K-fold cross-fitting) or holdout")
        return ResolvedSettings(postprocess=steps, image_threshold=image.to_dict(),
                                pixel_threshold=None if pixel is None else pixel.to_dict(),
                                val_fraction=self.val_fraction, calibration=self.calibration)


def field_from(model: type[BaseModel], name: str, **changes: Any) -> Any:
    """A ``Field`` with the default, bounds and description of ``model``'s field ``name``
    (``changes`` on top), for a model that carries the same setting under another name."""
    info = model.model_fields[name]
    kwargs: dict[str, Any] = {"description": info.description}
    if info.default_factory is not None:
        kwargs["default_factory"] = info.default_factory
    else:
        kwargs["default"] = info.default
    for item in info.metadata:  # bounds: Ge, Lt...
        kwargs.update({key: getattr(item, key) for key in ("gt", "ge", "lt", "le") if hasattr(item, key)})
    if "default" in changes:
        kwargs.pop("default_factory", None)
    return Field(**(kwargs | changes))


def _optional(name: str, field: Any) -> tuple[Any, Any]:
    """A setting as a detector entry has it: optional, absent meaning the benchmark's."""
    return (field.annotation | None,
            field_from(PipelineSettings, name, default=None,
                       description=f"{field.description}; absent: the benchmark's setting"))


PipelineOverrides: type[BaseModel] = create_model(
    "PipelineOverrides",
    __config__=ConfigDict(extra="forbid"),
    __doc__="Every pipeline setting, optional: a bench.toml detector entry's own settings (absent: the "
            "benchmark's; 'none' as the pixel threshold: no masks).",
    **{name: _optional(name, field) for name, field in PipelineSettings.model_fields.items()},
)


class ResolvedSettings(BaseModel):
    """:class:`PipelineSettings` resolved for one detector: the concrete step list and
    threshold strategies (what a benchmark job carries). The defaults are those of a
    detector that declares nothing."""

    model_config = ConfigDict(extra="forbid")

    postprocess: list[dict[str, Any]] = Field(default_factory=list, description="post-processing steps (resolved)")
    image_threshold: dict[str, Any] = Field(
        default_factory=lambda: make_strategy(PipelineSettings.default("image_threshold")).to_dict(),
        description="image threshold strategy")
    pixel_threshold: dict[str, Any] | None = Field(None, description="pixel threshold strategy; None: no masks")
    val_fraction: float = field_from(PipelineSettings, "val_fraction")
    calibration: str = Field(PipelineSettings.default("calibration"),
                             description=PipelineSettings.model_fields["calibration"].description)

    def resolved_settings(self) -> ResolvedSettings:
        """These settings alone (a job spec drops its other fields)."""
        return ResolvedSettings.model_validate({name: getattr(self, name) for name in ResolvedSettings.model_fields})

    def record(self) -> dict[str, Any]:
        """results.json's ``pipeline`` entry: the steps and the strategies as spec strings."""
        pixel = None if self.pixel_threshold is None else make_strategy(self.pixel_threshold)
        return {"postprocess": list(self.postprocess), "image_threshold": make_strategy(self.image_threshold).spec(),
                "pixel_threshold": spec_of(pixel), "val_fraction": self.val_fraction,
                "calibration": self.calibration}


def parse_postprocess(text: str, what: str = "--postprocess") -> Any:
    """A post-processing config from the command line or a config file: ``default``, ``none``
    (raw maps), a JSON list of steps, or the path of a JSON file holding one."""
    from pyimgano.userfiles import read_text

    value = text.strip()
    if value.lower() == DEFAULT:
        return DEFAULT
    if value.lower() in (NO_MASKS, "raw"):
        return []
    path = Path(value).expanduser()
    if value[:1] not in "[{" and path.is_file():
        value = read_text(path, InvalidParams)
        what = f"{what} {path}"
    try:
        return json.loads(value)
    except ValueError as exc:
        raise InvalidParams(
            f"{what} {text!r}: not a JSON list of steps nor a file holding one ({exc}); e.g. "
            '\'[{"name": "gaussian", "sigma": 2}, {"name": "standardize"}]\', default or none'
        ) from None


# -- what a detector declares, and the settings resolved for it ------------------------------------------------------------------
@dataclass(frozen=True)
class DetectorTraits:
    """What the pipeline needs to know about a detector before fitting it."""

    name: str
    pixel_maps: bool
    min_train_images: int = 1
    default_postprocess: tuple[dict[str, Any], ...] = ()
    learns_from_anomalies: bool = False
    needs_anomaly_masks: bool = False
    out_of_fold: bool = False  # Detector.fit_out_of_fold (capability out_of_fold)

    @classmethod
    def of_capabilities(cls, name: str, caps: Any) -> DetectorTraits:
        """The traits a :class:`~pyimgano.DetectorCapabilities` declares."""
        return cls(name, bool(caps.pixel_maps), caps.min_train_images, tuple(caps.default_postprocess),
                   bool(caps.learns_from_anomalies), bool(caps.needs_anomaly_masks), bool(caps.out_of_fold))

    @classmethod
    def of_spec(cls, name: str, spec: Any) -> DetectorTraits:
        """The traits a registered :class:`~pyimgano.DetectorSpec` declares."""
        return cls.of_capabilities(name, spec.capabilities)


def detector_traits(detector: Any) -> DetectorTraits:
    """The traits of a detector object: its ``capabilities`` (a :class:`~pyimgano.Detector`'s are
    its registered spec's, docs/plugins.md); for a duck-typed detector, its registered spec's."""
    from pyimgano.detector import Detector, capabilities_of

    name = getattr(detector, "component", None) or type(detector).__name__
    caps = detector.capabilities if isinstance(detector, Detector) else capabilities_of(type(detector), name)
    return DetectorTraits.of_capabilities(str(name), caps)


# -- configuration ------------------------------------------------------------------------------
def postprocess_config(postprocess: Any, traits: DetectorTraits) -> list[dict[str, Any]]:
    """The concrete, validated step list: ``"default"`` is the detector's declared default,
    ``None``/``[]`` the raw maps; steps are checked against the registry (unknown names
    and bad parameters are one-line errors). Steps for a detector without maps are an error."""
    from pyimgano.postprocess.chain import PostProcessing

    explicit = not (isinstance(postprocess, str) and postprocess == DEFAULT)
    if not explicit:
        config: Any = [dict(step) for step in traits.default_postprocess] if traits.pixel_maps else []
    else:
        config = [] if postprocess is None else postprocess
    chain = PostProcessing.from_config(config)
    if chain.steps and not traits.pixel_maps:
        raise InvalidParams(
            f"postprocess {config!r}: detector {traits.name} gives no anomaly maps to post-process; "
            "leave postprocess unset"
        )
    return chain.to_config()


def pixel_strategy(pixel_threshold: Any, traits: DetectorTraits) -> Any:
    """The pixel threshold strategy: ``"default"`` is :data:`DEFAULT_PIXEL_THRESHOLD` for a
    detector with maps and none without; a strategy for a detector without maps is an error."""
    if isinstance(pixel_threshold, str) and pixel_threshold == DEFAULT:
        return make_strategy(DEFAULT_PIXEL_THRESHOLD, "pixel_threshold") if traits.pixel_maps else None
    if pixel_threshold is None:
        return None
    strategy = make_strategy(pixel_threshold, "pixel_threshold")
    if not traits.pixel_maps:
        raise InvalidParams(
            f"pixel_threshold {pixel_threshold!r}: detector {traits.name} gives no anomaly maps, so there "
            "are no pixels to threshold; leave pixel_threshold unset"
        )
    return strategy
