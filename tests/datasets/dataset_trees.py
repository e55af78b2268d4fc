"""Tiny data set trees in the exact on-disk layouts, for the loader tests."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = (12, 16)  # height, width


def write_image(path: Path, value: int = 100, size: tuple[int, int] = SIZE, mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = size
    rng = np.random.default_rng(value)
    arr = rng.integers(0, 255, size=(h, w, 3) if mode == "RGB" else (h, w), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return path


def write_mask(path: Path, size: tuple[int, int] = SIZE, box: tuple[int, int, int, int] = (2, 3, 6, 8), value: int = 255):
    """A mask with the rectangle rows box[0]:box[2], cols box[1]:box[3] set to ``value``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.zeros(size, dtype=np.uint8)
    arr[box[0] : box[2], box[1] : box[3]] = value
    Image.fromarray(arr).save(path)
    return path


def make_mvtec(root: Path, categories=("bottle", "cable"), n_train=3, n_good=2, defects=(("crack", 2), ("hole", 1))):
    for cat in categories:
        for i in range(n_train):
            write_image(root / cat / "train" / "good" / f"{i:03d}.png", i)
        for i in range(n_good):
            write_image(root / cat / "test" / "good" / f"{i:03d}.png", 50 + i)
        for defect, n in defects:
            for i in range(n):
                write_image(root / cat / "test" / defect / f"{i:03d}.png", 80 + i)
                write_mask(root / cat / "ground_truth" / defect / f"{i:03d}_mask.png")
    return root


def make_btad(root: Path):
    specs = {"01": (".bmp", ".png"), "02": (".png", ".png"), "03": (".bmp", ".bmp")}
    for cat, (image_ext, mask_ext) in specs.items():
        for i in range(3):
            write_image(root / cat / "train" / "ok" / f"{i:04d}{image_ext}", i)
        write_image(root / cat / "test" / "ok" / f"0000{image_ext}", 9)
        for i in range(2):
            write_image(root / cat / "test" / "ko" / f"{i:04d}{image_ext}", 20 + i)
            write_mask(root / cat / "ground_truth" / "ko" / f"{i:04d}{mask_ext}")
    return root


def make_visa(root: Path, rows: list[dict[str, str]]) -> Path:
    """A fake VisA tree: the images and masks the rows name, and split_csv/1cls.csv."""
    for i, row in enumerate(rows):
        write_image(root / row["image"], i)
        if row["mask"]:
            # VisA masks hold small region ids, not 255
            write_mask(root / row["mask"], value=1 + i % 3)
    split = root / "split_csv" / "1cls.csv"
    split.parent.mkdir(parents=True, exist_ok=True)
    with open(split, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["object", "split", "label", "image", "mask"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def visa_rows_from(split_file: Path, objects=("candle", "pcb1"), per_group: int = 2) -> list[dict[str, str]]:
    """The first rows of each (object, split, label) group of a real VisA split file."""
    taken: dict[tuple[str, str, str], int] = {}
    rows = []
    with open(split_file, newline="") as handle:
        for row in csv.DictReader(handle):
            key = (row["object"], row["split"], row["label"])
            if row["object"] in objects and taken.get(key, 0) < per_group:
                taken[key] = taken.get(key, 0) + 1
                rows.append(row)
    return rows


def synthetic_visa_rows() -> list[dict[str, str]]:
    """Rows in the VisA naming scheme, for tests that must not need ../shared."""
    rows = []
    for obj in ("candle", "fryum"):
        for i in range(3):
            rows.append({"object": obj, "split": "train", "label": "normal",
                         "image": f"{obj}/Data/Images/Normal/{i:04d}.JPG", "mask": ""})
        rows.append({"object": obj, "split": "test", "label": "normal",
                     "image": f"{obj}/Data/Images/Normal/0100.JPG", "mask": ""})
        for i in range(2):
            rows.append({"object": obj, "split": "test", "label": "anomaly",
                         "image": f"{obj}/Data/Images/Anomaly/{i:03d}.JPG",
                         "mask": f"{obj}/Data/Masks/Anomaly/{i:03d}.png"})
    return rows
