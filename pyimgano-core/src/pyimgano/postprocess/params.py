"""Params models of the built-in post-processing steps (pydantic only: cheap to import)."""

from __future__ import annotations

from typing import Annotated, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pyimgano.bounds import Finite

# Bounds of the steps' sizes, in pixels of the maps, shared with the few-shot search
# (pyimgano.pipeline.fewshot.SearchSpace). Maps are at the data set's resolution (a few
# thousand pixels at most): a kernel, element or area beyond these covers any map whole,
# which is pointless, and costs time in proportion to its size.
Sigma = Annotated[float, Field(gt=0.0, le=512.0)]
"""A Gaussian kernel's standard deviation, pixels (at most 512: wider than any map)."""
Truncate = Annotated[float, Field(gt=0.0, le=10.0)]
"""A Gaussian kernel's radius in standard deviations (beyond 10 the weights are below 1e-21)."""
ElementSize = Annotated[int, Field(ge=1, le=1025)]
"""A structuring element's width, pixels."""
Area = Annotated[int, Field(ge=1, le=100_000_000)]
"""A region's area, pixels (100 megapixels: more than any image pyimgano reads by default)."""


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class MinMaxParams(_Params):
    per_image: bool = Field(
        False,
        description="scale each map by its own min and max instead of the min and max of the "
        "training/calibration maps given to fit()",
    )
    clip: bool = Field(False, description="clip the result to [0, 1]")


class PercentileParams(_Params):
    low: float = Field(1.0, ge=0.0, lt=100.0, description="percentile mapped to 0")
    high: float = Field(99.0, gt=0.0, le=100.0, description="percentile mapped to 1")
    per_image: bool = Field(
        False, description="use each map's own percentiles instead of those of the maps given to fit()"
    )
    clip: bool = Field(True, description="clip the result to [0, 1]")

    @model_validator(mode="after")
    def _ordered(self) -> PercentileParams:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self


class StandardizeParams(_Params):
    robust: bool = Field(
        False, description="median and 1.4826 x MAD instead of mean and standard deviation"
    )


class GaussianParams(_Params):
    sigma: Sigma = Field(4.0, description="standard deviation of the kernel, in pixels")
    truncate: Truncate = Field(4.0, description="kernel radius in standard deviations")


class MorphologyParams(_Params):
    size: ElementSize = Field(3, description="width of the structuring element, in pixels")
    shape: Literal["disk", "square"] = Field("disk", description="shape of the structuring element")


class RemoveSmallParams(_Params):
    min_area: Area = Field(16, description="components with fewer pixels than this are removed")
    threshold: Finite = Field(0.5, description="pixels scoring above this form the components")
    connectivity: Literal[4, 8] = Field(8, description="4- or 8-connected components")
    fill: Finite = Field(0.0, description="value written into removed components")


class ThresholdParams(_Params):
    value: Finite = Field(0.5, description="pixels scoring above this become 1, the rest 0")


class BuiltinStep(NamedTuple):
    """A built-in step as registered and as built: its name, its class in
    :mod:`pyimgano.postprocess.steps`, its params model, whether it fits statistics, its summary."""

    name: str
    class_name: str
    params: type[BaseModel]
    fits_statistics: bool
    summary: str


# The one list of the core's post-processing steps: _builtin.py registers these, and
# steps.py gives each class its name and params model from here. A new step is its params
# model above, its class in steps.py and one row here.
BUILTIN_STEPS = (
    BuiltinStep("minmax", "MinMax", MinMaxParams, True, "Min-max normalisation by training/calibration maps (or per image)"),
    BuiltinStep("percentile", "Percentile", PercentileParams, True,
                "Robust normalisation: low/high percentiles of training/calibration maps (or per image) to 0/1"),
    BuiltinStep("standardize", "Standardize", StandardizeParams, True,
                "z-score by mean/std (or median/MAD) of training/calibration maps"),
    BuiltinStep("gaussian", "Gaussian", GaussianParams, False, "Gaussian smoothing of each map"),
    BuiltinStep("open", "Open", MorphologyParams, False, "Grey-level morphological opening"),
    BuiltinStep("close", "Close", MorphologyParams, False, "Grey-level morphological closing"),
    BuiltinStep("remove_small", "RemoveSmall", RemoveSmallParams, False, "Remove connected components smaller than an area"),
    BuiltinStep("threshold", "Threshold", ThresholdParams, False, "Binary mask of scores above a value"),
)
