"""``pyimgano serve`` under load, on loopback: throughput against the in-process pipeline,
latency, errors and the server's memory.

A ``faiss:patchcore`` inspection pipeline (offline EfficientNet-Lite0 backbone, 256 px, as
``pyimgano fit`` makes it) is fitted on the synthetic set (pyimgano-datasets, category brick)
or on the MVTec AD grid subset (``--mvtec ROOT``), saved, and exported to ONNX. For each of
the two model folders, ``pyimgano serve`` is started on 127.0.0.1 (a free port) and given N
requests of one PNG each from C concurrent clients (C = 1, then C = 8); the same PNGs are
decoded and scored in this process with ``Pipeline.predict`` in batches of the server's
``--max-batch``, in the same run (the server idle meanwhile); baseline and server take turns
for two rounds on one server. Reported per model and round: images/s of both and their
ratio (goal at C = 8: at least 0.8), p50 and p99 latency at C = 1 and C = 8, errors (goal
0), and the server's resident memory after its warm-up and after each round (goal: flat
from one round to the next, within 10 %, once the first round has warmed it).

Bounded: at most ``--requests`` requests per phase and ``--max-seconds`` per phase; nothing
leaves the machine. Run it alone (``flock /tmp/pyimgano-heavy.lock``): client, server and the
in-process baseline share the CPUs, so read the ratio, not the absolute figures.

    python benchmarks/bench_serve.py [--mvtec GRID_DIR] [--requests 96] [--json out.json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

SIZE = 256
PARAMS = {"backbone": "efficientnet_lite0", "image_size": SIZE, "progress": False}
GOALS = {"ratio_c8": 0.8, "errors": 0, "rss_growth": 0.10}
MAX_BATCH = 8
CLIENTS = (1, 8)
ROUNDS = 2  # the machine is shared: baseline and server take turns, each round reported


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        match = re.search(r"VmRSS:\s+(\d+) kB", handle.read())
    return int(match.group(1)) / 1024 if match else float("nan")


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def fit_models(dataset: str, root: str | None, category: str, work: Path) -> tuple[Path, Path, list[np.ndarray]]:
    import pyimgano
    from pyimgano import load_dataset
    from pyimgano.export import export_model

    data = load_dataset(dataset, root=root, category=category)
    train = [data.load(s)[0] for s in data.train]
    test = [data.load(s)[0] for s in data.test]
    pipe = pyimgano.Pipeline("faiss:patchcore", params=PARAMS)
    started = time.perf_counter()
    pipe.fit(train)
    print(f"fitted faiss:patchcore on {len(train)} {dataset}/{category} images in {time.perf_counter() - started:.1f} s")
    source = pipe.save(work / "patchcore")
    exported = export_model(source, work / "patchcore-onnx", format="onnx")
    return source, exported, test


def baseline(model: Path, pngs: list[bytes], n: int) -> float:
    """Images/s of decode + ``Pipeline.predict`` in this process, batches of MAX_BATCH (warm)."""
    import pyimgano
    from pyimgano.images import decode_image

    pipe = pyimgano.load(model)
    pipe.predict([decode_image(pngs[0], "warm-up")])
    started = time.perf_counter()
    for start in range(0, n, MAX_BATCH):
        batch = [decode_image(pngs[i % len(pngs)], f"image {i}") for i in range(start, min(n, start + MAX_BATCH))]
        pipe.predict(batch)
    return n / (time.perf_counter() - started)


class Service:
    def __init__(self, model: Path) -> None:
        import httpx

        self.process = subprocess.Popen(
            [sys.executable, "-m", "pyimgano", "serve", "--model", str(model), "--host", "127.0.0.1", "--port", "0",
             "--max-batch", str(MAX_BATCH)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        if match is None:
            raise SystemExit(f"serve did not start: {line}{self.process.stderr.read()}")
        self.url = f"http://127.0.0.1:{match.group(1)}"
        deadline = time.monotonic() + 120
        while httpx.get(self.url + "/readyz").status_code != 200:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit("serve never became ready")
            time.sleep(0.1)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        self.process.communicate(timeout=120)
        return self.process.returncode


def load(url: str, pngs: list[bytes], clients: int, n: int, max_seconds: float) -> dict[str, Any]:
    """``n`` requests (one PNG each) from ``clients`` threads; latencies, errors, images/s."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(n))
    lock = threading.Lock()
    stop_at = time.monotonic() + max_seconds

    def client() -> None:
        with httpx.Client(timeout=60) as session:
            while time.monotonic() < stop_at:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                started = time.perf_counter()
                try:
                    response = session.post(url + "/v1/predict", files={"image": (f"{i}.png", pngs[i % len(pngs)])})
                    if response.status_code != 200:
                        errors.append(f"{response.status_code}: {response.text[:100]}")
                        continue
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))
                    continue
                latencies.append(time.perf_counter() - started)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    ms = sorted(1000 * x for x in latencies)
    return {"clients": clients, "requests": len(latencies) + len(errors), "errors": len(errors),
            "error_examples": errors[:3], "images_per_s": len(latencies) / wall if wall else 0.0,
            "p50_ms": statistics.median(ms) if ms else None,
            "p99_ms": ms[min(len(ms) - 1, int(np.ceil(0.99 * len(ms))) - 1)] if ms else None}


def measure(label: str, model: Path, pngs: list[bytes], n: int, max_seconds: float) -> dict[str, Any]:
    """One server for ROUNDS rounds of: the in-process baseline (the server idle), C = 1, C = 8;
    the server's RSS after its warm-up and after each round."""
    service = Service(model)
    rounds = []
    try:
        rss = [_rss_mb(service.process.pid)]
        for _ in range(ROUNDS):
            in_process = baseline(model, pngs, n)
            phases = [load(service.url, pngs, c, n, max_seconds) for c in CLIENTS]
            for phase in phases:
                phase["ratio"] = phase["images_per_s"] / in_process
            rounds.append({"in_process_images_per_s": in_process, "phases": phases})
            rss.append(_rss_mb(service.process.pid))
    finally:
        code = service.stop()
    return {"model": label, "rounds": rounds, "rss_mb": rss, "exit_code": code}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mvtec", default=None, help="MVTec AD root with the 'grid' category (the subset is enough)")
    parser.add_argument("--requests", type=int, default=96, help="requests per phase (C = 1, C = 8), at most")
    parser.add_argument("--max-seconds", type=float, default=120, help="each phase stops sending after this")
    parser.add_argument("--json", help="write every figure here")
    args = parser.parse_args()
    report: dict[str, Any] = {"goals": GOALS, "cpus": len(os.sched_getaffinity(0)), "max_batch": MAX_BATCH,
                              "rows": []}
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        work = Path(tmp)
        if args.mvtec:
            source, exported, test = fit_models("mvtec", args.mvtec, "grid", work)
        else:
            source, exported, test = fit_models("synthetic", None, "brick", work)
        pngs = [_png(image) for image in test]
        report["images"] = {"distinct": len(pngs), "size": list(test[0].shape[:2])}
        for label, model in (("faiss:patchcore (torch)", source), ("exported ONNX (onnxruntime)", exported)):
            row = measure(label, model, pngs, args.requests, args.max_seconds)
            report["rows"].append(row)
            print(f"\n{label}: server RSS {' -> '.join(f'{m:.0f}' for m in row['rss_mb'])} MB (after warm-up, "
                  f"after each round); SIGTERM exit {row['exit_code']}")
            print(f"  {'round':>5} {'in-process/s':>12} {'clients':>7} {'requests':>8} {'errors':>6} {'images/s':>9} "
                  f"{'ratio':>6} {'p50 ms':>8} {'p99 ms':>8}")
            for k, one in enumerate(row["rounds"], 1):
                for p in one["phases"]:
                    print(f"  {k:>5} {one['in_process_images_per_s']:>12.1f} {p['clients']:>7} {p['requests']:>8} "
                          f"{p['errors']:>6} {p['images_per_s']:>9.1f} {p['ratio']:>6.2f} {p['p50_ms']:>8.1f} "
                          f"{p['p99_ms']:>8.1f}")
                    for example in p["error_examples"]:
                        print(f"    error: {example}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
