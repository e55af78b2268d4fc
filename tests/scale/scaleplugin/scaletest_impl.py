"""Detectors of the scale tests: a distance to the mean image, one that crashes once."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pyimgano import Detector


class MeanDetector(Detector):
    def __init__(self, **params) -> None:
        super().__init__(**params)
        self.mean_ = None

    def _fit(self, images):
        self.mean_ = np.mean([im.astype(np.float32) for im in images], axis=0)

    def _score(self, images):
        maps = [np.abs(im.astype(np.float32) - self.mean_).mean(axis=2) for im in images]
        return np.array([m.max() for m in maps]), maps

    def _get_state(self):
        return {"mean": self.mean_}

    def _set_state(self, state):
        self.mean_ = state["mean"]


class CrashyDetector(MeanDetector):
    """The first fit (no marker file yet) kills the whole worker process, as a segfault would."""

    def __init__(self, marker: str) -> None:
        super().__init__(marker=marker)
        self.marker = Path(marker)

    def _fit(self, images):
        if not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            os._exit(17)
        super()._fit(images)
