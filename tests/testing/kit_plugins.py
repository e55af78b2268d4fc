"""An in-test plugin ("kit") with data sets, metrics and post-processors, good and broken.

Registered into the process registry by the ``kit_registry`` fixture; the specs'
factories point back into this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict

from pyimgano import DatasetSpec, MetricSpec, NoParams, PostprocessorSpec, hookimpl
from pyimgano.contracts import DatasetInfo, DatasetSample, SplitCounts
from pyimgano.errors import MetricError
from pyimgano.images import read_image, read_mask
from pyimgano.testing.data import defective, texture
from pyimgano.testing.detectors import _auroc

Fault = Literal["none", "counts", "mask_size", "no_mask", "defect_in_train", "empty_mask", "missing_file"]


class TinyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fault: Fault = "none"


def write_tiny_dataset(root: Path, category: str = "weave") -> Path:
    """MVTec-like layout: train/good, test/good, test/blob with ground_truth masks."""
    base = root / category
    for sub in ("train/good", "test/good", "test/blob", "ground_truth/blob"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    for i in range(3):
        Image.fromarray(texture(i, 40, 48)).save(base / "train/good" / f"{i:03d}.png")
    for i in range(2):
        Image.fromarray(texture(100 + i, 40, 48)).save(base / "test/good" / f"{i:03d}.png")
        image, mask = defective(200 + i, 40, 48)
        Image.fromarray(image).save(base / "test/blob" / f"{i:03d}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(base / "ground_truth/blob" / f"{i:03d}_mask.png")
    return root


class TinyDataset:
    def __init__(self, root, category=None, fault: Fault = "none"):
        self.fault = fault
        category = category or "weave"
        base = Path(root) / category
        self.train = [DatasetSample(image_path=p, label=0, category=category)
                      for p in sorted((base / "train/good").glob("*.png"))]
        self.test = [DatasetSample(image_path=p, label=0, category=category)
                     for p in sorted((base / "test/good").glob("*.png"))]
        for p in sorted((base / "test/blob").glob("*.png")):
            mask = None if fault == "no_mask" else base / "ground_truth/blob" / f"{p.stem}_mask.png"
            self.test.append(DatasetSample(image_path=p, label=1, mask_path=mask, defect_type="blob",
                                           category=category))
        if fault == "defect_in_train":
            self.train.append(self.test[-1])
        if fault == "missing_file":
            self.test.append(DatasetSample(image_path=base / "test/good/999.png", label=0, category=category))
        counts = {"train": SplitCounts(good=3), "test": SplitCounts(good=2, defect=2 if fault != "counts" else 3)}
        if fault == "missing_file":
            counts["test"] = SplitCounts(good=3, defect=2)
        self.info = DatasetInfo(name="tiny", categories=["weave"], counts={category: counts},
                                defect_types={category: ["blob"]}, has_masks=True, root=Path(root))

    def load(self, sample):
        image = read_image(sample.image_path)
        if sample.mask_path is None:
            return image, None
        mask = read_mask(sample.mask_path)
        if self.fault == "mask_size":
            mask = mask[:, :-4]
        if self.fault == "empty_mask":
            mask = np.zeros_like(mask)
        return image, mask


def _check_lengths(truth, predictions):
    truth, predictions = np.asarray(truth), np.asarray(predictions)
    if truth.shape != predictions.shape:
        raise MetricError(f"ground truth of shape {truth.shape} and predictions of shape {predictions.shape} differ")
    return truth, predictions


def image_auroc(labels, scores):
    return _auroc(*_check_lengths(labels, scores))


def pixel_auroc(masks, maps):
    masks, maps = _check_lengths(masks, maps)
    return _auroc(masks.ravel(), maps.ravel())


def returns_text(labels, scores):
    return "0.9"


def percent_auroc(labels, scores):
    return 100.0 * image_auroc(labels, scores)


def inverted_auroc(labels, scores):
    return 1.0 - image_auroc(labels, scores)


def truncating_auroc(labels, scores):
    n = min(len(labels), len(scores))
    return _auroc(np.asarray(labels)[:n], np.asarray(scores)[:n])


class MinMax:
    """Good: scales each map to [0, 1]."""

    def __call__(self, maps):
        maps = np.asarray(maps, dtype=np.float32)
        low = maps.min(axis=(1, 2), keepdims=True)
        high = maps.max(axis=(1, 2), keepdims=True)
        return (maps - low) / np.maximum(high - low, 1e-12)


class TrainStats:
    """Good, with statistics: z-scores against the mean and std of fitted maps."""

    def fit(self, maps):
        self.mean_, self.std_ = float(np.mean(maps)), float(np.std(maps)) + 1e-6
        return self

    def __call__(self, maps):
        return ((np.asarray(maps, dtype=np.float32) - self.mean_) / self.std_).astype(np.float32)


class Crops:
    def __call__(self, maps):
        return np.asarray(maps)[:, 1:-1, 1:-1].copy()


class InPlace:
    def __call__(self, maps):
        maps *= 2.0
        return maps


class MakesNaN:
    def __call__(self, maps):
        out = np.array(maps, dtype=np.float32)
        out[:, 0, 0] = np.nan
        return out


class Inverts:
    def __call__(self, maps):
        return (1.0 - np.asarray(maps)).astype(np.float32)


HERE = "kit_plugins"


@hookimpl
def pyimgano_register_datasets():
    return [DatasetSpec(name="tiny", summary="Tiny generated data set", factory=f"{HERE}:TinyDataset",
                        params=TinyParams, categories=("weave",))]


@hookimpl
def pyimgano_register_metrics():
    image = ["image_auroc", "returns_text", "percent_auroc", "inverted_auroc", "truncating_auroc"]
    specs = [MetricSpec(name=n.replace("_", "-"), summary=n, factory=f"{HERE}:{n}", params=NoParams, level="image")
             for n in image]
    specs.append(MetricSpec(name="pixel-auroc", summary="pixel AUROC", factory=f"{HERE}:pixel_auroc",
                            params=NoParams, level="pixel"))
    return specs


@hookimpl
def pyimgano_register_postprocessors():
    steps = {"minmax": MinMax, "train-stats": TrainStats, "crops": Crops, "in-place": InPlace,
             "makes-nan": MakesNaN, "inverts": Inverts}
    return [PostprocessorSpec(name=n, summary=f"{n} step", factory=f"{HERE}:{cls.__name__}", params=NoParams,
                              fits_statistics=cls is TrainStats) for n, cls in steps.items()]
