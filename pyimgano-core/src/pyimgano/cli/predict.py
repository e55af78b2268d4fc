"""``pyimgano predict``: score images with a saved model; CSV, heatmaps and binary masks."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import numpy as np

BATCH = 16

EPILOG = """\
examples:
  pyimgano predict --model model/ data/new/ --out predictions/
  pyimgano predict --model model/ 'line3/*.png' part7.png --out predictions/ --save-maps

Writes OUT/predictions.csv (image, score, label, anomalous pixel fraction, files),
OUT/heatmaps/*.png (heatmap over the image; colours: blue normal, red anomalous, the
threshold halfway) and OUT/masks/*.png (255 where the map is above the pixel threshold).
Images are scored in batches and maps wait on disk, so memory does not grow with the
number of images.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("--model", required=True, metavar="MODEL_DIR", help="a directory saved by pyimgano fit")
    parser.add_argument("images", nargs="+", metavar="IMAGES", help="image files, folders (recursive) or globs")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--threshold", type=float, metavar="VALUE", help="image threshold instead of the model's")
    parser.add_argument("--pixel-threshold", type=float, metavar="VALUE",
                        help="map value above which a pixel is in the mask (default: the image threshold)")
    parser.add_argument("--save-maps", action="store_true",
                        help="also keep the raw float32 maps as OUT/maps/<name>.npy")


def _unique_names(paths: list[Path]) -> list[str]:
    """Output file stems: the image's stem, with its parent folder(s) prepended while ambiguous."""
    names = [p.stem for p in paths]
    depth = 1
    while len(set(names)) < len(names) and depth < 6:
        names = ["_".join([*p.parent.parts[-depth:], p.stem]) for p in paths]
        depth += 1
    if len(set(names)) < len(names):
        names = [f"{i:05d}_{n}" for i, n in enumerate(names)]
    return [re.sub(r"[^A-Za-z0-9._-]+", "-", n) for n in names]


def heatmap_png(image: np.ndarray, amap: np.ndarray, lo: float, hi: float, path: Path) -> None:
    from PIL import Image

    from pyimgano.benchmark.overlays import colourise

    heat = colourise(amap, lo, hi)
    Image.fromarray((0.5 * heat + 0.5 * image).round().astype(np.uint8)).save(path)


class _ColourScale:
    """The heatmaps' shared colour range, gathered map by map (memory stays bounded):
    from the lowest value to the 99.9th percentile of a sample, or, with a threshold,
    symmetric around it so that warm colours mean above it."""

    SAMPLE = 4096

    def __init__(self) -> None:
        self.lo = np.inf
        self.samples: list[np.ndarray] = []

    def add(self, amap: np.ndarray) -> None:
        flat = amap.ravel()
        self.lo = min(self.lo, float(flat.min()))
        self.samples.append(flat[:: max(1, flat.size // self.SAMPLE)])

    def range(self, threshold: float | None) -> tuple[float, float]:
        hi = float(np.percentile(np.concatenate(self.samples), 99.9))
        if threshold is not None and threshold > self.lo:
            hi = threshold + (threshold - self.lo)
        return self.lo, (hi if hi > self.lo else self.lo + 1.0)


def run(args: argparse.Namespace) -> int:
    import shutil

    from PIL import Image
    from rich.progress import Progress

    from pyimgano.atomic import atomic_write
    from pyimgano.benchmark.results import rows_to_csv
    from pyimgano.cli.fit import collect_images
    from pyimgano.detector import load_detector
    from pyimgano.images import load_image

    detector = load_detector(args.model)
    files = collect_images(args.images, "images to score")
    names = _unique_names(files)
    threshold = args.threshold if args.threshold is not None else detector.threshold_
    pixel_threshold = args.pixel_threshold if args.pixel_threshold is not None else threshold
    out = Path(args.out)
    heat_dir, mask_dir = out / "heatmaps", out / "masks"
    # maps wait on disk for the second pass (the colour range needs all of them)
    maps_dir = out / "maps" if args.save_maps else out / ".maps-tmp"
    rows: list[dict[str, Any]] = []
    scale = _ColourScale()
    has_maps = True
    with Progress(transient=True) as progress:
        task = progress.add_task(f"scoring with {detector.component}", total=len(files))
        for start in range(0, len(files), BATCH):
            batch = files[start : start + BATCH]
            batch_scores, batch_maps = detector.score(batch)
            has_maps = has_maps and batch_maps is not None
            for k, (path, score) in enumerate(zip(batch, batch_scores)):
                name = names[start + k]
                row: dict[str, Any] = {"image": str(path), "score": float(score),
                                       "label": None if threshold is None else int(score > threshold)}
                if has_maps:
                    amap = np.asarray(batch_maps[k], dtype=np.float32)
                    scale.add(amap)
                    maps_dir.mkdir(parents=True, exist_ok=True)
                    np.save(maps_dir / f"{name}.npy", amap)
                    if pixel_threshold is not None:
                        mask = amap > pixel_threshold
                        mask_dir.mkdir(parents=True, exist_ok=True)
                        Image.fromarray(mask.astype(np.uint8) * 255).save(mask_dir / f"{name}.png")
                        row["mask"] = str(Path("masks") / f"{name}.png")
                        row["anomalous_fraction"] = round(float(mask.mean()), 6)
                rows.append(row)
            progress.advance(task, len(batch))
        if has_maps and rows:
            lo, hi = scale.range(threshold)
            heat_dir.mkdir(parents=True, exist_ok=True)
            task = progress.add_task("drawing heatmaps", total=len(rows))
            for row, name in zip(rows, names):
                amap = np.load(maps_dir / f"{name}.npy", allow_pickle=False)
                heatmap_png(load_image(row["image"]), amap, lo, hi, heat_dir / f"{name}.png")
                row["heatmap"] = str(Path("heatmaps") / f"{name}.png")
                progress.advance(task)
    if not args.save_maps:
        shutil.rmtree(maps_dir, ignore_errors=True)
    columns = ["image", "score", "label", "anomalous_fraction", "heatmap", "mask"]
    atomic_write(out / "predictions.csv", rows_to_csv(rows, columns))
    n_anomalous = sum(1 for r in rows if r["label"] == 1)
    summary = f"{len(rows)} image(s) scored"
    summary += (f", {n_anomalous} anomalous (threshold {threshold:.6g})" if threshold is not None
                else "; no threshold in the model: labels left empty (pass --threshold)")
    print(f"{summary}; wrote {out / 'predictions.csv'}")
    return 0
