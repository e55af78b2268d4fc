"""Which anomalib adapters take a non-square network input (``aspect="keep"``).

Each wrapped model is fitted with ``aspect="keep"`` on a few synthetic ``brick`` images
resized to 2:3 (height:width), at its catalog ``check_params`` (two optimiser steps) and an
``image_size`` at or above the model's minimum, then scores images of the training shape
and of another shape, and is saved and loaded again. A row says the fitted network input,
whether scores are finite, whether maps come back at each image's own size, and whether the
reloaded model gives the same scores; a failure prints its first line. Models whose params
refuse ``aspect="keep"`` are run with the refusal bypassed (``model_construct``), so the
table shows why they are refused.

    python benchmarks/check_anomalib_aspect.py [--models patchcore padim] [--n-train 4]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import pyimgano
from pyimgano.images import load_image
from pyimgano.preprocess import resize_image

# image_size per model: the catalog's check size, raised to 96 px (a 64 x 128 input at 2:3);
# models with a larger minimum take their own (CS-Flow: 181 px gives 128 x 256, sides a multiple of 128)
SIZES = {"efficient_ad": 320, "csflow": 181, "supersimplenet": 128}


def _params(name: str, size: int) -> dict:
    spec, _ = pyimgano.get_registry().resolve("detector", f"anomalib:{name}")
    params = dict(spec.capabilities.check_params)
    params["image_size"] = max(size, params.get("image_size", 64))  # the budget stays the catalog's
    return params


def _create(name: str, params: dict):
    """The detector with ``aspect="keep"``; a model that refuses it is built with the check bypassed."""
    try:
        return pyimgano.create_detector(f"anomalib:{name}", **params, aspect="keep"), ""
    except pyimgano.InvalidParams as exc:
        det = pyimgano.create_detector(f"anomalib:{name}", **params)
        det.config = type(det.config).model_construct(**{**det.config.model_dump(), "aspect": "keep"})
        return det, str(exc).split("aspect: ", 1)[-1]


def check(name: str, train: list[np.ndarray], other: np.ndarray) -> dict:
    params = _params(name, SIZES.get(name, 96))
    det, refused = _create(name, params)
    row = {"model": name, "image_size": params["image_size"], "refused": refused}
    start = time.perf_counter()
    try:
        det.fit(train)
        row["input"] = "x".join(map(str, det.input_shape_))
        images = [train[0], other]
        scores, maps = det.score(images)
        row["scores"] = bool(np.isfinite(scores).all())
        row["maps"] = "-" if maps is None else all(m.shape == img.shape[:2] for m, img in zip(maps, images))
        with tempfile.TemporaryDirectory() as tmp:
            det.save(Path(tmp) / "model")
            again, _ = pyimgano.load_detector(Path(tmp) / "model").score(images)
        row["reload"] = bool(np.allclose(again, scores, rtol=1e-3, atol=1e-5))  # PaDiM on 4 images: ~5e-4 noise
        row["result"] = "works" if row["scores"] and row["maps"] is not False and row["reload"] else "wrong output"
    except Exception as exc:  # noqa: BLE001 - the survey reports every failure
        row["result"] = f"fails: {type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:140]}"
    row["s"] = time.perf_counter() - start
    return row


def main() -> None:
    from pyimgano_anomalib.catalog import MODEL_NAMES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(MODEL_NAMES))
    parser.add_argument("--n-train", type=int, default=4)
    args = parser.parse_args()
    data = pyimgano.load_dataset("synthetic", category="brick")
    images = [load_image(s.image_path) for s in data.train[: args.n_train + 1]]
    print(f"{'model':22} {'size':>5} {'input':>8}  scores maps  reload  s      result")
    for name in args.models:
        side = SIZES.get(name, 96)
        shape = (side, side * 3 // 2)  # 2:3
        train = [resize_image(img, shape) for img in images[: args.n_train]]
        other = resize_image(images[-1], (side * 5 // 4, side * 7 // 4))
        row = check(name, train, other)
        print(f"{name:22} {row['image_size']:>5} {row.get('input', '-'):>8}  {str(row.get('scores', '-')):6} "
              f"{str(row.get('maps', '-')):5} {str(row.get('reload', '-')):6} {row['s']:5.1f}  {row['result']}"
              + (f"  [refused: {row['refused']}]" if row["refused"] else ""), flush=True)


if __name__ == "__main__":
    main()
