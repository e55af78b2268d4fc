"""What the faiss plugin's detectors share: a lazily built backbone, threads, device, batches."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from pyimgano import Detector
from pyimgano_faiss.backbones import Backbone, build_backbone, images_to_tensor, iter_batches
from pyimgano_faiss.runtime import configure_threads, resolve_device


@lru_cache(maxsize=4)
def _shared_backbone(
    backbone: str, layers: tuple[str, ...] | None, weights: str | None, stamp: int | None, pretrained: bool, device: str
) -> Backbone:
    """Frozen backbones are shared by detectors in one process (built once per configuration)."""
    del stamp  # part of the cache key only: a rewritten weights file is loaded again
    return build_backbone(backbone, layers, weights=weights, pretrained=pretrained).to(device)


class BackboneDetector(Detector):
    """Base of detectors built on frozen backbone features (torch) and faiss search."""

    def __init__(
        self,
        *,
        backbone: str,
        layers: Sequence[str] | None,
        weights: str | None,
        pretrained: bool,
        image_size: int,
        batch_size: int,
        device: str,
        num_threads: int | None,
        seed: int,
        progress: bool,
        **extra: Any,
    ) -> None:
        super().__init__(
            backbone=backbone,
            layers=None if layers is None else list(layers),
            weights=weights,
            pretrained=pretrained,
            image_size=image_size,
            batch_size=batch_size,
            device=device,
            num_threads=num_threads,
            seed=seed,
            progress=progress,
            **extra,
        )
        self.backbone = backbone
        self.layers = None if layers is None else list(layers)
        self.weights = weights
        self.pretrained = pretrained
        self.image_size = int(image_size)
        self.batch_size = int(batch_size)
        self.device = device
        self.num_threads = num_threads
        self.seed = int(seed)
        self.progress = progress
        self._backbone: Backbone | None = None
        self._device: str | None = None

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
        for start, batch in iter_batches(images, self.batch_size, progress=self.progress, desc=desc):
            with torch.inference_mode():
                x = images_to_tensor(batch, self.image_size).to(self._device, non_blocking=True)
                feats = backbone(x)
            yield start, feats
