"""Registration module: light, imports only pydantic and pyimgano."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from pyimgano import DetectorCapabilities, DetectorSpec, MetricSpec, hookimpl


class MADParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image_size: int = Field(64, ge=8, le=1024, description="images are resized to this square size")
    sigma: float = Field(2.0, ge=0.0, description="Gaussian smoothing of the difference map, pixels")


class RecallParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_fpr: float = Field(0.0, ge=0.0, le=1.0, description="largest fraction of normal images flagged")


@hookimpl
def pyimgano_register_detectors() -> list[DetectorSpec]:
    return [
        DetectorSpec(
            name="mad",
            summary="Mean absolute difference from the mean training image",
            factory="pyimgano_example.detector:MeanAbsDiff",
            params=MADParams,
            capabilities=DetectorCapabilities(pixel_maps=True),
        )
    ]


@hookimpl
def pyimgano_register_metrics() -> list[MetricSpec]:
    return [
        MetricSpec(
            name="recall_at_fpr",
            summary="Fraction of defective images caught while flagging at most max_fpr of the good ones",
            factory="pyimgano_example.metrics:recall_at_fpr",
            params=RecallParams,
            level="image",
            title="recall@FPR{max_fpr:g}",
        )
    ]
