"""Shared fixtures of the anomalib plugin tests: tiny images and stand-in weight files.

Everything is generated offline. The weight files are *random* state dicts with the
shapes of the files anomalib would download (EfficientAD teacher, DSR discrete model,
torchvision ResNet-18): they exercise the loading paths, not the models' accuracy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else size


def texture(seed: int, size: int | tuple[int, int] = 64) -> np.ndarray:
    """A normal image: a fixed weave plus a little per-image noise (HxWx3 uint8); ``size``: N or (H, W)."""
    height, width = _hw(size)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    weave = 20.0 * np.sin(2 * np.pi * (xx + yy) / 8.0) + 12.0 * np.cos(2 * np.pi * (xx - yy) / 16.0)
    noise = np.random.default_rng(seed).normal(0.0, 4.0, size=(height, width))
    img = (110.0 + weave + noise)[:, :, None] * np.array([1.0, 0.95, 0.9])
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def defect_mask(seed: int, size: int | tuple[int, int] = 64) -> np.ndarray:
    height, width = _hw(size)
    rng = np.random.default_rng(10_000 + seed)
    radius = min(height, width) / 8.0
    cy, cx = rng.uniform(radius + 1, np.array([height, width]) - radius - 1)
    yy, xx = np.mgrid[0:height, 0:width]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2


def defective(seed: int, size: int | tuple[int, int] = 64) -> tuple[np.ndarray, np.ndarray]:
    mask = defect_mask(seed, size)
    img = texture(seed, size)
    img[mask] = 255
    return img, mask


class TinySet:
    """6 training images, 3 normal and 3 defective test images, 64x64 (or ``size``: N or (H, W))."""

    def __init__(self, size: int | tuple[int, int] = 64, n_train: int = 6) -> None:
        self.train = [texture(s, size) for s in range(n_train)]
        self.good = [texture(1000 + s, size) for s in range(3)]
        pairs = [defective(2000 + s, size) for s in range(3)]
        self.defect = [img for img, _ in pairs]
        self.masks = [m for _, m in pairs]
        self.test = self.good + self.defect
        self.labels = np.array([0] * len(self.good) + [1] * len(self.defect))


@pytest.fixture(scope="session")
def tiny() -> TinySet:
    return TinySet()


@pytest.fixture(scope="session")
def wide() -> TinySet:
    """The tiny set at 64 x 128 (height x width)."""
    return TinySet((64, 128))


@pytest.fixture(scope="session")
def weight_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Random stand-ins for the files EfficientAD, DSR and CFA would download."""
    import torch
    import torchvision
    from anomalib.models.image.dsr.torch_model import DsrModel
    from anomalib.models.image.efficient_ad.torch_model import EfficientAdModel

    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    files = {
        "teacher": folder / "pretrained_teacher_small.pth",
        "vq": folder / "vq_model_pretrained_128_4096.pckl",
        "resnet18": folder / "resnet18.pth",
    }
    torch.save(EfficientAdModel(teacher_out_channels=384, model_size="small").teacher.state_dict(), files["teacher"])
    torch.save(DsrModel(0.2).discrete_latent_model.state_dict(), files["vq"])
    torch.save(torchvision.models.resnet18().state_dict(), files["resnet18"])
    return files
