"""Time pyimgano's AUPRO and pixel metrics against anomalib's AUPRO on the same maps.

    .venv/bin/python benchmarks/bench_metrics.py            # 100 x 256x256 and 83 x 900x900
    .venv/bin/python benchmarks/bench_metrics.py --sizes 256

Each measurement runs in its own subprocess (same seed, so the same maps), so each side's
peak memory (``ru_maxrss``) is its own. ``data MiB`` is the process's RSS once the maps and
masks exist; ``peak MiB`` is the whole process's peak, data included. ``ratio`` is anomalib's
time over this row's time: wall-clock, and CPU time of the process (all threads; anomalib's
torch uses several, pyimgano's NumPy one), which is steadier on a loaded machine. Maps are
smooth noise with blob-shaped defects (about three quarters of the images defective).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

SETS = {64: (12, 64), 256: (100, 256), 900: (83, 900)}  # 64: a quick smoke run


def make_data(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Float32 maps and uint8 masks with ellipse defects, built image by image."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    maps = np.empty((n, size, size), np.float32)
    masks = np.zeros((n, size, size), np.uint8)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    for i in range(n):
        coarse = rng.normal(size=(size // 16 + 2, size // 16 + 2)).astype(np.float32)
        smooth = ndimage.zoom(coarse, 16, order=1)[:size, :size]
        signal = np.zeros((size, size), np.float32)
        if i % 4:
            for _ in range(rng.integers(1, 4)):
                cy, cx = rng.uniform(0.15, 0.85, 2)
                ry, rx = rng.uniform(0.02, 0.12, 2)
                inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
                masks[i][inside] = 1
                signal[inside] += rng.uniform(0.1, 0.8)
        maps[i] = 0.3 * smooth + signal + 0.5 * rng.random((size, size), dtype=np.float32)
    return maps, masks


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def worker(kind: str, size: int) -> dict:
    n, side = SETS[size]
    maps, masks = make_data(n, side)
    data_mib = _rss_mib()
    if kind == "anomalib":
        import torch
        from anomalib.metrics.aupro import _AUPRO

        preds, target = torch.from_numpy(maps), torch.from_numpy(masks)
        start, cpu_start = time.perf_counter(), time.process_time()
        metric = _AUPRO(fpr_limit=0.3)
        metric.update(preds, target)
        values = {"aupro": float(metric.compute())}
    elif kind == "aupro":
        from pyimgano.metrics import aupro

        start, cpu_start = time.perf_counter(), time.process_time()
        values = {"aupro": aupro(masks, maps, fpr_limit=0.3)}
    elif kind == "pixel":
        from pyimgano.metrics import pixel_metrics

        start, cpu_start = time.perf_counter(), time.process_time()
        values = pixel_metrics(masks, maps, fpr_limit=0.3)
    elif kind == "sklearn":
        from sklearn.metrics import average_precision_score, roc_auc_score

        start, cpu_start = time.perf_counter(), time.process_time()
        y, s = masks.ravel(), maps.ravel()
        values = {"pixel_auroc": roc_auc_score(y, s), "pixel_ap": average_precision_score(y, s)}
    else:
        raise SystemExit(f"unknown worker {kind!r}")
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"kind": kind, "values": values, "seconds": seconds, "cpu_seconds": cpu, "data_mib": data_mib,
            "peak_mib": peak}


def run_worker(kind: str, size: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", kind, "--sizes", str(size)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,900", help="comma-separated: 256 (100 maps), 900 (83 maps), 64 (12)")
    parser.add_argument("--sklearn", action="store_true", help="also time scikit-learn pixel AUROC/AP (256 only)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.worker:
        print(json.dumps(worker(args.worker, sizes[0])))
        return 0
    for size in sizes:
        n, side = SETS[size]
        kinds = ["anomalib", "aupro", "pixel"] + (["sklearn"] if args.sklearn and size == 256 else [])
        results = {kind: run_worker(kind, size) for kind in kinds}
        ref = results["anomalib"]
        print(f"\n{n} maps of {side}x{side} (AUPRO at FPR 0.3)")
        print(f"{'what':<44}{'value':>17}{'wall s':>8}{'ratio':>7}{'CPU s':>8}{'ratio':>7}"
              f"{'data MiB':>9}{'peak MiB':>9}")
        for kind, res in results.items():
            for i, (name, value) in enumerate(res["values"].items()):
                label = {"anomalib": "anomalib _AUPRO", "aupro": "pyimgano aupro",
                         "pixel": "pyimgano pixel_metrics (all)", "sklearn": "sklearn auroc+ap"}[kind]
                label = f"{label}: {name}" if kind in ("pixel", "sklearn") else label
                if i == 0:
                    wall, cpu = ref["seconds"] / res["seconds"], ref["cpu_seconds"] / res["cpu_seconds"]
                    timing = (f"{res['seconds']:>8.2f}{wall:>6.1f}x{res['cpu_seconds']:>8.2f}{cpu:>6.1f}x"
                              f"{res['data_mib']:>9.0f}{res['peak_mib']:>9.0f}")
                else:
                    timing = ""
                print(f"{label:<44}{value:>17.12f}{timing}")
        diff = abs(results["aupro"]["values"]["aupro"] - ref["values"]["aupro"])
        print(f"|pyimgano aupro - anomalib aupro| = {diff:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
