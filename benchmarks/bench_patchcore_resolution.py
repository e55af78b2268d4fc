"""faiss:patchcore across input policies, coreset sizes and search indexes: the table behind the defaults.

For each data set (VisA, MVTec AD, ``synthetic``), input policy, coreset ratio and index it
reports image AUROC, pixel AUROC, AUPRO (FPR 0.3; all from ``pyimgano.metrics`` on maps at
each image's own size), fit seconds, scoring images/s and peak RSS.

Policies (``--policies``): ``N`` such as ``256`` (the image stretched to N x N), ``keepN``
such as ``keep512`` (about N x N pixels in the image's own aspect ratio, sides multiples of
the stride), ``auto`` (the detector's default: ``image_size="auto"``), ``tilesN`` such as
``tiles512`` (the image at its own resolution cut into overlapping N px tiles); any other
detector parameters come from ``--set key=value``.

Each (data set, category, policy, coreset) is one subprocess, so its peak RSS is its own:
the detector is fitted from image files (decoding included), then the test images are
scored from their files (decoding, resizing, search and maps: what a user waits for) with
the exact ``flat`` index; the fitted memory bank is then reused, only the search index is
rebuilt as each approximate one (``--approx``: ``ivf``, ``ivf:32`` for nprobe 32, ``hnsw``;
its build time is added to that row's fit time), and the test set is scored again
(``--no-flat``: only with those). On square data sets ``keepN`` is the same geometry as
``N`` and is not run twice. Timings are noisy on a shared machine: run this
under ``flock /tmp/pyimgano-heavy.lock`` and compare within one run.

    python benchmarks/bench_patchcore_resolution.py --visa-root DIR --mvtec-root DIR --json table.json
    python benchmarks/bench_patchcore_resolution.py --datasets visa --policies 512 keep512 --coresets 0.01 \\
        --set precision=bfloat16
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

METRICS = ("image_auroc", "pixel_auroc", "aupro")
POLICY_FORMS = "N (N x N), keepN (about N x N pixels, aspect kept), auto, tilesN (N px tiles at full resolution)"


def policy_params(name: str) -> dict:
    """Detector parameters of an input policy name (``POLICY_FORMS``)."""
    if name == "auto":
        return {"image_size": "auto", "aspect": "keep"}
    match = re.fullmatch(r"(keep|tiles)?(\d+)", name)
    if not match:
        raise ValueError(f"unknown policy {name!r}; forms: {POLICY_FORMS}")
    kind, side = match.group(1), int(match.group(2))
    if kind == "tiles":
        return {"image_size": "original", "tile_size": side, "tile_overlap": 64}
    return {"image_size": side, "aspect": "keep" if kind else "stretch"}


def _coreset(value: str) -> float | str:
    return value if value == "auto" else float(value)


def _policy(name: str) -> str:
    try:
        policy_params(name)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return name
SYNTHETIC_CATEGORIES = ("brick", "grass", "gravel")
SCORE_BATCH = 16  # as the benchmark runner


def _peak_rss_mb() -> float:
    text = Path("/proc/self/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", text).group(1)) / 1024.0


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _open(dataset: str, root: str | None, category: str):
    import pyimgano

    if dataset == "synthetic":
        return pyimgano.load_dataset("synthetic", category=category)
    return pyimgano.load_dataset(dataset, root=root, category=category)


def _score(detector, paths: list[str]) -> tuple[np.ndarray, list[np.ndarray], float]:
    """Scores and maps of image files, timed from the files (decoding included), in batches."""
    scores, maps = [], []
    t0 = time.perf_counter()
    for start in range(0, len(paths), SCORE_BATCH):
        batch_scores, batch_maps = detector.score(paths[start : start + SCORE_BATCH])
        scores.append(batch_scores)
        maps.extend(list(batch_maps))
    return np.concatenate(scores), maps, time.perf_counter() - t0


def _metrics(labels, scores, masks, maps) -> dict[str, float]:
    from pyimgano.metrics import aupro, image_auroc, pixel_auroc

    return {
        "image_auroc": float(image_auroc(labels, scores)),
        "pixel_auroc": float(pixel_auroc(masks, maps)),
        "aupro": float(aupro(masks, maps)),
    }


def worker(job: dict) -> dict:
    """Fit once, score with the flat index and with each approximate one; one result per index."""
    import pyimgano

    ds = _open(job["dataset"], job["root"], job["category"])
    train = [str(s.image_path) for s in ds.train]
    paths = [str(s.image_path) for s in ds.test]
    labels = np.array([int(s.label) for s in ds.test])
    masks = [ds.load(s)[1] for s in ds.test]
    params = {
        "backbone": "efficientnet_lite0", "device": "cpu", "progress": False, "seed": job["seed"],
        "coreset_ratio": job["coreset"], "index": "flat", **policy_params(job["policy"]), **job["params"],
    }
    detector = pyimgano.create_detector("faiss:patchcore", **params).prepare()  # network built outside the timing
    _reset_peak()
    t0 = time.perf_counter()
    detector.fit(train)
    fit_s = time.perf_counter() - t0
    frames = sorted({u.frame for u in detector.plan([pyimgano.load_image(p) for p in paths[:1]])})
    common = {
        "bank_rows": int(detector.memory_bank_.shape[0]), "dim": int(detector.memory_bank_.shape[1]),
        "coreset_ratio": detector.coreset_ratio_,
        "input_size": detector.input_size_, "frame": list(frames[0]), "precision": detector.precision_,
        "n_train": len(train), "n_test": len(paths),
    }
    results = []
    fit_peak = _peak_rss_mb()
    if not job.get("no_flat"):
        scores, maps, predict_s = _score(detector, paths)
        results.append({
            **common, "index": "flat", "fit_s": fit_s, "predict_s": predict_s, "images_per_s": len(paths) / predict_s,
            "peak_rss_mb": _peak_rss_mb(), **_metrics(labels, scores, masks, maps),
        })
        del maps
    for approx in job["approx"]:
        kind, _, nprobe = approx.partition(":")
        _reset_peak()
        t0 = time.perf_counter()
        detector.set_params(index=kind, **({"nprobe": int(nprobe)} if nprobe else {}))
        build_s = time.perf_counter() - t0
        scores, maps, predict_s = _score(detector, paths)
        results.append({
            **common, "index": approx, "fit_s": fit_s + build_s, "predict_s": predict_s,
            "images_per_s": len(paths) / predict_s,
            "peak_rss_mb": max(_peak_rss_mb(), results[0]["peak_rss_mb"] if results else fit_peak),
            **_metrics(labels, scores, masks, maps),
        })
        del maps
    return {"results": results}


def _spawn(job: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    return {"error": f"exit {proc.returncode}: {(proc.stderr or proc.stdout)[-1500:]}"}


def _square(dataset: str, root: str | None, category: str) -> bool:
    from pyimgano.images import read_image_size

    ds = _open(dataset, root, category)
    sizes = {read_image_size(s.image_path) for s in list(ds.train) + list(ds.test)}
    return all(h == w for h, w in sizes)


def _datasets(args: argparse.Namespace) -> list[tuple[str, str | None, list[str]]]:
    out = []
    for name in args.datasets:
        if name == "visa":
            out.append(("visa", args.visa_root, ["capsules"]))
        elif name == "mvtec":
            out.append(("mvtec", args.mvtec_root, ["grid"]))
        else:
            out.append(("synthetic", None, list(args.synthetic_categories)))
    return out


def _parse_set(items: list[str]) -> dict:
    params = {}
    for item in items:
        key, _, raw = item.partition("=")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params


def _mean_rows(rows: list[dict]) -> dict:
    """Mean of categories (metrics, fit s, img/s), largest peak."""
    out = dict(rows[0])
    for key in (*METRICS, "fit_s", "images_per_s"):
        out[key] = float(np.mean([r[key] for r in rows]))
    out["peak_rss_mb"] = float(max(r["peak_rss_mb"] for r in rows))
    out["categories"] = len(rows)
    return out


def _ratio(row: dict) -> str:
    auto = row["coreset"] == "auto" and row.get("coreset_ratio") is not None
    return f"auto ({row['coreset_ratio']:.3f})" if auto else str(row["coreset"])


def table(rows: list[dict]) -> str:
    head = ("| data set | policy | network input | coreset | bank rows | index | image AUROC | pixel AUROC | AUPRO "
            "| fit s | scoring img/s | peak MiB |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['dataset']} | {r['policy']} | | {r['coreset']} | | | ERROR {r['error'][:120]} |")
            continue
        note = f" (= {r['same_as']})" if r.get("same_as") else ""
        lines.append(
            f"| {r['dataset']} | {r['policy']}{note} | {r['frame'][0]}x{r['frame'][1]} | {_ratio(r)} | "
            f"{r['bank_rows']:,} | {r['index']} | {r['image_auroc']:.3f} | {r['pixel_auroc']:.3f} | "
            f"{r['aupro']:.3f} | {r['fit_s']:.1f} | {r['images_per_s']:.2f} | {r['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["visa", "mvtec", "synthetic"],
                        choices=["visa", "mvtec", "synthetic"])
    parser.add_argument("--visa-root", help="the VisA capsules folder (VisA layout); needed for --datasets visa")
    parser.add_argument("--mvtec-root", help="an MVTec AD-layout folder holding grid; needed for --datasets mvtec")
    parser.add_argument("--synthetic-categories", nargs="+", default=list(SYNTHETIC_CATEGORIES))
    parser.add_argument("--policies", nargs="+", type=_policy, default=["256", "384", "512", "keep512"],
                        metavar="POLICY", help=f"input policies: {POLICY_FORMS}")
    parser.add_argument("--coresets", nargs="+", type=_coreset, default=["auto", 0.1, 0.01],
                        help="coreset ratios: numbers, or auto (the detector's default)")
    parser.add_argument("--approx", nargs="*", default=["ivf"], metavar="KIND[:NPROBE]",
                        help="approximate indexes scored after flat: ivf, ivf:NPROBE, hnsw (none: flat only)")
    parser.add_argument("--no-flat", action="store_true",
                        help="score only with the --approx indexes (exact search of tiled full-resolution inputs "
                        "takes about a minute per image)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more detector parameters")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write every row (and per-category rows) to this file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("visa", "mvtec"):
        if name in args.datasets and not getattr(args, f"{name}_root"):
            parser.error(f"--datasets {name} needs --{name}-root DIR")
    if args.worker:
        print("RESULT " + json.dumps(worker(json.loads(args.worker))), flush=True)
        return 0
    if args.no_flat and not args.approx:
        parser.error("--no-flat needs at least one --approx index")
    extra = _parse_set(args.set)
    rows, raw = [], []
    print(f"faiss:patchcore, EfficientNet-Lite0 on CPU, seed {args.seed}, extra params {extra}", flush=True)
    for dataset, root, categories in _datasets(args):
        square = all(_square(dataset, root, c) for c in categories)
        for policy in args.policies:
            for coreset in args.coresets:
                twin = policy[len("keep"):] if policy.startswith("keep") else None
                if twin and square and twin in args.policies:
                    same = [dict(r, policy=policy, same_as=twin) for r in rows
                            if r["dataset"] == dataset and r["policy"] == twin and r["coreset"] == coreset]
                    rows.extend(same)
                    continue
                per_category: dict[str, list[dict]] = {}
                for category in categories:
                    job = {"dataset": dataset, "root": root, "category": category, "policy": policy,
                           "coreset": coreset, "approx": args.approx, "params": extra, "seed": args.seed,
                           "no_flat": args.no_flat}
                    t0 = time.perf_counter()
                    out = _spawn(job)
                    wall = time.perf_counter() - t0
                    if "error" in out:
                        print(f"  {dataset}/{category} {policy} coreset {coreset}: {out['error']}", flush=True)
                        rows.append({"dataset": dataset, "policy": policy, "coreset": coreset, "error": out["error"]})
                        continue
                    for result in out["results"]:
                        result.update(dataset=dataset, category=category, policy=policy, coreset=coreset)
                        raw.append(result)
                        per_category.setdefault(result["index"], []).append(result)
                        print(f"  {dataset}/{category} {policy} coreset {coreset} {result['index']}: "
                              f"{result['image_auroc']:.3f} / {result['pixel_auroc']:.3f} / {result['aupro']:.3f}, "
                              f"fit {result['fit_s']:.1f} s, {result['images_per_s']:.2f} img/s, "
                              f"{result['peak_rss_mb']:.0f} MiB (wall {wall:.0f} s)", flush=True)
                for index_rows in per_category.values():
                    rows.append(_mean_rows(index_rows) if len(index_rows) > 1 else index_rows[0])
                if args.json:
                    Path(args.json).write_text(json.dumps({"rows": rows, "per_category": raw}, indent=1))
    print()
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "per_category": raw}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
