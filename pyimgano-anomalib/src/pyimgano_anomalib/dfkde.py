"""DFKDE: its PCA needs at least as many training images as it keeps components."""

from __future__ import annotations

import numpy as np

from pyimgano_anomalib.adapter import AnomalibDetector


class DfkdeDetector(AnomalibDetector):
    model_name = "dfkde"

    def _check_training_set(self, images: list[np.ndarray]) -> None:
        super()._check_training_set(images)
        cfg = self.config
        seen = len(images) if cfg.max_steps is None else min(len(images), cfg.max_steps * cfg.batch_size)
        if seen < cfg.n_pca_components:
            raise ValueError(
                f"{self.component}: the PCA keeps n_pca_components={cfg.n_pca_components} components of one "
                f"feature vector per image, so fit() needs at least {cfg.n_pca_components} images, got {seen} "
                f"({len(images)} images, max_steps={cfg.max_steps}, batch_size={cfg.batch_size}); "
                "lower n_pca_components or train on more images"
            )
