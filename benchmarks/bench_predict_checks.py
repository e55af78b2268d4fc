"""What the checks on saved files and output folders cost ``pyimgano predict`` over 100 images.

    flock /tmp/pyimgano-heavy.lock .venv/bin/python benchmarks/bench_predict_checks.py
    .venv/bin/python benchmarks/bench_predict_checks.py --images 100 --rounds 5 --max-ratio 0.02

Fits the default detector (faiss:patchcore with the offline backbone, ``--image-size``) on
seeded synthetic images, then runs ``pyimgano predict`` in this process over ``--images``
more, ``--rounds`` times into the same output folder (so every run after the first
replaces an earlier output, the path that checks the most). In the same state it times
each check alone (median of ``--repeats``):

- the pipeline file read back: size cap, every field against its bounds, the detector
  against the model file (``read_pipeline_file``);
- the output folder: an earlier predict output holding only its own files
  (``check_output_dir``, a walk of the folder and its contents record);
- ``--out`` outside the inputs (``check_out``);
- the contents record written into the staged folder, and the lock taken and released.

Not counted, for reference: ``fsync`` of every file of the output, which saved models pay
before their swap and predict does not (``replacing_dir(durable=False)``: a predict output is
cheap to write again; its swap guards against kills and errors).

Printed: each check's median and its ratio to the median predict wall time, and their sum.
``--max-ratio`` makes the script exit 1 when the sum's ratio exceeds it. The machine's
load falls on both sides alike: the ratio is the figure to read, not the seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image


def synthetic(folder: Path, count: int, side: int, seed: int) -> list[Path]:
    """Seeded textured images (a weave plus noise), one in ten with a bright scratch."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    base = 128 + 40 * np.sin(xx / 3.0) * np.cos(yy / 5.0)
    paths = []
    for i in range(count):
        image = base[..., None] + rng.normal(0, 10, (side, side, 3))
        if i % 10 == 9:
            row = int(rng.integers(side // 4, 3 * side // 4))
            image[row : row + 3, side // 4 : 3 * side // 4] = 255
        path = folder / f"{i:04d}.png"
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def median_s(function: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100, help="images per predict run (default 100)")
    parser.add_argument("--rounds", type=int, default=3, help="predict runs timed (default 3)")
    parser.add_argument("--repeats", type=int, default=20, help="runs of each check alone (default 20)")
    parser.add_argument("--image-size", type=int, default=128, help="the detector's image_size (default 128)")
    parser.add_argument("--max-ratio", type=float, default=None, help="exit 1 when the checks' share exceeds it")
    args = parser.parse_args()

    from pyimgano.atomic import _fsync_tree, _record_contents, check_output_dir, output_lock
    from pyimgano.cli import main as cli
    from pyimgano.cli.inputs import collect_images
    from pyimgano.cli.predict import OUTPUT_KIND, PREDICTIONS_CSV, _older_output_file, check_out
    from pyimgano.detector import load_detector
    from pyimgano.pipeline import PIPELINE_FILE, read_pipeline_file

    with tempfile.TemporaryDirectory(prefix="bench-predict-checks-") as tmp:
        root = Path(tmp)
        synthetic(root / "train", 16, 256, seed=0)
        synthetic(root / "test", args.images, 256, seed=1)
        model, out = root / "model", root / "pred"
        quiet = contextlib.redirect_stdout(io.StringIO())
        with quiet, contextlib.redirect_stderr(io.StringIO()):
            fit = cli(["fit", "--train", str(root / "train"), "--out", str(model),
                       "--set", f"image_size={args.image_size}", "--set", "progress=false"])
        if fit != 0:
            print(f"fit failed with exit status {fit}", file=sys.stderr)
            return 2
        predict = ["predict", "--model", str(model), str(root / "test"), "--out", str(out)]
        walls = []
        for _ in range(args.rounds + 1):  # the first run warms the caches and is not counted
            started = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                status = cli(predict)
            walls.append(time.perf_counter() - started)
            if status != 0:
                print(f"predict failed with exit status {status}", file=sys.stderr)
                return 2
        wall = statistics.median(walls[1:])

        detector = load_detector(model)
        items = [str(root / "test")]
        files = collect_images(items)

        def lock() -> None:
            with output_lock(out, wait=False):
                pass

        checks = {
            "pipeline file read back": lambda: read_pipeline_file(model / PIPELINE_FILE, detector),
            "output folder check": lambda: check_output_dir(out, PREDICTIONS_CSV, OUTPUT_KIND,
                                                            legacy=_older_output_file),
            "--out outside the inputs": lambda: check_out(out, items, files),
            "contents record": lambda: _record_contents(out),
            "lock": lock,
        }
        costs = {name: median_s(check, args.repeats) for name, check in checks.items()}
        fsync = median_s(lambda: _fsync_tree(out), args.repeats)

    total = sum(costs.values())
    print(f"predict over {args.images} images, faiss:patchcore image_size {args.image_size}: "
          f"median {wall:.3f} s of {args.rounds} runs ({', '.join(f'{w:.2f}' for w in walls[1:])})")
    width = max(map(len, costs))
    for name, cost in costs.items():
        print(f"  {name:<{width}}  {cost * 1000:8.3f} ms  {cost / wall:8.4%}")
    print(f"  {'all checks':<{width}}  {total * 1000:8.3f} ms  {total / wall:8.4%}")
    print(f"  (not paid by predict: fsync of every output file {fsync * 1000:.3f} ms, {fsync / wall:.4%})")
    if args.max_ratio is not None and total / wall > args.max_ratio:
        print(f"the checks take {total / wall:.2%} of predict, above {args.max_ratio:.2%}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
