"""Fitted, saved and exported faiss detectors shared by the export tests (64 px, offline backbone)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SMALL = {"backbone": "efficientnet_lite0", "image_size": 64, "progress": False}


def texture(rng: np.random.Generator, height: int = 80, width: int = 80, defect: bool = False) -> np.ndarray:
    """A striped RGB texture with noise; ``defect`` adds a dark square."""
    xx = np.arange(width)[None, :, None]
    image = 120 + 40 * np.sin(xx / 5.0) + rng.normal(0, 8, (height, width, 3))
    if defect:
        image[height // 3 : height // 3 + height // 5, width // 2 : width // 2 + width // 5] = 20
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def images_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/ (8 good), test/ (3 good, 3 defective, of several sizes) as PNG files."""
    root = tmp_path_factory.mktemp("export-images")
    rng = np.random.default_rng(0)
    for i in range(8):
        (root / "train").mkdir(exist_ok=True)
        Image.fromarray(texture(rng)).save(root / "train" / f"{i}.png")
    (root / "test").mkdir()
    for i, (h, w) in enumerate([(80, 80), (97, 130), (64, 64)]):
        Image.fromarray(texture(rng, h, w)).save(root / "test" / f"good{i}.png")
        Image.fromarray(texture(rng, h, w, defect=True)).save(root / "test" / f"bad{i}.png")
    return root


def _fit_and_export(root: Path, images_dir: Path, name: str, **params) -> tuple[Path, Path]:
    from pyimgano import create_detector
    from pyimgano.cli.inputs import collect_images
    from pyimgano.export import export_model

    detector = create_detector(name, **SMALL, **params)
    train = collect_images([str(images_dir / "train")])
    detector.fit(train[:6], calibration=train[6:])
    source = detector.save(root / "source")
    return source, export_model(source, root / "exported")


@pytest.fixture(scope="session")
def patchcore_export(tmp_path_factory: pytest.TempPathFactory, images_dir: Path) -> tuple[Path, Path]:
    """(source model folder, exported folder) of a fitted faiss:patchcore."""
    return _fit_and_export(tmp_path_factory.mktemp("patchcore"), images_dir, "faiss:patchcore", coreset_ratio=0.5)


@pytest.fixture(scope="session")
def knn_export(tmp_path_factory: pytest.TempPathFactory, images_dir: Path) -> tuple[Path, Path]:
    return _fit_and_export(tmp_path_factory.mktemp("knn"), images_dir, "faiss:knn", n_neighbors=2)
