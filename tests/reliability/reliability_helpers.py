"""Helpers of the reliability suite: the hostile test plugin, tiny data sets, hostile files."""

from __future__ import annotations

import importlib.util
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from pyimgano_testutils import make_fake_distribution
from pyimgano_testutils import plugin_on_path as on_path

HERE = Path(__file__).resolve().parent
# category -> image height (the crasher detector can act on one height only)
CATEGORIES = {"alpha": 16, "beta": 20}


def install_hostile_plugin(site: Path) -> Path:
    make_fake_distribution(site, "pyimgano-hostile", "0.1.0", {"hostile": "hostile_plugin"}, {})
    for name in ("hostile_plugin.py", "hostile_impl.py"):
        (site / name).write_text((HERE / "hostile" / name).read_text())
    return site


def plugin_on_path(site: Path):
    return on_path(site, modules=("hostile_",))


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _load(name: str, path: Path):
    """A helper module of another test folder (each folder's own is importable only there)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


benchtest = _load("benchtest", HERE.parent / "benchmark" / "benchtest.py")
dataset_trees = _load("dataset_trees", HERE.parent / "datasets" / "dataset_trees.py")


def make_mvtec(root: Path, categories: dict[str, int] | None = None) -> Path:
    """A tiny MVTec-layout tree: 6 train, 3 good and 4 defect test images (masks ``<stem>_mask.png``)."""
    return benchtest.make_toy_root(root, categories or CATEGORIES)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A PNG of a few hundred bytes whose header claims ``width x height`` (8-bit grey)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (min(width, 4096) + 1) * 4, 9)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", rows) + _chunk(b"IEND", b""))
    return path


VISA_COLUMNS = ["object", "split", "label", "image", "mask"]


def visa_rows() -> list[dict[str, str]]:
    """Split-file rows of one VisA object: 3 train, 1 good test, 2 defect images (in that order)."""
    return [row for row in dataset_trees.synthetic_visa_rows() if row["object"] == "candle"]


def make_visa(root: Path, rows: list[dict[str, str]], split_text: str | None = None) -> Path:
    """A VisA tree: the files the rows name (those inside ``root``) and split_csv/1cls.csv."""
    rng = np.random.default_rng(1)
    for row in rows:
        image = root / row["image"]
        if image.resolve().is_relative_to(root.resolve()) and not image.exists():
            save(image, rng.integers(0, 255, size=(12, 16, 3), dtype=np.uint8))
        if row["mask"] and (root / row["mask"]).resolve().is_relative_to(root.resolve()):
            mask = np.zeros((12, 16), dtype=np.uint8)
            mask[2:5, 3:7] = 1
            save(root / row["mask"], mask)
    if split_text is None:
        lines = [",".join(VISA_COLUMNS)] + [",".join(row[c] for c in VISA_COLUMNS) for row in rows]
        split_text = "\n".join(lines) + "\n"
    split = root / "split_csv" / "1cls.csv"
    split.parent.mkdir(parents=True, exist_ok=True)
    split.write_text(split_text, encoding="utf-8", newline="")
    return root
