"""``pyimgano-pipeline.json`` read back: every field with the bounds its meaning gives.

A pipeline folder may come from anywhere, like a model folder (:mod:`pyimgano.modelfile`):
:class:`PipelineFile` checks each field before anything is built from it, the file's
detector must be the model file's, and the fitted statistics of each post-processing step
are checked by the step itself (:meth:`pyimgano.postprocess.steps.Step.checked_state`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pyimgano.calibration import parse_calibration
from pyimgano.pipeline.settings import PipelineSettings, field_from

MAX_STEPS = 64  # post-processing steps in a saved chain: far more than any chain uses
MAX_SIDE = 1 << 20  # an image side in the calibration record (the image limit bounds the real ones)


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False, allow_inf_nan=False)


class SavedThreshold(BaseModel):
    """A threshold strategy (checked by :func:`pyimgano.thresholds.make_strategy`) with its fitted value."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    value: float = Field(description="the fitted threshold")


class SavedPromise(_Record):
    target: float | None = Field(None, ge=0, le=1, description="the false-reject rate asked for")
    n: int = Field(ge=0, description="normal calibration scores")
    exceed: int = Field(ge=0, description="of them above the threshold")
    upper: float | None = Field(None, ge=0, le=1, description="upper bound on the false-reject rate")
    source: str
    method: Literal["conformal", "tail"] | None = None

    @model_validator(mode="after")
    def _exceed_of_n(self) -> SavedPromise:
        if self.exceed > self.n:
            raise ValueError(f"exceed {self.exceed} is more than the {self.n} scores (n)")
        return self


class SavedCalibration(_Record):
    n_normal: int = Field(0, ge=0)
    n_anomalous: int = Field(0, ge=0)
    source: str | None = None
    heatmap_range: tuple[float, float] | None = Field(None, description="heatmap colours: (low, high), low < high")
    image_promise: SavedPromise | None = None
    notes: list[str] = Field(default_factory=list)
    normal_scores: list[float] = Field(default_factory=list, description="sorted normal calibration scores")
    image_size: tuple[int, int] | None = None
    legacy: bool = False

    @field_validator("heatmap_range")
    @classmethod
    def _a_range(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not value[0] < value[1]:
            raise ValueError(f"low {value[0]!r} must be below high {value[1]!r}")
        return value

    @field_validator("normal_scores")
    @classmethod
    def _sorted(cls, value: list[float]) -> list[float]:
        if any(b < a for a, b in zip(value, value[1:])):
            raise ValueError("must be sorted in ascending order (p-values search them)")
        return value

    @field_validator("image_size")
    @classmethod
    def _a_size(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and not all(1 <= side <= MAX_SIDE for side in value):
            raise ValueError(f"sides must be between 1 and {MAX_SIDE}")
        return value


class PipelineFile(_Record):
    """The content of ``pyimgano-pipeline.json`` (format 1), as :meth:`Pipeline.to_dict` writes it."""

    format: Literal[1]
    detector: str = Field(pattern=r"^[^:\s]+(:[^:\s]+)?$", description="the detector, as in pyimgano-model.json")
    postprocess: list[dict[str, Any]] = Field(max_length=MAX_STEPS, description="steps with their statistics")
    image_threshold: SavedThreshold
    pixel_threshold: SavedThreshold | None = None
    n_train: int | None = Field(None, ge=0)
    n_val: int | None = Field(None, ge=0)
    val_fraction: float = field_from(PipelineSettings, "val_fraction", default=0.0)
    seed: int = Field(0, ge=0, lt=2**63)
    calibration_setting: str | None = None
    calibration: SavedCalibration = Field(default_factory=SavedCalibration)
    few_shot: dict[str, Any] | None = None
    versions: dict[str, str] = Field(default_factory=dict)

    @field_validator("calibration_setting")
    @classmethod
    def _a_setting(cls, value: str | None) -> str | None:
        if value is not None:
            parse_calibration(value)
        return value

