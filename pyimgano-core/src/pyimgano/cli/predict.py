"""``pyimgano predict``: apply a saved pipeline to images; CSV, JSON regions, heatmaps and masks.

One pass over the images, in batches bounded by pixel count: memory stays bounded by the
largest batch, whatever the number of images, and heatmaps are drawn at a bounded size.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from pyimgano.errors import InvalidParams

PREDICTIONS_CSV = "predictions.csv"  # the file that marks a folder as a predict output
OUTPUT_KIND = "pyimgano predict output"
BATCH = 16  # images per batch at most
BATCH_PIXELS = 16 * 1024 * 1024  # ... and at most this many pixels (one image may exceed it alone)
HEATMAP_MAX_SIDE = 1024  # heatmaps are drawn at most this large (masks keep the image's size)
NAME_MAX = 100

EPILOG = """\
examples:
  pyimgano predict --model model/ data/new/ --out predictions/
  pyimgano predict --model model/ 'line3/*.png' part7.png --out predictions/ --save-json --save-maps

Writes OUT/predictions.csv (per image: score, p-value (the share of the model's normal
calibration scores at or above the image's score, conformal: small first), label,
anomalous pixel fraction, number of defect regions, the largest region's area and bounding box, the files written),
OUT/masks/*.png (255 where the post-processed map is above the pixel threshold) and
OUT/heatmaps/*.png (the post-processed map over the image, at most 1024 px a side; blue
normal, red anomalous, the pixel threshold halfway). --save-json adds OUT/predictions.json
with every region's bounding box [x, y, width, height], area and peak map value; --json
prints the summary as JSON on stdout.

An image that cannot be read is skipped and reported: a row with its error in
predictions.csv, a count in the summary, exit status 1 (--strict stops at the first, exit 2).
OUT is written whole, beside it, and swapped in at the end: an interrupted run leaves what
was there before; OUT must be new, empty or an earlier predict output holding only its own
files, outside the input folders; one run at a time writes it (docs/reliability.md).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pyimgano.cli.options import add_deprecated, add_json_option

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("--model", required=True, metavar="MODEL_DIR", help="a folder saved by pyimgano fit")
    parser.add_argument("images", nargs="+", metavar="IMAGES", help="image files, folders (recursive) or globs")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--image-threshold", metavar="SPEC",
                        help="image threshold instead of the model's: V or fixed:V")
    parser.add_argument("--pixel-threshold", metavar="SPEC",
                        help="pixel threshold (on post-processed maps) instead of the model's: V or fixed:V")
    parser.add_argument("--save-json", action="store_true",
                        help="also write OUT/predictions.json with every defect region of every image")
    add_json_option(parser, "the summary (counts, thresholds, files written)")
    add_deprecated(parser, "--threshold", "--image-threshold", "image_threshold", type=float)
    parser.add_argument("--save-maps", action="store_true",
                        help="also keep the post-processed float32 maps as OUT/maps/<name>.npy")
    parser.add_argument("--strict", action="store_true",
                        help="stop at the first image that cannot be read (default: skip it, report it in "
                             "predictions.csv and the summary, exit 1)")


# -- output names -------------------------------------------------------------------------------
def _clean(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:NAME_MAX] or "image"


def output_names(paths: list[Path]) -> list[str]:
    """A distinct, file-name-safe stem per image (ASCII letters, digits, ``._-``).

    The image's stem; where two clash after cleaning (``a b.png``, ``a-b.png``, or the same
    stem in two folders; compared case-insensitively), their parent folders are prepended,
    then a counter, so no two images ever share an output file.
    """
    names = [_clean(p.stem) for p in paths]
    for depth in range(1, 4):
        keys = [n.casefold() for n in names]
        clashing = {k for k in keys if keys.count(k) > 1}
        if not clashing:
            return names
        names = [_clean("_".join([*p.parent.parts[-depth:], p.stem])) if k in clashing else n
                 for p, n, k in zip(paths, names, keys)]
    taken: set[str] = set()
    unique = []
    for name in names:
        candidate, k = name, 1
        while candidate.casefold() in taken:
            k += 1
            candidate = f"{name}-{k}"
        taken.add(candidate.casefold())
        unique.append(candidate)
    return unique


# -- pictures ----------------------------------------------------------------------------------
def _bounded(array: np.ndarray, max_side: int, nearest: bool = False) -> np.ndarray:
    from PIL import Image

    h, w = array.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return array
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if array.dtype == np.uint8:
        return np.asarray(Image.fromarray(array).resize(size, Image.NEAREST if nearest else Image.BILINEAR))
    return np.asarray(Image.fromarray(np.asarray(array, np.float32)).resize(size, Image.BILINEAR))


def heatmap_overlay(image: np.ndarray, amap: np.ndarray, lo: float, hi: float,
                    max_side: int = HEATMAP_MAX_SIDE) -> np.ndarray:
    """The map over the image (half and half), at most ``max_side`` pixels a side, RGB uint8."""
    from pyimgano.benchmark.overlays import colourise

    image, amap = _bounded(image, max_side), _bounded(amap, max_side)
    heat = colourise(amap, lo, hi)
    return ((heat.astype(np.uint16) + image.astype(np.uint16) + 1) // 2).astype(np.uint8)  # in integers


def heatmap_png(image: np.ndarray, amap: np.ndarray, lo: float, hi: float, path: Path | Any,
                max_side: int = HEATMAP_MAX_SIDE) -> None:
    """The map over the image, at most ``max_side`` pixels a side, as PNG (a path or a binary file)."""
    from PIL import Image

    picture = Image.fromarray(heatmap_overlay(image, amap, lo, hi, max_side))
    if hasattr(path, "write"):
        picture.save(path, format="PNG")
        return
    with open(path, "wb") as handle:
        picture.save(handle, format="PNG")


def colour_range(pipe: Any, first_maps: list[np.ndarray]) -> tuple[float, float]:
    """The heatmaps' colour range: the pipeline's (from its validation maps), else from the
    first batch (a model folder saved before pipelines), the pixel threshold halfway."""
    known = (pipe.calibration_ or {}).get("heatmap_range")
    if known:
        return float(known[0]), float(known[1])
    values = np.concatenate([m.ravel()[:: max(1, m.size // 4096)] for m in first_maps])
    lo, hi = float(values.min()), float(np.percentile(values, 99.9))
    threshold = pipe.pixel_threshold_
    if threshold is not None and threshold > lo:
        hi = 2 * threshold - lo
    return lo, (hi if hi > lo else lo + 1.0)


# -- batches -----------------------------------------------------------------------------------
def batches(files: list[Path], failed: dict[int, str] | None = None) -> list[list[int]]:
    """Indices of ``files`` in batches of at most :data:`BATCH` images and :data:`BATCH_PIXELS`
    pixels (read from the headers). With ``failed``, an image whose header cannot be read is
    left out and its error kept there by index; without it, the error is raised."""
    from pyimgano.errors import ImageLoadError
    from pyimgano.images import read_image_size

    out: list[list[int]] = []
    current: list[int] = []
    pixels = 0
    for i, path in enumerate(files):
        try:
            h, w = read_image_size(path)
        except ImageLoadError as exc:
            if failed is None:
                raise
            failed[i] = str(exc)
            continue
        if current and (len(current) >= BATCH or pixels + h * w > BATCH_PIXELS):
            out.append(current)
            current, pixels = [], 0
        current.append(i)
        pixels += h * w
    if current:
        out.append(current)
    return out


class _JsonWriter:
    """predictions.json written image by image (into the staged output folder)."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.handle = open(path, "w", encoding="ascii")
        head = json.dumps(header, indent=2)[:-2]  # reopen the object to append "images"
        self.handle.write(head + ',\n  "images": [')
        self.count = 0

    def add(self, item: dict[str, Any]) -> None:
        self.handle.write(("," if self.count else "") + "\n    " + json.dumps(item))
        self.count += 1

    def close(self) -> None:
        self.handle.write("\n  ]\n}\n")
        self.handle.close()


def _older_output_file(name: str) -> bool:
    """A file of a predict output written before folders recorded their contents."""
    top = name.split("/", 1)[0]
    return name in (PREDICTIONS_CSV, "predictions.json") or (top in ("heatmaps", "masks", "maps") and "/" in name)


def check_out(out: Path, items: list[str], files: list[Path]) -> None:
    """Refuse an ``--out`` inside an input folder, or holding input images: a later run would
    score its own heatmaps and masks as images."""
    resolved = out.resolve()
    for item in items:
        folder = Path(item).expanduser()
        if folder.is_dir() and resolved.is_relative_to(folder.resolve()):
            raise InvalidParams(f"--out {out} is inside the input folder {item}: a later run would score its own "
                                "heatmaps and masks as images; choose an --out outside it")
    inside = next((f for f in files if f.is_relative_to(resolved)), None)
    if inside is not None:
        raise InvalidParams(f"--out {out} holds the input image {inside}: a run would replace what it scores; "
                            "choose an --out outside the inputs")


def run(args: argparse.Namespace) -> int:
    from pyimgano.atomic import check_output_dir, replacing_dir, sigterm_exits
    from pyimgano.cli.inputs import collect_images
    from pyimgano.cli.options import fixed_threshold
    from pyimgano.pipeline import load

    out = Path(args.out).expanduser()
    check_output_dir(out, PREDICTIONS_CSV, OUTPUT_KIND, legacy=_older_output_file)
    image_override = fixed_threshold(args.image_threshold, "--image-threshold")
    pixel_override = fixed_threshold(args.pixel_threshold, "--pixel-threshold")
    save_json = args.save_json
    if args.json and not save_json:  # the old meaning of --json, kept for one release
        print("warning: --json prints the summary as JSON on stdout, as in every command; it writes "
              "predictions.json in this release only: use --save-json for the file", file=sys.stderr)
        save_json = True
    pipe = load(args.model)
    if image_override is not None:
        pipe.image_threshold_ = image_override
        if pipe.calibration_.get("legacy") and pixel_override is None and pipe.traits.pixel_maps:
            pixel_override = image_override  # as before pipelines: masks at the image threshold
    if pixel_override is not None:
        if not pipe.traits.pixel_maps:
            raise InvalidParams(f"--pixel-threshold: {pipe.traits.name} gives no anomaly maps")
        pipe.pixel_threshold_ = pixel_override
    files = collect_images(args.images, "images to score")
    check_out(out, args.images, files)
    failed: dict[int, str] = {}
    groups = batches(files, None if args.strict else failed)
    header = {"model": str(Path(args.model)), "detector": pipe.traits.name,
              "image_threshold": pipe.image_threshold_, "pixel_threshold": pipe.pixel_threshold_,
              "promise": None if pipe.promise_ is None else pipe.promise_.to_dict(),
              "bbox": "[x, y, width, height] in pixels of the image, origin top left"}
    target = out.resolve() if out.is_symlink() else out  # a link keeps pointing at the output
    with sigterm_exits("terminated: nothing written; the output folder holds what it held before"), \
            replacing_dir(target, what=OUTPUT_KIND, wait=False, durable=False) as staged:
        rows = _predict_into(staged, pipe, files, groups, failed, header if save_json else None, args)
    written = [out / PREDICTIONS_CSV] + ([out / "predictions.json"] if save_json else [])
    print(_summary(pipe, rows, written, as_json=args.json, promise=None if image_override is not None else pipe.promise_))
    return 1 if failed else 0


def _predict_into(folder: Path, pipe: Any, files: list[Path], groups: list[list[int]], failed: dict[int, str],
                  json_header: dict[str, Any] | None, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Score every batch and write the outputs into ``folder``; the rows, in the order of ``files``.
    An image that cannot be read is a row with its error (``failed`` by index; raised with --strict)."""
    from rich.progress import Progress

    from pyimgano.benchmark.results import rows_to_csv
    from pyimgano.errors import ImageLoadError
    from pyimgano.images import load_image

    names = output_names(files)
    dirs = {"heatmaps": folder / "heatmaps", "masks": folder / "masks", "maps": folder / "maps"}
    writer = None if json_header is None else _JsonWriter(folder / "predictions.json", json_header)
    rows: dict[int, dict[str, Any]] = {}
    scale: tuple[float, float] | None = None
    with contextlib.ExitStack() as cleanup, Progress(transient=True) as progress:
        if writer is not None:
            cleanup.callback(writer.handle.close)  # on an error too (closing twice is harmless)
        task = progress.add_task(f"predicting with {pipe.traits.name}", total=len(files))
        progress.advance(task, len(failed))
        for group in groups:
            images: dict[int, np.ndarray] = {}
            for i in group:
                try:
                    images[i] = load_image(files[i])
                except ImageLoadError as exc:
                    if args.strict:
                        raise
                    failed[i] = str(exc)
            readable = list(images)
            result = pipe.predict([images[i] for i in readable]) if readable else None
            if result is not None and result.maps is not None and scale is None:
                scale = colour_range(pipe, result.maps)
            for k, i in enumerate(readable):
                rows[i], regions = _outputs(result, k, images[i], files[i], names[i], dirs, scale, args.save_maps)
                if writer is not None:
                    writer.add({key: rows[i][key] for key in ("image", "score", "p_value", "label",
                                                              "anomalous_fraction",
                                                              "heatmap", "mask") if key in rows[i]}
                               | {"regions": regions})
            progress.advance(task, len(group))
            del images, result
        for i, error in failed.items():
            rows[i] = {"image": str(files[i]), "error": error}
            if writer is not None:
                writer.add({"image": str(files[i]), "error": error})
        if writer is not None:
            writer.close()
    ordered = [rows[i] for i in sorted(rows)]
    columns = ["image", "score", "p_value", "label", "anomalous_fraction", "n_regions", "largest_area", "largest_x",
               "largest_y", "largest_width", "largest_height", "heatmap", "mask"] + (["map"] if args.save_maps else [])
    (folder / PREDICTIONS_CSV).write_bytes(rows_to_csv(ordered, columns + ["error"]).encode("utf-8", "surrogateescape"))
    return ordered


def _summary(pipe: Any, rows: list[dict[str, Any]], written: list[Path], as_json: bool, promise: Any = None) -> str:
    """What predict says at the end: one line, or with --json the same facts as JSON;
    ``promise``: the image threshold's :class:`pyimgano.calibration.Promise` (None when the
    threshold was overridden: it promises nothing)."""
    n_failed = sum(1 for r in rows if r.get("error"))
    n_anomalous = sum(1 for r in rows if r.get("label") == 1)
    if as_json:
        return json.dumps({"n_images": len(rows) - n_failed, "n_failed": n_failed,
                           "n_anomalous": None if pipe.image_threshold_ is None else n_anomalous,
                           "image_threshold": pipe.image_threshold_, "pixel_threshold": pipe.pixel_threshold_,
                           "promise": None if promise is None else promise.to_dict(),
                           "files": [str(p) for p in written]}, indent=2)
    summary = f"{len(rows) - n_failed} image(s) scored"
    if pipe.image_threshold_ is None:
        summary += "; no threshold in the model: labels left empty (pass --image-threshold)"
    else:
        summary += f", {n_anomalous} anomalous (image threshold {pipe.image_threshold_:.6g}"
        summary += f", pixel threshold {pipe.pixel_threshold_:.6g})" if pipe.pixel_threshold_ is not None else ")"
        if promise is not None:
            summary += f"; {promise.line()}"
    if n_failed:
        summary += f"; {n_failed} image(s) could not be read: skipped, each row in {PREDICTIONS_CSV} names its error"
    return f"{summary}; wrote {' and '.join(map(str, written))}"


def _outputs(result: Any, k: int, image: np.ndarray, path: Path, name: str, dirs: dict[str, Path],
             scale: tuple[float, float] | None, save_maps: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Write one image's mask, heatmap (and map); its CSV row and its regions."""
    from PIL import Image

    from pyimgano.pipeline import find_regions

    row: dict[str, Any] = {"image": str(path), "score": float(result.scores[k]),
                           "p_value": None if result.p_values is None else round(float(result.p_values[k]), 6),
                           "label": None if result.labels is None else int(result.labels[k])}
    regions: list[dict[str, Any]] = []
    amap = None if result.maps is None else result.maps[k]
    if amap is not None and scale is not None:
        dirs["heatmaps"].mkdir(exist_ok=True)
        heatmap_png(image, amap, *scale, dirs["heatmaps"] / f"{name}.png")
        row["heatmap"] = f"heatmaps/{name}.png"
        if save_maps:
            dirs["maps"].mkdir(exist_ok=True)
            np.save(dirs["maps"] / f"{name}.npy", np.asarray(amap, dtype=np.float32))
            row["map"] = f"maps/{name}.npy"
    if result.masks is not None:
        mask = result.masks[k]
        dirs["masks"].mkdir(exist_ok=True)
        Image.fromarray(mask.astype(np.uint8) * 255).save(dirs["masks"] / f"{name}.png")
        regions = find_regions(mask, amap)
        row.update(mask=f"masks/{name}.png", anomalous_fraction=round(float(mask.mean()), 6), n_regions=len(regions))
        if regions:
            x, y, w, h = regions[0]["bbox"]
            row.update(largest_area=regions[0]["area"], largest_x=x, largest_y=y, largest_width=w, largest_height=h)
    return row, regions
