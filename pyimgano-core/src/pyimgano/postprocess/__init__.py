"""Anomaly-map post-processing: registered steps, a ``PostProcessing`` chain built from plain
config, and ``tune_postprocessing``, the opt-in few-shot search over step parameters.

Normalisation statistics come only from maps passed to ``fit`` (training or calibration
images), never from the maps being transformed, unless a step is told ``per_image=True``.
See docs/postprocess.md. Heavy modules load on first access.
"""

from __future__ import annotations

from pyimgano._lazy import lazy_exports

_LAZY = {
    "PostProcessing": "pyimgano.postprocess.chain",
    "TuneResult": "pyimgano.postprocess.chain",
    "tune_postprocessing": "pyimgano.postprocess.chain",
    "Step": "pyimgano.postprocess.steps",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports("pyimgano.postprocess", _LAZY, globals())
