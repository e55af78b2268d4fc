"""``pyimgano fit``: fit an inspection pipeline on good images and save it (JSON + arrays, no pickle).

Everything the command line gives is checked before any image is read: the output path,
the detector and its parameters, the post-processing config, both threshold specs and the
validation fraction.
"""

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
      --train 'data/train/*.png' --val data/heldout_good/ --out model/
  pyimgano fit --train data/good/ --postprocess '[{"name": "gaussian", "sigma": 2}, {"name": "standardize"}]' \\
      --image-threshold quantile:0.995 --pixel-threshold quantile:0.9995 --out model/

The detector fits on the training images; the post-processing statistics, the image
threshold (on normal calibration scores) and the pixel threshold (on their maps) fit on
calibration images: --val (held-out good images), else --calibration: auto (out-of-fold
scores of every training image when the detector offers them, else holdout), holdout (a
seeded --val-fraction, default 0.1, kept out of the detector's fit), oof, or kfold[:K].
Threshold specs: fpr:ALPHA (a false-reject rate for good parts, e.g. fpr:0.01), quantile:Q
(of calibration scores or pixels), fixed:V, f1 (labelled images only). fit prints the
promise: the target rate and its 95% upper bound from the number of calibration scores.

Few-shot: --defects DIR (a few labelled defective images) and --defect-masks DIR tune the
post-processing and both thresholds on the validation images and the defects (F1-optimal),
and train a detector that learns from anomalies with them (docs/few-shot.md):
  pyimgano fit --train good/ --defects defects/ --defect-masks masks/ --out model/
`pyimgano predict --model DIR` applies the saved pipeline. docs/pipeline.md has the details.
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
    parser.add_argument("--out", required=True, metavar="MODEL_DIR",
                        help="where to save the pipeline (a new or empty folder, or an earlier model folder)")
    parser.add_argument("--val", "--calibrate", action="append", default=[], metavar="DIR_OR_GLOB", dest="val",
                        help="held-out good images to calibrate on (repeatable); default: --val-fraction of --train")
    parser.add_argument("--val-fraction", "--holdout", type=float, default=None, metavar="F", dest="val_fraction",
                        help="without --val: share of the training images held out to calibrate (default 0.1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the validation split (default 0)")
    parser.add_argument("--calibration", metavar="SOURCE", default=None,
                        help="without --val, where calibration scores come from: "
                             + "; ".join(f"{k}: {v}" for k, v in calibration_sources().items())
                             + f" (default {default_calibration()})")
    parser.add_argument("--postprocess", metavar="CONFIG",
                        help="post-processing: 'default' (the detector's), 'none' (raw maps), a JSON list of "
                             "steps or a JSON file (docs/postprocess.md)")
    parser.add_argument("--image-threshold", metavar="SPEC",
                        help="image threshold: fpr:ALPHA (false-reject rate of good parts), quantile:Q of "
                             f"calibration scores, fixed:V or f1 (default {default_image_threshold()})")
    parser.add_argument("--pixel-threshold", metavar="SPEC",
                        help="pixel threshold: quantile:Q of validation map pixels (default: the documented "
                             "quantile), fixed:V, or none (no masks)")
    parser.add_argument("--defects", action="append", default=[], metavar="DIR_OR_GLOB",
                        help="a few labelled defective images (repeatable): few-shot mode, they tune post-processing "
                             "and both thresholds (and train a detector that learns from anomalies); docs/few-shot.md")
    parser.add_argument("--defect-masks", metavar="DIR",
                        help="their defect masks, matched by name (<stem>.png or <stem>_mask.png, searched "
                             "recursively); without them only the image threshold is tuned")
    add_few_shot_tuning_arguments(parser, "with --defects: calibrate only, even for a detector that learns from "
                                          "anomalies")
    parser.add_argument("--quantile", type=float, metavar="Q", help="shorthand for --image-threshold quantile:Q")
    parser.add_argument("--threshold", type=float, metavar="VALUE", help="shorthand for --image-threshold fixed:VALUE")


def calibration_sources() -> dict[str, str]:
    from pyimgano.calibration import CALIBRATION_SOURCES

    return CALIBRATION_SOURCES


def default_calibration() -> str:
    from pyimgano.calibration import DEFAULT_CALIBRATION

    return DEFAULT_CALIBRATION


def default_image_threshold() -> str:
    from pyimgano.thresholds import DEFAULT_IMAGE_THRESHOLD

    return DEFAULT_IMAGE_THRESHOLD


def collect_images(items: list[str], what: str = "images", flag: str | None = None) -> list[Path]:
    """Image files from folders (recursive), globs and plain files, in order, without repeats;
    errors start with ``flag`` (e.g. ``--defects``) when given."""
    from pyimgano.images import IMAGE_EXTENSIONS, list_image_files

    lead = f"{flag} " if flag else ""
    found: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            files = list_image_files(path)
            if not files:
                raise ImageLoadError(f"{lead}{path}: folder holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
        elif path.is_file():
            files = [path]
        elif glob.has_magic(item):
            files = sorted(
                Path(p) for p in glob.glob(str(path), recursive=True)
                if Path(p).is_file() and Path(p).suffix.lower() in IMAGE_EXTENSIONS
            )
            if not files:
                raise ImageLoadError(f"{lead}{item}: the pattern matches no image files")
        else:
            raise ImageLoadError(f"{lead}{item}: no such file or folder")
        found.extend(files)
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise ImageLoadError(f"no {what} given")
    return unique


def find_masks(defects: list[Path], folder: str) -> list[Path]:
    """The mask of each defect image in ``folder`` (searched recursively): a file named like
    the image (``<stem>``, or ``<stem>_mask`` as in MVTec AD), preferably in a subfolder named
    like the image's; every defect needs exactly one."""
    from pyimgano.images import IMAGE_EXTENSIONS, list_image_files

    root = Path(folder).expanduser()
    if not root.is_dir():
        raise ImageLoadError(f"--defect-masks {folder}: no such folder")
    candidates: dict[str, list[Path]] = {}
    for path in list_image_files(root):
        stem = path.stem[: -len("_mask")] if path.stem.endswith("_mask") else path.stem
        candidates.setdefault(stem, []).append(path)
    found, missing = [], []
    for image in defects:
        options = candidates.get(image.stem, [])
        if len(options) > 1:
            options = [p for p in options if p.parent.name == image.parent.name] or options
        if len(options) != 1:
            missing.append(f"{image.name} ({'no mask' if not options else f'{len(options)} candidates'})")
        else:
            found.append(options[0])
    if missing:
        raise ImageLoadError(
            f"--defect-masks {folder}: {len(missing)} of {len(defects)} defect image(s) without exactly one mask: "
            f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}; a mask is named <stem> or <stem>_mask "
            f"({', '.join(IMAGE_EXTENSIONS)})")
    for image, mask in zip(defects, found):  # sizes from the file headers: a mismatch fails before any fitting
        image_size, mask_size = _file_size(image), _file_size(mask)
        if None not in (image_size, mask_size) and image_size != mask_size:
            raise ImageLoadError(f"--defect-masks {folder}: {mask} is {mask_size[0]}x{mask_size[1]} pixels, "
                                 f"its image {image} {image_size[0]}x{image_size[1]}")
    return found


def _file_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of an image file from its header; None where it cannot be read (reading it later says why)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError):
        return None


def add_few_shot_tuning_arguments(parser: argparse.ArgumentParser, no_training_help: str) -> None:
    """--few-shot-objective, --few-shot-search, --no-few-shot-training (fit and benchmark)."""
    parser.add_argument("--few-shot-objective", choices=["pixel_f1", "aupro"],
                        help="what the few-shot post-processing search maximises (default pixel_f1)")
    parser.add_argument("--few-shot-search", metavar="JSON",
                        help='few-shot post-processing candidates, e.g. \'{"sigma": [2, 4], "open_size": [], '
                             '"min_area": [64]}\' (default: docs/few-shot.md)')
    parser.add_argument("--no-few-shot-training", action="store_true", help=no_training_help)


def few_shot_settings(args: argparse.Namespace) -> Any:
    """--few-shot-objective, --few-shot-search, --no-few-shot-training as settings (checked)."""
    from pyimgano.fewshot import FewShotSettings

    settings: dict[str, Any] = {"train": not args.no_few_shot_training}
    if args.few_shot_objective:
        settings["objective"] = args.few_shot_objective
    if args.few_shot_search:
        try:
            settings["search"] = json.loads(args.few_shot_search)
        except ValueError as exc:
            raise InvalidParams(f"--few-shot-search {args.few_shot_search!r}: not JSON ({exc})") from None
    return FewShotSettings.of(settings)


def parse_params(assignments: list[str]) -> dict[str, Any]:
    """``--set key=value`` items of a single detector (``NAME.key`` is accepted too)."""
    from pyimgano.benchmark.config import parse_assignment

    params = {}
    for item in assignments:
        _, key, value = parse_assignment(item)
        params[key] = value
    return params


def image_threshold_spec(args: argparse.Namespace) -> str:
    """--image-threshold, or its shorthands --quantile / --threshold (one of them at most)."""
    given = [f for f, v in (("--image-threshold", args.image_threshold), ("--quantile", args.quantile),
                            ("--threshold", args.threshold)) if v is not None]
    if len(given) > 1:
        raise InvalidParams(f"{' and '.join(given)} both set the image threshold; "
                            "give one of --image-threshold, --quantile, --threshold")
    if args.quantile is not None:
        return f"quantile:{args.quantile!r}"
    if args.threshold is not None:
        return f"fixed:{args.threshold!r}"
    return args.image_threshold or default_image_threshold()


def build_pipeline(args: argparse.Namespace) -> Any:
    """The unfitted pipeline the flags describe; every flag checked, no image read."""
    from pyimgano.benchmark.config import DEFAULT_DETECTOR, DEFAULT_DETECTOR_PARAMS
    from pyimgano.pipeline import DEFAULT, DEFAULT_VAL_FRACTION, Pipeline, parse_postprocess
    from pyimgano.registry import create_detector

    name = args.detector or DEFAULT_DETECTOR
    params = (dict(DEFAULT_DETECTOR_PARAMS) if args.detector is None else {}) | parse_params(args.assignments)
    image_threshold = image_threshold_spec(args)
    postprocess = DEFAULT if args.postprocess is None else parse_postprocess(args.postprocess)
    pixel: Any = DEFAULT if args.pixel_threshold is None else args.pixel_threshold
    if isinstance(pixel, str) and pixel.strip().lower() == "none":
        pixel = None
    if args.val and args.val_fraction is not None:
        raise InvalidParams("give --val (held-out images) or --val-fraction (a share of --train), not both")
    val_fraction = DEFAULT_VAL_FRACTION if args.val_fraction is None else args.val_fraction
    detector = create_detector(name, **params)
    if args.val_fraction is not None and args.calibration not in (None, "holdout"):
        raise InvalidParams(f"--val-fraction holds images out, --calibration {args.calibration} does not; give one")
    calibration = "holdout" if args.val_fraction is not None else (args.calibration or default_calibration())
    return Pipeline(detector, postprocess=postprocess, image_threshold=image_threshold, pixel_threshold=pixel,
                    val_fraction=0.0 if args.val else val_fraction, seed=args.seed, calibration=calibration)


def describe_fit(pipe: Any) -> str:
    """One line on what was fitted, for the terminal."""
    steps = ", ".join(s["name"] for s in pipe.postprocess) or "none (raw maps)"
    parts = [f"image threshold {pipe.image_threshold_:.6g} ({pipe.image_threshold.spec()})"]
    if pipe.pixel_threshold_ is not None:
        parts.append(f"pixel threshold {pipe.pixel_threshold_:.6g} ({pipe.pixel_threshold.spec()})")
    if pipe.few_shot_:
        record = pipe.few_shot_
        parts.append(f"tuned on {record['k']} defective image(s)"
                     + (" (image threshold only)" if record["image_only"] else "")
                     + (", detector trained with them" if record["trained"] else ""))
    if pipe.promise_ is not None and not pipe.few_shot_:
        parts.append(pipe.promise_.line())
    chosen = describe_choices(pipe.detector)
    n_cal = f"{pipe.n_val_} validation" if pipe.calibration_.get("source") in ("holdout", "validation") \
        else f"{pipe.n_val_} out-of-fold calibration"
    return (f"{pipe.n_train_} train, {n_cal} image(s); " + (f"{chosen}; " if chosen else "")
            + f"post-processing: {steps}; " + "; ".join(parts))


def describe_choices(detector: Any) -> str:
    """What fit chose for the detector's automatic parameters (input size, coreset ratio...)."""
    from pyimgano.detector import fitted_attributes

    def text(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3g}"
        return "x".join(map(str, value)) if isinstance(value, list) else str(value)

    shown = [f"{name.rstrip('_')} {text(value)}" for name, value in fitted_attributes(detector).items()
             if not isinstance(value, bool)]  # is_fitted_ says nothing here
    return "detector " + ", ".join(shown) if shown else ""


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from pyimgano.atomic import check_output_dir
    from pyimgano.detector import MODEL_CONFIG_FILE

    console = Console(stderr=True)
    out = Path(args.out).expanduser()
    check_output_dir(out, MODEL_CONFIG_FILE)  # before anything is read or fitted
    pipe = build_pipeline(args)
    files = collect_images(args.train, "training images")
    val_files = collect_images(args.val, "validation images") if args.val else None
    defects, masks, settings = None, None, None
    if args.defects:
        settings = few_shot_settings(args)
        defects = collect_images(args.defects, "defective images", "--defects")
        masks = find_masks(defects, args.defect_masks) if args.defect_masks else None
    elif args.defect_masks or args.few_shot_objective or args.few_shot_search or args.no_few_shot_training:
        raise InvalidParams("--defect-masks and the --few-shot-* flags go with --defects (the labelled defective images)")
    pipe.check_fit(len(files), val_files is not None)
    console.print(f"fitting {pipe.traits.name} on {len(files)} image(s)"
                  + (f", calibrating on {len(val_files)}" if val_files else
                     f", calibrating on their out-of-fold scores ({pipe.calibration_source})"
                     if pipe.calibration_source != "holdout" else
                     f" ({pipe.val_fraction:g} held out to calibrate, seed {pipe.seed})" if pipe.val_fraction else "")
                  + (f"; few-shot with {len(defects)} defective image(s)" + ("" if masks else " (no masks)")
                     if defects else ""))
    started = time.perf_counter()
    with console.status("fitting..."):
        if defects:
            pipe.fit(files, val_images=val_files, anomalies=defects, anomaly_masks=masks, few_shot=settings)
        else:
            pipe.fit(files, val_images=val_files)
    fit_s = time.perf_counter() - started
    for note in [*pipe.calibration_.get("notes", []), *(pipe.few_shot_ or {}).get("notes", [])]:
        console.print(f"note: {note}")
    held = set(pipe.val_indices_ or [])
    if val_files is None:
        val_files = [f for i, f in enumerate(files) if i in held]
        files = [f for i, f in enumerate(files) if i not in held]
    training = {
        "detector": pipe.traits.name,
        "n_train": pipe.n_train_,
        "n_val": pipe.n_val_,
        "train": [str(p) for p in files],
        "val": [str(p) for p in val_files],
        "val_fraction": None if not held else pipe.val_fraction,
        "calibration": pipe.calibration_.get("source"),
        "seed": pipe.seed,
        "fit_s": round(fit_s, 3),
    }
    if defects:
        training["defects"] = [str(p) for p in defects]
        training["defect_masks"] = None if masks is None else [str(p) for p in masks]
    text = json.dumps(training, indent=2, ensure_ascii=True) + "\n"
    pipe.save(out, extra_files={TRAINING_FILE: text})
    print(f"saved the {pipe.traits.name} pipeline to {out} (fit {fit_s:.1f} s): {describe_fit(pipe)}")
    return 0
