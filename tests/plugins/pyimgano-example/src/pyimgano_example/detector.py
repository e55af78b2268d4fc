"""A toy detector: per-pixel absolute difference from the mean (normal) training image."""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from pyimgano import Detector


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0


class MeanAbsDiff(Detector):
    def __init__(self, image_size: int = 64, sigma: float = 2.0) -> None:
        super().__init__(image_size=image_size, sigma=sigma)
        self.image_size = image_size
        self.sigma = sigma
        self.mean_: np.ndarray | None = None

    def _fit(self, images: list[np.ndarray]) -> None:
        self.mean_ = np.mean([_resize(img, self.image_size) for img in images], axis=0)

    def _score(self, images: list[np.ndarray]):
        maps, scores = [], []
        for img in images:
            diff = np.abs(_resize(img, self.image_size) - self.mean_).mean(axis=2)
            if self.sigma > 0:
                diff = gaussian_filter(diff, self.sigma)
            h, w = img.shape[:2]
            full = np.asarray(Image.fromarray(diff.astype(np.float32)).resize((w, h), Image.BILINEAR))
            maps.append(full.astype(np.float32))
            scores.append(float(diff.max()))
        return np.asarray(scores), maps

    def _get_state(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean_}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.mean_ = state["mean"].astype(np.float32)
