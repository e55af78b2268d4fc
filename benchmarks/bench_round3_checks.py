"""What the checks of reliability round 3 cost (docs/reliability.md, "Round 3"), as a share of
the work they guard, measured in the same run.

    flock /tmp/pyimgano-heavy.lock .venv/bin/python benchmarks/bench_round3_checks.py
    ... --images 100 --repeats 5 --max-share 0.02

Two workloads, each run as users run them (fresh ``pyimgano`` processes, the plugin
listing saved):

- ``predict`` over ``--images`` generated 96 px images with a saved ``faiss:knn`` model
  (EfficientNet-Lite0 at 64 px); the checks on its path: the state file's kind
  (``userfiles.not_a_file``), the Ctrl-C watch of the command line, plugin output sent to
  stderr while the registry loads;
- the demo (``pyimgano benchmark``, the embedded default: PatchCore on ``synthetic``); the
  checks on its path: the train/test overlap (``benchmark.job.overlap_notes``, on the demo's
  own samples), the training-set overlap check of ``Pipeline.fit`` (on the demo's training
  arrays), parameter bounds (part of the validation pydantic always did: not separable).

Each check is timed in this process on the workload's own inputs (median of ``--repeats``,
many calls each) and printed as a share of the workload's median wall time. The first run
after an install (the discovery child) is printed apart: ``list-plugins --json`` with an
empty cache against one with the saved listing. ``--max-share`` makes the script exit 1
when a workload's share exceeds it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def _wall(command: list[str], env: dict[str, str], repeats: int) -> float:
    return _wall_each([command] * repeats, env)


def _wall_each(commands: list[list[str]], env: dict[str, str]) -> float:
    """Median wall time of running each command once, in turn."""
    times = []
    for command in commands:
        started = time.perf_counter()
        subprocess.run(command, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _per_call(function, repeats: int, calls: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            function()
        times.append((time.perf_counter() - started) / calls)
    return statistics.median(times)


def predict_share(root: Path, env: dict[str, str], images: int, repeats: int) -> tuple[float, float]:
    import pyimgano
    from pyimgano.cli import _SigintWatch
    from pyimgano.plugins import Registry
    from pyimgano.userfiles import not_a_file

    rng = np.random.default_rng(0)
    folder = root / "images"
    folder.mkdir()
    for i in range(images):
        Image.fromarray(rng.integers(60, 190, (96, 96, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    train = [rng.integers(60, 190, (96, 96, 3), dtype=np.uint8) for _ in range(8)]
    model = pyimgano.Pipeline(pyimgano.create_detector("faiss:knn", backbone="efficientnet_lite0", image_size=64,
                                                       progress=False)).fit(train).save(root / "model")
    command = [sys.executable, "-m", "pyimgano", "predict", "--model", str(model), str(folder)]
    _wall([*command, "--out", str(root / "preds0")], env, 1)  # warm-up: saves the listing
    wall = _wall_each([[*command, "--out", str(root / f"preds{i + 1}")] for i in range(repeats)], env)

    def sigint_watch() -> None:
        _SigintWatch().restore()

    def redirect() -> None:
        with contextlib.redirect_stdout(sys.stderr):
            pass

    state = model / "state.npz"
    checks = (_per_call(lambda: not_a_file(state), repeats, 1000) + _per_call(sigint_watch, repeats, 1000)
              + _per_call(redirect, repeats, 1000))
    assert Registry  # the redirect above is what Registry.load adds
    return wall, checks


def demo_share(root: Path, env: dict[str, str], repeats: int) -> tuple[float, float]:
    from pyimgano.benchmark.config import default_config, expand_jobs
    from pyimgano.benchmark.job import _open_dataset, check_samples, load_pair, overlap_notes
    from pyimgano.pipeline import refuse_overlaps

    command = [sys.executable, "-m", "pyimgano", "benchmark", "--no-progress"]
    wall = _wall_each([[*command, "--out", str(root / f"demo{i}")] for i in range(repeats)], env)
    checks = 0.0
    for spec in expand_jobs(default_config(str(root / "specs"))):
        dataset = _open_dataset(spec)
        train = check_samples(spec, list(dataset.train), "train")
        test = check_samples(spec, list(dataset.test), "test")
        arrays = [load_pair(dataset, sample, spec.image_size)[0] for sample in train]
        checks += _per_call(lambda train=train, test=test: overlap_notes(train, test), repeats, 20)
        checks += _per_call(lambda arrays=arrays: refuse_overlaps(arrays), repeats, 20)
    return wall, checks


def first_run(env: dict[str, str], repeats: int) -> tuple[float, float]:
    command = [sys.executable, "-m", "pyimgano", "list-plugins", "--json"]
    cold = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as cache:
            started = time.perf_counter()
            subprocess.run(command, env={**env, "PYIMGANO_CACHE_DIR": cache}, check=True, capture_output=True)
            cold.append(time.perf_counter() - started)
    in_process = _wall(command, {**env, "PYIMGANO_NO_PLUGIN_CACHE": "1", "PYIMGANO_PLUGIN_TIMEOUT": "0"}, repeats)
    return statistics.median(cold), in_process


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-share", type=float, default=None)
    args = parser.parse_args()
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = {**os.environ, "PYIMGANO_CACHE_DIR": str(root / "cache")}
        rows = [("predict", *predict_share(root, env, args.images, args.repeats)),
                ("demo", *demo_share(root, env, args.repeats))]
        for name, wall, checks in rows:
            share = checks / wall
            failed |= args.max_share is not None and share > args.max_share
            print(f"{name:8s} wall {wall:8.2f} s   new checks {checks * 1000:8.3f} ms   share {share:.5%}")
        cold, in_process = first_run(env, args.repeats)
        print(f"first run after an install: list-plugins --json {cold:.2f} s (discovery child) against "
              f"{in_process:.2f} s discovering in the process (ratio {cold / in_process:.2f})")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
