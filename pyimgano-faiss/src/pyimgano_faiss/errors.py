"""Errors of the faiss plugin (light module: no torch, no faiss)."""

from __future__ import annotations

from pyimgano.errors import PyimganoError


class BackboneError(PyimganoError, RuntimeError):
    """A backbone could not be built: unknown name, bad layers, or weights unavailable.

    The message names the backbone and the offline options (``backbone='efficientnet_lite0'``,
    ``weights=PATH``), so a machine without network gets an answer, not a hang.
    """
