"""Tiny generated images for the conformance kit: textures, and the same with a bright blob.

Everything is generated from fixed seeds with numpy alone, so a plugin's CI runs the kit
offline in seconds. A normal image is a smooth, slightly varying mid-grey texture; a
defective one carries a saturated white disk (its mask is returned too), an anomaly any
sensible detector scores far above the normal images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_SIZE = 64


@dataclass(frozen=True)
class CheckImages:
    """The image sets one detector run of the kit uses (all HxWx3 uint8)."""

    train: list[np.ndarray]
    test_good: list[np.ndarray]
    test_defect: list[np.ndarray]
    test_masks: list[np.ndarray]

    @property
    def test(self) -> list[np.ndarray]:
        return self.test_good + self.test_defect

    @property
    def test_labels(self) -> np.ndarray:
        return np.array([0] * len(self.test_good) + [1] * len(self.test_defect), dtype=np.int64)


def texture(seed: int, height: int = DEFAULT_SIZE, width: int = DEFAULT_SIZE) -> np.ndarray:
    """A normal image: fixed diagonal weave plus a little per-image noise, HxWx3 uint8."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    period = 8.0
    weave = 20.0 * np.sin(2 * np.pi * (xx + yy) / period) + 12.0 * np.cos(2 * np.pi * (xx - yy) / (2 * period))
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 4.0, size=(height, width))
    base = 110.0 + weave + noise
    tint = np.array([1.0, 0.95, 0.9])
    img = base[:, :, None] * tint[None, None, :]
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def blob_mask(seed: int, height: int = DEFAULT_SIZE, width: int = DEFAULT_SIZE) -> np.ndarray:
    """A filled disk (radius about an eighth of the smaller side) at a seeded position."""
    rng = np.random.default_rng(10_000 + seed)
    radius = max(2.0, min(height, width) / 8.0)
    cy = rng.uniform(radius + 1, height - radius - 1)
    cx = rng.uniform(radius + 1, width - radius - 1)
    yy, xx = np.mgrid[0:height, 0:width]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2


def with_defect(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image with the masked pixels painted white."""
    out = image.copy()
    out[mask] = 255
    return out


def defective(seed: int, height: int = DEFAULT_SIZE, width: int = DEFAULT_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """A defective image and its HxW bool mask."""
    mask = blob_mask(seed, height, width)
    return with_defect(texture(seed, height, width), mask), mask


def make_check_images(
    n_train: int = 8, n_good: int = 4, n_defect: int = 4, height: int = DEFAULT_SIZE, width: int = DEFAULT_SIZE
) -> CheckImages:
    """Training images (seeds 0..), normal and defective test images (other seeds)."""
    train = [texture(seed, height, width) for seed in range(n_train)]
    good = [texture(1000 + seed, height, width) for seed in range(n_good)]
    pairs = [defective(2000 + seed, height, width) for seed in range(n_defect)]
    return CheckImages(train, good, [img for img, _ in pairs], [mask for _, mask in pairs])


def to_grayscale(image: np.ndarray) -> np.ndarray:
    """HxW uint8 (luma) version of an RGB image."""
    luma = image[:, :, :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return np.clip(np.round(luma), 0, 255).astype(np.uint8)


def to_rgba(image: np.ndarray) -> np.ndarray:
    """HxWx4 uint8 version of an RGB image, fully opaque."""
    alpha = np.full(image.shape[:2] + (1,), 255, dtype=np.uint8)
    return np.concatenate([image, alpha], axis=2)
