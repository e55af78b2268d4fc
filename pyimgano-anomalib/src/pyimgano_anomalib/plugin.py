"""Registration module (light: imports pydantic and pyimgano only, never torch or anomalib).

Each model of :mod:`pyimgano_anomalib.catalog` is registered as ``anomalib:<name>`` with
its params model, its factory and its capabilities; the adapter is imported only when a
detector is created.
"""

from __future__ import annotations

from pyimgano import DetectorCapabilities, DetectorSpec, hookimpl
from pyimgano_anomalib.catalog import IMAGE_ONLY_MODELS, MAP_MODELS, MODEL_NAMES, MODELS, ModelEntry

__all__ = ["IMAGE_ONLY_MODELS", "MAP_MODELS", "MODEL_NAMES", "pyimgano_register_detectors"]


def _spec(entry: ModelEntry) -> DetectorSpec:
    return DetectorSpec(
        name=entry.name,
        summary=entry.summary,
        factory=entry.factory,
        params=entry.params,
        capabilities=DetectorCapabilities(
            pixel_maps=entry.maps,
            needs_training_epochs=entry.trains,
            min_train_images=2,
            check_params=entry.check_params,
            known_failures=entry.known_failures,
        ),
    )


@hookimpl
def pyimgano_register_detectors() -> list[DetectorSpec]:
    return [_spec(entry) for entry in MODELS]
