"""Detectors and a data set of the fake plugin used by the benchmark tests."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from pyimgano import DatasetInfo, DatasetSample, Detector
from pyimgano.contracts import SplitCounts


class MeanDetector(Detector):
    """Per-pixel distance to the mean training image; score = the map's maximum."""

    def __init__(self, sigma: float = 1.0, seed: int = 0) -> None:
        super().__init__(sigma=sigma, seed=seed)
        self.sigma = sigma
        self.mean_: np.ndarray | None = None

    def _fit(self, images):
        self.mean_ = np.mean([img.astype(np.float32) / 255.0 for img in images], axis=0)

    def _maps(self, images):
        maps = []
        for img in images:
            diff = np.abs(img.astype(np.float32) / 255.0 - self.mean_).mean(axis=2)
            maps.append(gaussian_filter(diff, self.sigma) if self.sigma else diff)
        return maps

    def _score(self, images):
        maps = self._maps(images)
        return np.array([float(m.max()) for m in maps]), np.stack(maps).astype(np.float32)

    def _get_state(self):
        return {"mean": self.mean_}

    def _set_state(self, state):
        self.mean_ = state["mean"]


class FragileDetector(MeanDetector):
    def __init__(self, fail_height: int = 0, how: str = "raise") -> None:
        Detector.__init__(self, fail_height=fail_height, how=how)
        self.sigma = 1.0
        self.fail_height = fail_height
        self.how = how

    def _fit(self, images):
        if images[0].shape[0] == self.fail_height:
            if self.how == "exit":
                os._exit(3)
            raise RuntimeError(f"boom: cannot handle height {self.fail_height}")
        super()._fit(images)


class SleepyDetector(MeanDetector):
    def __init__(self, sleep_s: float = 0.0) -> None:
        Detector.__init__(self, sleep_s=sleep_s)
        self.sigma = 1.0
        self.sleep_s = sleep_s

    def _fit(self, images):
        if images[0].shape[0] != 24:  # not the alpha category
            time.sleep(self.sleep_s)
        super()._fit(images)


class BadDetector(MeanDetector):
    def __init__(self, mode: str = "shape") -> None:
        Detector.__init__(self, mode=mode)
        self.sigma = 1.0
        self.mode = mode

    def _score(self, images):
        scores, maps = super()._score(images)
        if self.mode == "shape":
            return scores, maps[:, ::2, ::2]
        if self.mode == "nan":
            scores[0] = np.nan
            return scores, maps
        return scores[:-1], maps


class NoMapsDetector(MeanDetector):
    def __init__(self) -> None:
        Detector.__init__(self)
        self.sigma = 1.0

    def _score(self, images):
        return super()._score(images)[0], None


class LearningDetector(MeanDetector):
    """Learns from labelled anomalies: the defect pixels' mean colour (``anomaly_colour_``)
    raises the map where an image looks like it, so training with the shots changes scores."""

    def __init__(self, sigma: float = 1.0) -> None:
        Detector.__init__(self, sigma=sigma)
        self.sigma = sigma
        self.anomaly_colour_ = None
        self.seen_anomalies_ = 0

    def _fit_with_anomalies(self, images, anomalies, masks):
        super()._fit(images)
        if masks is None:
            raise ValueError("needs masks")
        pixels = np.concatenate([img[m] for img, m in zip(anomalies, masks)]).astype(np.float32) / 255.0
        self.anomaly_colour_ = pixels.mean(axis=0)
        self.seen_anomalies_ = len(anomalies)

    def _maps(self, images):
        maps = super()._maps(images)
        if self.anomaly_colour_ is None:
            return maps
        out = []
        for img, amap in zip(images, maps):
            closeness = 1.0 - np.abs(img.astype(np.float32) / 255.0 - self.anomaly_colour_).mean(axis=2)
            out.append(amap + 0.1 * closeness ** 8)
        return out

    def _get_state(self):
        colour = np.zeros(3, np.float32) if self.anomaly_colour_ is None else self.anomaly_colour_
        return {"mean": self.mean_, "colour": colour, "trained": np.array([self.anomaly_colour_ is not None])}

    def _set_state(self, state):
        self.mean_ = state["mean"]
        self.anomaly_colour_ = state["colour"] if bool(state["trained"][0]) else None


class ToyDataset:
    """root/<category>/{train/good, test/<kind>, ground_truth/<kind>/<stem>_mask.png}."""

    def __init__(self, root, category=None):
        self.root = Path(root)
        if not self.root.is_dir():
            from pyimgano import DatasetError

            raise DatasetError(f"{self.root}: no such folder")
        self.categories = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        self.category = category

    def _split(self, split):
        base = self.root / self.category
        samples = []
        for kind_dir in sorted((base / split).iterdir()):
            for path in sorted(kind_dir.glob("*.png")):
                good = kind_dir.name == "good"
                mask = None if good else base / "ground_truth" / kind_dir.name / f"{path.stem}_mask.png"
                samples.append(DatasetSample(image_path=path, label=0 if good else 1, mask_path=mask,
                                             defect_type=kind_dir.name, category=self.category))
        return samples

    @property
    def train(self):
        return self._split("train")

    @property
    def test(self):
        return self._split("test")

    @property
    def info(self):
        counts = {}
        if self.category:
            test = self.test
            counts[self.category] = {
                "train": SplitCounts(good=len(self.train)),
                "test": SplitCounts(good=sum(s.label == 0 for s in test), defect=sum(s.label == 1 for s in test)),
            }
        return DatasetInfo(name="toy", categories=self.categories, counts=counts, has_masks=True)

    def load(self, sample):
        image = np.asarray(Image.open(sample.image_path).convert("RGB"))
        mask = None if sample.mask_path is None else np.asarray(Image.open(sample.mask_path)) > 0
        return image, mask


class ToyNoMasksDataset(ToyDataset):
    """The toy folders without their masks (a data set that labels images only)."""

    def _split(self, split):
        return [DatasetSample(image_path=s.image_path, label=s.label, mask_path=None, defect_type=s.defect_type,
                              category=s.category) for s in super()._split(split)]

    @property
    def info(self):
        return super().info.model_copy(update={"has_masks": False})
