"""Registration module of the fake plugin the benchmark tests install (light imports only)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pyimgano import DatasetSpec, DetectorCapabilities, DetectorSpec, NoParams, hookimpl


class MeanParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sigma: float = Field(1.0, ge=0.0)
    seed: int = 0


class FragileParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fail_height: int = Field(0, description="fit fails on images of this height")
    how: Literal["raise", "exit"] = "raise"


class SleepyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sleep_s: float = Field(0.0, ge=0.0, description="fit sleeps this long on categories other than alpha")


class LearningParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sigma: float = Field(1.0, ge=0.0)


class BadParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["shape", "nan", "count"] = "shape"


@hookimpl
def pyimgano_register_detectors() -> list[DetectorSpec]:
    return [
        DetectorSpec(name="mean", summary="Distance to the mean training image",
                     factory="benchtest_impl:MeanDetector", params=MeanParams),
        DetectorSpec(name="fragile", summary="Fails to fit images of one height",
                     factory="benchtest_impl:FragileDetector", params=FragileParams),
        DetectorSpec(name="bad", summary="Breaks the output contracts",
                     factory="benchtest_impl:BadDetector", params=BadParams),
        DetectorSpec(name="sleepy", summary="Fits slowly",
                     factory="benchtest_impl:SleepyDetector", params=SleepyParams),
        DetectorSpec(name="nomaps", summary="Scores without anomaly maps",
                     factory="benchtest_impl:NoMapsDetector", params=NoParams,
                     capabilities=DetectorCapabilities(pixel_maps=False)),
        DetectorSpec(name="learning", summary="Learns the colour of labelled anomalies",
                     factory="benchtest_impl:LearningDetector", params=LearningParams,
                     capabilities=DetectorCapabilities(learns_from_anomalies=True, needs_anomaly_masks=True)),
    ]


@hookimpl
def pyimgano_register_datasets() -> list[DatasetSpec]:
    return [
        DatasetSpec(name="toy", summary="A tiny MVTec-layout folder", factory="benchtest_impl:ToyDataset",
                    params=NoParams),
        DatasetSpec(name="toynomasks", summary="The tiny folder, labels only", factory="benchtest_impl:ToyNoMasksDataset",
                    params=NoParams),
    ]
