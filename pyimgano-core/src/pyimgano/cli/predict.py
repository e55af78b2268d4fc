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
    parser.add_argument("--save-maps", action="store_true", help="also write the raw maps to OUT/maps.npz")


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


def colour_range(maps: list[np.ndarray], threshold: float | None) -> tuple[float, float]:
    """Shared colour scale; with a threshold it sits halfway, so warm means above it."""
    from pyimgano.benchmark.overlays import map_range

    lo, hi = map_range(maps)
    if threshold is not None and threshold > lo:
        hi = threshold + (threshold - lo)
    return lo, hi


def run(args: argparse.Namespace) -> int:
    from PIL import Image
    from rich.progress import Progress

    from pyimgano.benchmark.results import atomic_write, rows_to_csv
    from pyimgano.cli.fit import collect_images
    from pyimgano.detector import load_detector
    from pyimgano.images import load_image

    detector = load_detector(args.model)
    files = collect_images(args.images, "images to score")
    threshold = args.threshold if args.threshold is not None else detector.threshold_
    pixel_threshold = args.pixel_threshold if args.pixel_threshold is not None else threshold
    out = Path(args.out)
    heat_dir, mask_dir = out / "heatmaps", out / "masks"
    heat_dir.mkdir(parents=True, exist_ok=True)
    scores: list[float] = []
    maps: list[np.ndarray] | None = []
    with Progress(transient=True) as progress:
        task = progress.add_task(f"scoring with {detector.component}", total=len(files))
        for start in range(0, len(files), BATCH):
            batch = files[start : start + BATCH]
            batch_scores, batch_maps = detector.score(batch)
            scores.extend(float(s) for s in batch_scores)
            if batch_maps is None:
                maps = None
            elif maps is not None:
                maps.extend(list(batch_maps))
            progress.advance(task, len(batch))
    names = _unique_names(files)
    rows: list[dict[str, Any]] = []
    if maps is not None:
        lo, hi = colour_range(maps, threshold)
        if pixel_threshold is not None:
            mask_dir.mkdir(parents=True, exist_ok=True)
    for i, (path, score, name) in enumerate(zip(files, scores, names)):
        row: dict[str, Any] = {"image": str(path), "score": score,
                               "label": None if threshold is None else int(score > threshold)}
        if maps is not None:
            heatmap_png(load_image(path), maps[i], lo, hi, heat_dir / f"{name}.png")
            row["heatmap"] = str(Path("heatmaps") / f"{name}.png")
            if pixel_threshold is not None:
                mask = maps[i] > pixel_threshold
                Image.fromarray(mask.astype(np.uint8) * 255).save(mask_dir / f"{name}.png")
                row["mask"] = str(Path("masks") / f"{name}.png")
                row["anomalous_fraction"] = round(float(mask.mean()), 6)
        rows.append(row)
    columns = ["image", "score", "label", "anomalous_fraction", "heatmap", "mask"]
    atomic_write(out / "predictions.csv", rows_to_csv(rows, columns))
    if args.save_maps and maps is not None:
        np.savez_compressed(out / "maps.npz", **{name: m for name, m in zip(names, maps)})
    n_anomalous = sum(1 for r in rows if r["label"] == 1)
    summary = f"{len(rows)} image(s) scored"
    summary += (f", {n_anomalous} anomalous (threshold {threshold:.6g})" if threshold is not None
                else "; no threshold in the model: labels left empty (pass --threshold)")
    print(f"{summary}; wrote {out / 'predictions.csv'}")
    return 0
