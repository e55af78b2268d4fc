"""Errors of the faiss plugin (light module: no torch, no faiss)."""

from __future__ import annotations

from pyimgano.errors import PyimganoError


class BackboneError(PyimganoError, RuntimeError):
    """A backbone could not be built: unknown name, bad layers, or weights unavailable.

    The message names the backbone and the offline options (the offline backbones of
    :data:`pyimgano.torchkit.OFFLINE_BACKBONES`, ``weights=PATH``), so a machine without network gets an answer, not a hang.
    """


class InputGeometryError(PyimganoError, ValueError):
    """An image cannot become a network input under the detector's geometry.

    Raised for an input over the per-pass pixel limit (the message suggests ``tile_size`` or
    a smaller ``image_size``) and for an input side the backbone cannot take; the message
    names the image's size, the input it would become and the parameters involved.
    """
