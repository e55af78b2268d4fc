"""Helpers of the benchmark and CLI tests: the fake plugin and tiny MVTec-layout folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from pyimgano.benchmark.executors import LocalExecutor
from pyimgano_testutils import make_fake_distribution
from pyimgano_testutils import plugin_on_path as on_path

HERE = Path(__file__).resolve().parent
FAKE_PLUGIN_VERSION = "0.3.0"
# the core's metric keys of every results.json written so far, in column order, written out
# independently of the code: they must keep their names (a new metric may join them)
CORE_METRIC_KEYS = ["image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_ap", "pixel_f1_max", "aupro"]


def in_order(items: list, within: list) -> bool:
    """``items`` all appear in ``within``, in the same order (others may sit between them)."""
    rest = iter(within)
    return all(item in rest for item in items)
# category -> image side; "beta" is the one the fragile detector fails on (--set fail_height=32)
TOY_CATEGORIES = {"alpha": 24, "beta": 32}


def install_fake_plugin(site: Path) -> Path:
    """Install the ``benchtest`` plugin (detectors mean/fragile/bad/nomaps, data set toy) into ``site``."""
    make_fake_distribution(site, "pyimgano-benchtest", FAKE_PLUGIN_VERSION, {"benchtest": "benchtest_plugin"}, {})
    for name in ("benchtest_plugin.py", "benchtest_impl.py"):
        shutil.copy(HERE / "fakeplugin" / name, site / name)
    return site


def plugin_on_path(*sites: Path):
    """Make plugins in ``sites`` discoverable in this process (and in spawned workers)."""
    return on_path(*sites, modules=("benchtest_", "pyimgano_example"))


def make_toy_root(root: Path, categories: dict[str, int] | None = None, n_train: int = 6,
                  n_good: int = 3, n_defect: int = 4, seed: int = 0) -> Path:
    """A tiny MVTec-layout folder: textured good images, defects = bright squares with masks."""
    rng = np.random.default_rng(seed)
    for category, side in (categories or TOY_CATEGORIES).items():
        base = root / category
        pattern = rng.integers(60, 160, size=(side, side, 3))

        def good(pattern: np.ndarray = pattern) -> np.ndarray:
            return np.clip(pattern + rng.normal(0, 6, size=pattern.shape), 0, 255).astype(np.uint8)

        def save(path: Path, array: np.ndarray) -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(path)

        for i in range(n_train):
            save(base / "train" / "good" / f"{i:03d}.png", good())
        for i in range(n_good):
            save(base / "test" / "good" / f"{i:03d}.png", good())
        for i in range(n_defect):
            image, mask = good(), np.zeros((side, side), dtype=np.uint8)
            y, x = rng.integers(2, side - 8, size=2)
            size = 3 + i % 3
            image[y : y + size, x : x + size] = 250
            mask[y : y + size, x : x + size] = 255
            save(base / "test" / "spot" / f"{i:03d}.png", image)
            save(base / "ground_truth" / "spot" / f"{i:03d}_mask.png", mask)
    return root


class RecordingExecutor(LocalExecutor):
    """The serial executor, remembering which jobs it was given."""

    def __init__(self):
        super().__init__(workers=1)
        self.seen = []

    def map_unordered(self, jobs, progress=None):
        self.seen.extend(j.describe() for j in jobs)
        yield from super().map_unordered(jobs, progress)


def load_records(out: Path) -> list[dict]:
    """Every job record stored in a benchmark output folder."""
    return [json.loads(p.read_text()) for p in sorted((Path(out) / "jobs").glob("*.json"))]
