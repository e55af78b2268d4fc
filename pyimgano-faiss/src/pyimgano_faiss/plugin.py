"""Registration module (light: imports pydantic and pyimgano only, never torch)."""

from __future__ import annotations

from pyimgano import DetectorSpec, hookimpl


@hookimpl
def pyimgano_register_detectors() -> list[DetectorSpec]:
    return []
