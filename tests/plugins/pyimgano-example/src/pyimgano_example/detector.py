"""A toy detector: per-pixel absolute difference from the mean (normal) training image."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter

from pyimgano import Detector, StateArray
from pyimgano.preprocess import resize_image, resize_map
from pyimgano_example.plugin import MADParams


def _resized(img: np.ndarray, size: int) -> np.ndarray:
    return resize_image(img, size).astype(np.float32) / 255.0


class MeanAbsDiff(Detector):
    params_model = MADParams
    # checked before a saved state reaches _set_state: one mean image at the image_size parameter
    state_arrays = {"mean": StateArray("float", ("image_size", "image_size", 3))}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.mean_: np.ndarray | None = None

    def _fit(self, images: list[np.ndarray]) -> None:
        self.mean_ = np.mean([_resized(img, self.image_size) for img in images], axis=0)

    def _score(self, images: list[np.ndarray]):
        maps, scores = [], []
        for img in images:
            diff = np.abs(_resized(img, self.image_size) - self.mean_).mean(axis=2)
            if self.sigma > 0:
                diff = gaussian_filter(diff, self.sigma)
            maps.append(resize_map(diff, img.shape[:2]))
            scores.append(float(diff.max()))
        return np.asarray(scores), maps

    def _get_state(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean_}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.mean_ = state["mean"].astype(np.float32)
