"""Models whose catalog entry says everything: the adapter builds them from the entry
(anomalib class, parameters passed through, backbone), so each is only a name, and the
classes are made here from the catalog: every entry whose factory names this module
(``pyimgano_anomalib.passthrough:PatchcoreDetector``) gets that class. A new such model is
one catalog entry."""

from __future__ import annotations

from pyimgano_anomalib.adapter import AnomalibDetector
from pyimgano_anomalib.catalog import MODELS, ModelEntry


def _detector_class(entry: ModelEntry) -> type[AnomalibDetector]:
    name = entry.factory.partition(":")[2]
    return type(name, (AnomalibDetector,), {
        "model_name": entry.name, "__module__": __name__, "__qualname__": name,
        "__doc__": f"anomalib:{entry.name}, built by the adapter from its catalog entry.",
    })


_CLASSES = [_detector_class(e) for e in MODELS if e.factory.partition(":")[0] == __name__]
globals().update({cls.__name__: cls for cls in _CLASSES})
__all__ = [cls.__name__ for cls in _CLASSES]
