"""Registration module: light, imports only pydantic and pyimgano."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from pyimgano import DetectorCapabilities, DetectorSpec, hookimpl


class MADParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image_size: int = Field(64, ge=8, le=1024, description="images are resized to this square size")
    sigma: float = Field(2.0, ge=0.0, description="Gaussian smoothing of the difference map, pixels")


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
