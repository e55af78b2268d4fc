"""What the faiss plugin's detectors share: a lazily built backbone, threads, device, batches.

Parameters live in the params models of :mod:`pyimgano_faiss.plugin` (the classes the specs
register); the base :class:`pyimgano.Detector` validates them into ``self.config`` and
exposes each as an attribute (``self.image_size``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from pyimgano import Detector
from pyimgano.preprocess import Preprocess
from pyimgano_faiss.backbones import Backbone, build_backbone, images_to_tensor, iter_batches
from pyimgano_faiss.runtime import configure_threads, resolve_device


@lru_cache(maxsize=4)
def _shared_backbone(
    backbone: str, layers: tuple[str, ...] | None, weights: str | None, stamp: int | None, pretrained: bool, device: str
) -> Backbone:
    """Frozen backbones are shared by detectors in one process (built once per configuration)."""
    del stamp  # part of the cache key only: a rewritten weights file is loaded again
    return build_backbone(backbone, layers, weights=weights, pretrained=pretrained).to(device)


# parameters the built backbone depends on: changing one builds it again on next use
_BACKBONE_PARAMS = frozenset({"backbone", "layers", "weights", "pretrained", "device"})


class BackboneDetector(Detector):
    """Base of detectors built on frozen backbone features (torch) and faiss search.

    Subclasses set ``params_model`` to a model with the fields of
    ``pyimgano_faiss.plugin._BackboneParams`` (and a ``batch_size``).
    """

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._backbone: Backbone | None = None
        self._device: str | None = None

    def set_params(self, **params: Any) -> BackboneDetector:
        super().set_params(**params)
        if _BACKBONE_PARAMS & params.keys():
            self._backbone = None
            self._device = None
        return self

    @property
    def geometry(self) -> Preprocess:
        """How an input image becomes the network input: resized to ``image_size`` squared."""
        return Preprocess(resize=self.image_size)

    def prepare(self) -> BackboneDetector:
        """Build the backbone now (otherwise it is built on the first fit or score)."""
        self._prepare()
        return self

    def _prepare(self) -> Backbone:
        """Thread counts, device and the backbone (built on first use, then reused)."""
        configure_threads(self.num_threads)
        if self._backbone is None:
            self._device = resolve_device(self.device)
            stamp = os.stat(self.weights).st_mtime_ns if self.weights and os.path.exists(self.weights) else None
            layers = None if self.layers is None else tuple(self.layers)
            self._backbone = _shared_backbone(
                self.backbone, layers, self.weights, stamp, self.pretrained, self._device
            )
        return self._backbone

    def _features(self, images: Sequence[np.ndarray], desc: str) -> Iterator[tuple[int, list[torch.Tensor]]]:
        """(start, per-layer feature maps) for each batch, computed under ``torch.inference_mode``.

        Callers iterate inside their own ``torch.inference_mode()`` block.
        """
        backbone = self._prepare()
        geometry = self.geometry
        for start, batch in iter_batches(images, self.batch_size, progress=self.progress, desc=desc):
            # resized in float: rounding the resized image to 8 bits would move the features
            resized = [geometry.apply_to_image(img.astype(np.float32)) for img in batch]
            with torch.inference_mode():
                x = images_to_tensor(resized)
                feats = backbone(x.to(self._device, non_blocking=True))
            yield start, feats
