"""Registration module of the datasets plugin (light: imports pydantic and pyimgano only)."""

from __future__ import annotations

from pyimgano import DatasetSpec, hookimpl


@hookimpl
def pyimgano_register_datasets() -> list[DatasetSpec]:
    return []
