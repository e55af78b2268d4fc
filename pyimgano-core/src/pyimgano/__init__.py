"""pyimgano: visual anomaly detection for industrial inspection, a small core plus plugins.

Plugin authors import the hook marker as ``pyimgano.hookimpl`` and the spec classes
(``DetectorSpec``, ``DatasetSpec``, ``MetricSpec``, ``PostprocessorSpec``, ``CommandSpec``)
from here. Heavy parts (the detector base, the registry functions, contracts) load on first access.
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
    PluginError,
    PyimganoError,
    WeightsError,
)
from pyimgano.hookspecs import hookimpl
from pyimgano.specs import (
    CommandSpec,
    DatasetSpec,
    DetectorCapabilities,
    DetectorSpec,
    MetricSpec,
    NoParams,
    PostprocessorSpec,
)

__version__ = "0.1.0"

_LAZY = {
    "Detector": "pyimgano.detector",
    "load_detector": "pyimgano.detector",
    "create_detector": "pyimgano.registry",
    "load_dataset": "pyimgano.registry",
    "list_detectors": "pyimgano.registry",
    "list_datasets": "pyimgano.registry",
    "list_metrics": "pyimgano.registry",
    "list_postprocessors": "pyimgano.registry",
    "get_metric": "pyimgano.registry",
    "create_postprocessor": "pyimgano.registry",
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
}

__all__ = [
    "CommandSpec",
    "ComponentNotFound",
    "ContractViolation",
    "DatasetError",
    "DatasetSpec",
    "DetectorCapabilities",
    "DetectorSpec",
    "ExportError",
    "ImageLoadError",
    "ImageTooLarge",
    "InvalidParams",
    "MetricError",
    "MetricSpec",
    "ModelLoadError",
    "NameConflict",
    "NoParams",
    "NotFittedError",
    "PluginError",
    "PostprocessorSpec",
    "PyimganoError",
    "WeightsError",
    "hookimpl",
    *_LAZY,
]

__getattr__, __dir__ = lazy_exports("pyimgano", _LAZY, globals())
