"""``pyimgano fit``: fit an inspection pipeline on good images and save it (JSON + arrays, no pickle).

Everything the command line gives is checked before any image is read: the output path,
the detector and its parameters, the post-processing config, both threshold specs and the
validation fraction.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from pyimgano.errors import InvalidParams

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
    from pyimgano.cli.options import add_deprecated, add_few_shot_options, add_model_options, add_set_option
    from pyimgano.pipeline.settings import PipelineSettings

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("--detector", metavar="NAME",
                        help="detector (default: faiss:patchcore with the offline backbone)")
    add_set_option(parser, "detector parameter (repeatable); values are JSON where they parse")
    parser.add_argument("--train", action="append", required=True, metavar="DIR_OR_GLOB",
                        help="good training images: a folder (searched recursively), a glob or a file; repeatable")
    parser.add_argument("--out", required=True, metavar="MODEL_DIR",
                        help="where to save the pipeline (a new or empty folder, or an earlier model folder)")
    parser.add_argument("--val", action="append", default=[], metavar="DIR_OR_GLOB", dest="val",
                        help="held-out good images to calibrate on (repeatable); default: --val-fraction of --train")
    parser.add_argument("--seed", type=int, default=0, help="seed of the validation split (default 0)")
    add_model_options(parser, PipelineSettings)
    parser.add_argument("--defects", action="append", default=[], metavar="DIR_OR_GLOB",
                        help="a few labelled defective images (repeatable): few-shot mode, they tune post-processing "
                             "and both thresholds (and train a detector that learns from anomalies); docs/few-shot.md")
    parser.add_argument("--defect-masks", metavar="DIR",
                        help="their defect masks, matched by name (<stem>.png or <stem>_mask.png, searched "
                             "recursively); without them only the image threshold is tuned")
    add_few_shot_options(parser, "with --defects: calibrate only, even for a detector that learns from anomalies")
    add_deprecated(parser, "--calibrate", "--val", "val", convert=lambda v: [v], metavar="DIR_OR_GLOB")
    add_deprecated(parser, "--holdout", "--val-fraction", "val_fraction", type=float)
    add_deprecated(parser, "--quantile", "--image-threshold", "image_threshold", convert=lambda q: f"quantile:{q!r}", type=float)
    add_deprecated(parser, "--threshold", "--image-threshold", "image_threshold", convert=lambda v: f"fixed:{v!r}", type=float)


def build_pipeline(args: argparse.Namespace) -> Any:
    """The unfitted pipeline the flags describe; every flag checked, no image read."""
    from pyimgano.benchmark.config import DEFAULT_DETECTOR, DEFAULT_DETECTOR_PARAMS
    from pyimgano.cli.options import given_settings, parse_params
    from pyimgano.factories import create_detector
    from pyimgano.pipeline import Pipeline
    from pyimgano.pipeline.settings import PipelineSettings

    name = args.detector or DEFAULT_DETECTOR
    params = (dict(DEFAULT_DETECTOR_PARAMS) if args.detector is None else {}) | parse_params(args.assignments)
    settings = PipelineSettings.of(given_settings(args, PipelineSettings))
    if args.val and args.val_fraction is not None:
        raise InvalidParams("give --val (held-out images) or --val-fraction (a share of --train), not both")
    if args.val:
        settings = settings.model_copy(update={"val_fraction": 0.0})
    detector = create_detector(name, **params)
    if args.val_fraction is not None:
        if args.calibration not in (None, "holdout"):
            raise InvalidParams(f"--val-fraction holds images out, --calibration {args.calibration} does not; "
                                "give one")
        settings = settings.model_copy(update={"calibration": "holdout"})
    return Pipeline(detector, settings, seed=args.seed)


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

    from pyimgano.cli.inputs import collect_images, find_masks
    from pyimgano.cli.options import few_shot_given
    from pyimgano.detector import check_model_output
    from pyimgano.pipeline.fewshot import FewShotSettings

    console = Console(stderr=True)
    out = Path(args.out).expanduser()
    check_model_output(out)  # before anything is read or fitted
    pipe = build_pipeline(args)
    files = collect_images(args.train, "training images")
    val_files = collect_images(args.val, "validation images") if args.val else None
    defects, masks, settings = None, None, None
    given = few_shot_given(args)
    if args.defects:
        settings = FewShotSettings.of(given)
        defects = collect_images(args.defects, "defective images", "--defects")
        masks = find_masks(defects, args.defect_masks) if args.defect_masks else None
    elif args.defect_masks or given:
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
