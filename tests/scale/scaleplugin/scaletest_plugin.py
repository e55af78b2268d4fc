"""Registration module of the plugin the scale tests install (light imports only)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from pyimgano import DetectorCapabilities, DetectorSpec, NoParams, hookimpl


class CrashyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    marker: str = Field(description="file whose absence makes fit kill its process (first attempt)")


@hookimpl
def pyimgano_register_detectors() -> list[DetectorSpec]:
    return [
        DetectorSpec(name="crashy", summary="Kills its process on the first fit, then works",
                     factory="scaletest_impl:CrashyDetector", params=CrashyParams),
        DetectorSpec(name="hungry", summary="Asks for 1.5 CPUs and 64 MiB",
                     factory="scaletest_impl:MeanDetector", params=NoParams,
                     capabilities=DetectorCapabilities(cpus=1.5, memory_mb=64)),
        DetectorSpec(name="gpu", summary="Asks for one GPU",
                     factory="scaletest_impl:MeanDetector", params=NoParams,
                     capabilities=DetectorCapabilities(gpus=1, uses_gpu=True)),
    ]
