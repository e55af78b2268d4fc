"""Errors of the anomalib plugin (light module: no torch, no anomalib)."""

from __future__ import annotations

from pyimgano.errors import PyimganoError


class MissingOfflineFile(PyimganoError, FileNotFoundError):
    """A model needs a file (weights, textures, images) that would be downloaded; none is local.

    The message names the file, where it is looked for, and the parameter that passes it.
    """
