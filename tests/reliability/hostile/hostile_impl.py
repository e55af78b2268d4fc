"""The ``hostile:crasher`` detector: the mean-image detector, unless told to crash or hang."""

from __future__ import annotations

import ctypes
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pyimgano import Detector


class Crasher(Detector):
    def __init__(self, action: str = "none", on_height: int = 0, marker: str = "") -> None:
        super().__init__(action=action, on_height=on_height, marker=marker)
        self.action, self.on_height, self.marker = action, on_height, marker
        self.mean_ = None

    def _fit(self, images):
        if self.marker:
            Path(self.marker).write_text(str(os.getpid()))
        if self.on_height in (0, images[0].shape[0]):
            if self.action == "abort":
                os.abort()
            if self.action == "segfault":
                ctypes.string_at(0)  # reads address 0: SIGSEGV
            if self.action == "hang":
                if self.marker:  # says where it hangs, so a test can wait for exactly that
                    Path(self.marker).write_text(f"{os.getpid()} hanging")
                while True:
                    time.sleep(0.05)
            if self.action == "exit":
                os._exit(7)
            if self.action == "interrupt":  # as a plugin that mistakes KeyboardInterrupt for its own error
                raise KeyboardInterrupt
        self.mean_ = np.mean([img.astype(np.float32) / 255.0 for img in images], axis=0)

    def _score(self, images):
        maps = np.stack([np.abs(img.astype(np.float32) / 255.0 - self.mean_).mean(axis=2) for img in images])
        return maps.reshape(len(images), -1).max(axis=1), maps.astype(np.float32)

    def _get_state(self):
        return {"mean": self.mean_}

    def _set_state(self, state):
        self.mean_ = state["mean"]


def RawPilDataset(root=None, category=None):
    """The built-in MVTec loader, except that pixels are read with PIL directly."""
    from pyimgano_datasets.mvtec import MVTecDataset

    class RawPil(MVTecDataset):
        def load(self, sample, preprocess=None):
            image = np.asarray(Image.open(sample.image_path).convert("RGB"))
            mask = None if sample.mask_path is None else np.asarray(Image.open(sample.mask_path)) > 0
            return image, mask

    return RawPil(root, category)
