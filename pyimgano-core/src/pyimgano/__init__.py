"""pyimgano: visual anomaly detection for industrial inspection, a small core plus plugins.

Users build an inspection pipeline with ``pyimgano.Pipeline`` (a detector, post-processing and
calibrated image and pixel thresholds) and load a saved one with ``pyimgano.load``.
Plugin authors import the hook marker as ``pyimgano.hookimpl`` and the spec classes
(``DetectorSpec``, ``DatasetSpec``, ``MetricSpec``, ``PostprocessorSpec``, ``CommandSpec``)
from here. Everything but the error types and the version loads on first access (pluggy
with ``hookimpl``, pydantic with the specs), so ``import pyimgano`` costs next to nothing
and ``pyimgano --help`` can answer from the cached plugin listing without them.
"""

from __future__ import annotations

from pyimgano._lazy import lazy_exports
from pyimgano.errors import (
    ComponentNotFound,
    ContractViolation,
    DatasetError,
    ExportError,
    ImageLoadError,
    ImageTooLarge,
    InvalidParams,
    MetricError,
    ModelLoadError,
    NameConflict,
    NotFittedError,
    OutputError,
    OutputExists,
    PluginError,
    PyimganoError,
    SavedFileError,
    WeightsError,
)


def _read_version() -> str:
    """The release version: the package's ``VERSION`` file (in a checkout, a link to the repository's
    ``VERSION``, the one place a release number is written; in a wheel, a copy inside the package)."""
    import os

    with open(os.path.join(os.path.dirname(__file__), "VERSION"), encoding="ascii") as handle:
        return handle.read().strip()


__version__ = _read_version()

_LAZY = {
    "hookimpl": "pyimgano.hookspecs",
    "CommandSpec": "pyimgano.specs",
    "DatasetSpec": "pyimgano.specs",
    "DetectorCapabilities": "pyimgano.specs",
    "DetectorSpec": "pyimgano.specs",
    "MetricSpec": "pyimgano.specs",
    "NoParams": "pyimgano.specs",
    "PostprocessorSpec": "pyimgano.specs",
    "Pipeline": "pyimgano.pipeline",
    "PipelineOutput": "pyimgano.pipeline",
    "load": "pyimgano.pipeline",
    "Detector": "pyimgano.detector",
    "load_detector": "pyimgano.detector",
    "create_detector": "pyimgano.factories",
    "load_dataset": "pyimgano.factories",
    "list_detectors": "pyimgano.factories",
    "list_datasets": "pyimgano.factories",
    "list_metrics": "pyimgano.factories",
    "list_postprocessors": "pyimgano.factories",
    "get_metric": "pyimgano.factories",
    "create_postprocessor": "pyimgano.factories",
    "get_registry": "pyimgano.plugins",
    "list_plugins": "pyimgano.plugins",
    "AnomalyMaps": "pyimgano.contracts",
    "ImageScores": "pyimgano.contracts",
    "ImageLabels": "pyimgano.contracts",
    "DatasetSample": "pyimgano.contracts",
    "DatasetInfo": "pyimgano.contracts",
    "SplitCounts": "pyimgano.contracts",
    "load_image": "pyimgano.images",
    "load_images": "pyimgano.images",
    "max_image_pixels": "pyimgano.limits",
    "set_max_image_pixels": "pyimgano.limits",
    "max_state_bytes": "pyimgano.limits",
    "set_max_state_bytes": "pyimgano.limits",
    "StateArray": "pyimgano.modelfile",
}

__all__ = [
    "ComponentNotFound",
    "ContractViolation",
    "DatasetError",
    "ExportError",
    "ImageLoadError",
    "ImageTooLarge",
    "InvalidParams",
    "MetricError",
    "ModelLoadError",
    "NameConflict",
    "NotFittedError",
    "OutputExists",
    "OutputError",
    "PluginError",
    "PyimganoError",
    "SavedFileError",
    "WeightsError",
    *_LAZY,
]

__getattr__, __dir__ = lazy_exports("pyimgano", _LAZY, globals())
