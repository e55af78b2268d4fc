"""Registration module of the ``hostile`` test plugin: detectors that crash, hang or misbehave."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pyimgano import DatasetSpec, DetectorSpec, NoParams, hookimpl


class HostileParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["none", "abort", "segfault", "hang", "exit", "interrupt"] = Field("none", description="what fit does")
    on_height: int = Field(0, description="only on images of this height (0: always)")
    marker: str = Field("", description="file where fit writes its process id when it starts")


@hookimpl
def pyimgano_register_detectors() -> list[DetectorSpec]:
    return [
        DetectorSpec(name="crasher", summary="Crashes, hangs or exits in fit on demand",
                     factory="hostile_impl:Crasher", params=HostileParams),
    ]


@hookimpl
def pyimgano_register_datasets() -> list[DatasetSpec]:
    return [
        DatasetSpec(name="rawpil", summary="MVTec layout read with PIL directly (as third-party loaders do)",
                    factory="hostile_impl:RawPilDataset", params=NoParams),
    ]
