"""Anomaly-map post-processing: registered steps, a ``Pipeline`` built from plain config,
and ``tune_pipeline``, the opt-in few-shot search over step parameters.

Normalisation statistics come only from maps passed to ``fit`` (training or calibration
images), never from the maps being transformed, unless a step is told ``per_image=True``.
See docs/postprocess.md. Heavy modules load on first access.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "Pipeline": "pyimgano.postprocess.pipeline",
    "TuneResult": "pyimgano.postprocess.pipeline",
    "tune_pipeline": "pyimgano.postprocess.pipeline",
    "Step": "pyimgano.postprocess.steps",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pyimgano.postprocess' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
