"""Choosing the inspection pipeline's defaults: post-processing and the pixel-threshold quantile.

For each category (the ``synthetic`` set's brick, grass, gravel and, when the folder is
given, MVTec AD grid), ``faiss:patchcore`` (EfficientNet-Lite0, offline) is fitted on the
training images less a seeded validation tenth, exactly as ``pyimgano.Pipeline`` splits
them. Each candidate post-processing config is fitted on the validation maps, and the test
maps it produces are scored: pixel AUROC, pixel AP, AUPRO@0.3, and pixel F1 at the pixel
threshold calibrated on the validation maps for each candidate quantile (what a deployed
pipeline gets, with no look at the test set). ``F1max`` is the best pixel F1 over all
thresholds (the ceiling a calibration could reach).

Last, the post-processing time per image as a share of the pipeline's predict time
(detector scoring + post-processing), per candidate, at the benchmark's image size: each
the fastest of ``--repeats`` passes over the test images. The machine may be shared: the
shares are ratios measured in the same run.

    .venv/bin/python benchmarks/bench_postprocess.py --mvtec GRID_DIR
    .venv/bin/python benchmarks/bench_postprocess.py --categories brick --json out.json
    .venv/bin/python benchmarks/bench_postprocess.py --categories --image-size 0 \
        --mvtec GRID_DIR --visa CAPSULES_DIR
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

CANDIDATES: dict[str, list[dict]] = {
    "raw": [],
    "standardize": [{"name": "standardize"}],
    "gauss2+std": [{"name": "gaussian", "sigma": 2}, {"name": "standardize"}],
    "gauss4+std": [{"name": "gaussian", "sigma": 4}, {"name": "standardize"}],
    "std+open7": [{"name": "standardize"}, {"name": "open", "size": 7}],
    "std+rm_small": [{"name": "standardize"}, {"name": "remove_small", "min_area": 64, "threshold": 3.0}],
}
QUANTILES = (0.99, 0.995, 0.999, 0.9995, 0.9999, 1.0)


def _categories(args: argparse.Namespace):
    import pyimgano

    for category in args.categories:
        size = {"image_size": args.image_size} if args.image_size else {}  # the generator's own size
        yield "synthetic", category, pyimgano.load_dataset("synthetic", category=category, **size)
    if args.mvtec:
        yield "mvtec", "grid", pyimgano.load_dataset("mvtec", root=args.mvtec, category="grid")
    if args.visa:
        yield "visa", "capsules", pyimgano.load_dataset("visa", root=args.visa, category="capsules")


def _best_of(repeats: int, work):
    """(seconds, result) of the fastest of ``repeats`` runs of ``work()``."""
    best, result = float("inf"), None
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - started)
    return best, result


def _pixel_f1(masks: list[np.ndarray], maps: list[np.ndarray], threshold: float) -> float:
    tp = fp = fn = 0
    for mask, amap in zip(masks, maps):
        pred = amap > threshold
        tp += int(np.count_nonzero(pred & mask))
        fp += int(np.count_nonzero(pred & ~mask))
        fn += int(np.count_nonzero(~pred & mask))
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def measure(dataset_name: str, category: str, dataset, args: argparse.Namespace) -> dict:
    from pyimgano.benchmark.job import load_pair
    from pyimgano.factories import create_detector
    from pyimgano.metrics import aupro, pixel_ap, pixel_auroc, pixel_f1_max
    from pyimgano.pipeline import fit_postprocessing, pixel_threshold_value, split_validation
    from pyimgano.pipeline.settings import PipelineSettings
    from pyimgano.thresholds import QuantileThreshold

    size = args.image_size or None  # 0: each image at its own size, the detector picks its input
    train = [load_pair(dataset, s, size)[0] for s in dataset.train]
    pairs = [load_pair(dataset, s, size) for s in dataset.test]
    test = [p[0] for p in pairs]
    masks = [np.zeros(im.shape[:2], bool) if m is None else m for im, m in pairs]
    fit_idx, val_idx = split_validation(len(train), PipelineSettings().val_fraction, 0)
    detector = create_detector("faiss:patchcore", backbone="efficientnet_lite0", progress=False, seed=0)
    detector.fit([train[i] for i in fit_idx])
    _, val_maps = detector.score([train[i] for i in val_idx])
    score_s, (_, test_maps) = _best_of(args.repeats, lambda: detector.score(test))
    val_maps, test_maps = list(val_maps), list(test_maps)
    rows = {}
    for name, config in CANDIDATES.items():
        chain = fit_postprocessing(config, val_maps)
        post_s, processed = _best_of(args.repeats, lambda chain=chain: [np.asarray(m, np.float32)
                                                                        for m in chain(test_maps)])
        val_processed = chain(val_maps)
        row = {
            "pixel_auroc": pixel_auroc(masks, processed),
            "pixel_ap": pixel_ap(masks, processed),
            "aupro": aupro(masks, processed),
            "f1_max": pixel_f1_max(masks, processed)[0],
            "post_share": post_s / (score_s + post_s),
            "post_ms_per_image": 1000 * post_s / len(test),
        }
        for q in QUANTILES:
            threshold = pixel_threshold_value(QuantileThreshold(q=q), val_processed)
            row[f"f1@{q}"] = _pixel_f1(masks, processed, threshold)
        rows[name] = row
    return {"dataset": dataset_name, "category": category, "n_fit": len(fit_idx), "n_val": len(val_idx),
            "n_test": len(test), "predict_ms_per_image": 1000 * score_s / len(test), "rows": rows}


def print_tables(results: list[dict]) -> None:
    columns = ["pixel_auroc", "pixel_ap", "aupro", "f1_max"] + [f"f1@{q}" for q in QUANTILES]
    titles = ["px AUROC", "px AP", "AUPRO", "F1max"] + [f"F1@q{q}" for q in QUANTILES]
    blocks = [(f"{r['dataset']}/{r['category']} (fit {r['n_fit']}, val {r['n_val']}, test {r['n_test']})",
               r["rows"]) for r in results]
    mean = {name: {c: float(np.mean([r["rows"][name][c] for r in results])) for c in columns + ["post_share"]}
            for name in CANDIDATES}
    blocks.append((f"mean over {len(results)} categories", mean))
    for title, rows in blocks:
        print(f"\n{title}")
        print("| config | " + " | ".join(titles) + " |")
        print("|---|" + "---|" * len(titles))
        for name, row in rows.items():
            print(f"| {name} | " + " | ".join(f"{row[c]:.3f}" for c in columns) + " |")
    print("\npost-processing time per image, share of predict (detector scoring + post-processing):")
    print("| config | " + " | ".join(f"{r['dataset']}/{r['category']}" for r in results) + " |")
    print("|---|" + "---|" * len(results))
    for name in CANDIDATES:
        cells = [f"{r['rows'][name]['post_ms_per_image']:.1f} ms ({100 * r['rows'][name]['post_share']:.1f}%)"
                 for r in results]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("predict per image (detector scoring): "
          + ", ".join(f"{r['category']} {r['predict_ms_per_image']:.0f} ms" for r in results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--categories", nargs="*", default=["brick", "grass", "gravel"])
    parser.add_argument("--mvtec", help="an MVTec AD folder holding 'grid' (e.g. a subset)")
    parser.add_argument("--visa", help="a VisA folder holding 'capsules' (e.g. a subset)")
    parser.add_argument("--image-size", type=int, default=256,
                        help="resize the data set's images (and masks) to N x N first; 0: keep their own size, so "
                        "the detector's input policy (image_size='auto') applies and maps are at full size")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes; the fastest counts (default 3)")
    parser.add_argument("--json", help="also write the measurements here")
    args = parser.parse_args()
    results = []
    for dataset_name, category, dataset in _categories(args):
        started = time.perf_counter()
        results.append(measure(dataset_name, category, dataset, args))
        print(f"measured {dataset_name}/{category} in {time.perf_counter() - started:.0f} s", flush=True)
    print_tables(results)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
