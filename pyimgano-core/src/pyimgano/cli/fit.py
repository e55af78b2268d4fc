"""``pyimgano fit``: train a detector on good images and save it (JSON + arrays, no pickle)."""

from __future__ import annotations

import argparse
import glob
import json
import time
from pathlib import Path
from typing import Any

from pyimgano.errors import ImageLoadError, InvalidParams

TRAINING_FILE = "training.json"

EPILOG = """\
examples:
  pyimgano fit --train data/good/ --out model/
  pyimgano fit --detector faiss:patchcore --set backbone=efficientnet_lite0 \\
      --train 'data/train/*.png' --calibrate data/heldout_good/ --out model/

Threshold (score above it = anomalous), first that applies: --threshold VALUE; the
--quantile of the scores of --calibrate images (held-out good images); else --holdout
(default 0.1) of the training images is set aside for that and the rest trains.
The model directory records the detector, its plugin's version and the parameters;
`pyimgano predict --model DIR` loads it back.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("--detector", metavar="NAME",
                        help="detector (default: faiss:patchcore with the offline backbone)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="assignments",
                        help="detector parameter (repeatable); values are JSON where they parse")
    parser.add_argument("--train", action="append", required=True, metavar="DIR_OR_GLOB",
                        help="good training images: a folder (searched recursively), a glob or a file; repeatable")
    parser.add_argument("--out", required=True, metavar="MODEL_DIR", help="where to save the model")
    parser.add_argument("--calibrate", action="append", default=[], metavar="DIR_OR_GLOB",
                        help="held-out good images that set the threshold (repeatable)")
    parser.add_argument("--quantile", type=float, default=0.99,
                        help="threshold = this quantile of the calibration scores (default 0.99)")
    parser.add_argument("--threshold", type=float, metavar="VALUE", help="a fixed threshold instead")
    parser.add_argument("--holdout", type=float, default=0.1, metavar="FRACTION",
                        help="without --calibrate: fraction of training images set aside to calibrate (default 0.1; "
                             "0 trains on all and saves no threshold)")


def collect_images(items: list[str], what: str = "images") -> list[Path]:
    """Image files from folders (recursive), globs and plain files, in order, without repeats."""
    from pyimgano.images import IMAGE_EXTENSIONS, list_image_files

    found: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            files = list_image_files(path)
            if not files:
                raise ImageLoadError(f"{path}: folder holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
        elif path.is_file():
            files = [path]
        elif glob.has_magic(item):
            files = sorted(
                Path(p) for p in glob.glob(str(path), recursive=True)
                if Path(p).is_file() and Path(p).suffix.lower() in IMAGE_EXTENSIONS
            )
            if not files:
                raise ImageLoadError(f"{item}: the pattern matches no image files")
        else:
            raise ImageLoadError(f"{item}: no such file or folder")
        found.extend(files)
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise ImageLoadError(f"no {what} given")
    return unique


def parse_params(assignments: list[str]) -> dict[str, Any]:
    """``--set key=value`` items of a single detector (``NAME.key`` is accepted too)."""
    from pyimgano.benchmark.config import parse_assignment

    params = {}
    for item in assignments:
        _, key, value = parse_assignment(item)
        params[key] = value
    return params


def split_holdout(files: list[Path], fraction: float) -> tuple[list[Path], list[Path]]:
    """Every k-th file (deterministic, spread over the list) for calibration, the rest to train."""
    if fraction <= 0 or len(files) < 2:
        return files, []
    if fraction >= 1:
        raise InvalidParams(f"--holdout must be below 1, got {fraction}")
    n_hold = max(1, round(len(files) * fraction))
    step = len(files) / n_hold
    held = {int(i * step + step / 2) for i in range(n_hold)}
    return [f for i, f in enumerate(files) if i not in held], [f for i, f in enumerate(files) if i in held]


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from pyimgano.benchmark.config import DEFAULT_DETECTOR, DEFAULT_DETECTOR_PARAMS
    from pyimgano.registry import create_detector

    console = Console(stderr=True)
    name = args.detector or DEFAULT_DETECTOR
    params = (dict(DEFAULT_DETECTOR_PARAMS) if args.detector is None else {}) | parse_params(args.assignments)
    files = collect_images(args.train, "training images")
    calibration = collect_images(args.calibrate, "calibration images") if args.calibrate else []
    source = "calibrate"
    if args.threshold is None and not calibration:
        files, calibration = split_holdout(files, args.holdout)
        source = "holdout"
    detector = create_detector(name, **params)
    console.print(f"fitting {detector.component} on {len(files)} image(s)"
                  + (f", calibrating on {len(calibration)}" if calibration and args.threshold is None else ""))
    started = time.perf_counter()
    with console.status("fitting..."):
        detector.fit(files)
    fit_s = time.perf_counter() - started
    if args.threshold is not None:
        detector.set_threshold(args.threshold)
        how = f"fixed at {args.threshold}"
    elif calibration:
        with console.status("calibrating..."):
            detector.calibrate(calibration, strategy={"strategy": "quantile", "q": args.quantile})
        how = f"{args.quantile} quantile of {len(calibration)} {source} image scores"
    else:
        how = "predict gives scores; pass --threshold there for labels"
        console.print("[yellow]warning: no threshold: give --calibrate DIR or keep a --holdout above 0[/]")
    out = detector.save(args.out)
    training = {
        "detector": detector.component,
        "n_train": len(files),
        "train": [str(p) for p in files],
        "calibration": [str(p) for p in calibration] if args.threshold is None else [],
        "threshold": detector.threshold_,
        "threshold_from": how,
        "fit_s": round(fit_s, 3),
    }
    (Path(out) / TRAINING_FILE).write_text(json.dumps(training, indent=2) + "\n")
    thr = "no threshold" if detector.threshold_ is None else f"threshold {detector.threshold_:.6g}"
    print(f"saved {detector.component} to {out} (fit {fit_s:.1f} s, {thr}: {how})")
    return 0
