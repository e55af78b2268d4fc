"""Parameters of the runtime detector (light: pydantic only, read by the registration module)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Engine = Literal["auto", "onnxruntime", "openvino"]


class ExportedParams(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    path: str | None = Field(
        None, description="folder written by pyimgano export (not needed when the detector is loaded from that folder)"
    )
    engine: Engine = Field(
        "auto",
        description="inference engine: onnxruntime, openvino, or auto (the graph's own: OpenVINO for model.xml, "
        "else onnxruntime, else OpenVINO when only it is installed)",
    )
    num_threads: int | None = Field(None, ge=1, le=1024, description="engine threads; default: the CPUs this process may use")
    batch_size: int = Field(
        2, ge=1, le=1024,
        description="images per graph run (the export may allow fewer): on a few CPU cores small runs are faster "
        "per image than large ones (docs/deploy.md); raise it on many-core machines",
    )

    @field_validator("path")
    @classmethod
    def _an_export_folder(cls, value: str | None) -> str | None:
        """A wrong folder is refused when the detector is made (before a benchmark starts), not at fit."""
        from pyimgano.runtime.manifest import EXPORT_FILE

        if value is not None and not (Path(value).expanduser() / EXPORT_FILE).is_file():
            raise ValueError(f"{value}: not a folder written by pyimgano export (no {EXPORT_FILE})")
        return value
