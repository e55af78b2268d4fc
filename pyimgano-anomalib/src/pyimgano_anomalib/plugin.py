"""Registration module (light: imports pydantic and pyimgano only, never torch or anomalib).

Each model of :mod:`pyimgano_anomalib.catalog` is registered as ``anomalib:<name>`` with
its params model, its factory and its capabilities; the adapter is imported only when a
detector is created. The ``anomalib-files`` command prints the files models would download.
"""

from __future__ import annotations

from pyimgano import CommandSpec, DetectorCapabilities, DetectorSpec, hookimpl
from pyimgano.specs import EXPORT_FORMATS
from pyimgano_anomalib.catalog import IMAGE_ONLY_MODELS, MAP_MODELS, MODEL_NAMES, MODELS, ModelEntry

__all__ = ["IMAGE_ONLY_MODELS", "MAP_MODELS", "MODEL_NAMES", "pyimgano_register_commands", "pyimgano_register_detectors"]

_EXPORT = {"exporter": "pyimgano_anomalib.export:export_onnx", "export_formats": EXPORT_FORMATS}


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
            learns_from_anomalies=entry.learns_from_anomalies,
            needs_anomaly_masks=entry.learns_from_anomalies,
            **(_EXPORT if entry.exportable else {}),
        ),
    )


@hookimpl
def pyimgano_register_detectors() -> list[DetectorSpec]:
    return [_spec(entry) for entry in MODELS]


@hookimpl
def pyimgano_register_commands() -> list[CommandSpec]:
    return [
        CommandSpec(
            name="anomalib-files",
            summary="files anomalib models would download: where to fetch them, where to put them, which parameter",
            factory="pyimgano_anomalib.cli",
        )
    ]
