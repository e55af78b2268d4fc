"""anomalib:patchcore through pyimgano vs anomalib's own Engine.fit + Engine.test.

Both sides train PatchCore (EfficientNet-Lite0 blocks.2 + blocks.4 with the offline
ImageNet weights, same coreset ratio, same seed) on the same synthetic category, written
once in the MVTec layout. anomalib reads it with its MVTecAD data module and reports its
evaluator's image and pixel AUROC; pyimgano reads the same files, scores the raw
anomalib maps and computes the metrics with pyimgano.metrics. The figures must agree to
``--tolerance`` (0.01).

    .venv/bin/python benchmarks/bench_anomalib_equivalence.py [--image-size 128] [--n-train 16]

Prints a table and writes JSON with ``--json FILE``; exits 1 when a difference exceeds
the tolerance. Nothing is written outside a temporary folder.

``--smoke-table`` instead fits every wrapped model at its smoke-test budget (the spec's
``check_params``: 64 px mostly, 2 optimiser steps) on the category and prints fit time and
image AUROC. EfficientAD and DSR get random stand-ins of their downloaded files.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

LAYERS = ["blocks.2", "blocks.4"]


def _metrics(labels: np.ndarray, scores: np.ndarray, masks: list[np.ndarray], maps: np.ndarray) -> dict[str, float]:
    """Image and pixel AUROC with pyimgano.metrics (scikit-learn when the metrics are absent)."""
    try:
        from pyimgano.metrics import pixel_auroc

        pixel = pixel_auroc(masks, maps)
    except ImportError:
        from sklearn.metrics import roc_auc_score

        pixel = roc_auc_score(np.concatenate([m.ravel() for m in masks]), np.concatenate([m.ravel() for m in maps]))
    return {"image_auroc": _image_auroc(labels, scores), "pixel_auroc": float(pixel)}


def through_pyimgano(dataset: Any, config: dict[str, Any]) -> dict[str, Any]:
    import pyimgano
    from pyimgano.images import read_mask

    det = pyimgano.create_detector(
        "anomalib:patchcore", image_size=config["image_size"], layers=LAYERS,
        coreset_sampling_ratio=config["coreset"], batch_size=config["batch_size"], seed=config["seed"],
    )
    start = time.perf_counter()
    det.fit(list(dataset.train))
    fit_s = time.perf_counter() - start
    test = list(dataset.test)
    scores, maps = det.score(test)
    labels = np.array([s.label for s in test])
    masks = [
        read_mask(s.mask_path) if s.mask_path else np.zeros(m.shape, dtype=bool) for s, m in zip(test, maps)
    ]
    return {**_metrics(labels, scores, masks, maps), "fit_s": fit_s}


def _rank_preserving_post_processor() -> Any:
    """anomalib's post-processor minus its min-max normalisation with clamping.

    The default one maps scores to ``clamp((x - threshold) / (max - min) + 0.5, 0, 1)``:
    every score beyond the clamp ties at 0 or 1, which changes AUROC. Its evaluator cannot
    take raw PatchCore distances either (torchmetrics reads values outside [0, 1] as
    logits and applies a sigmoid, which saturates). ``x / (1 + x)`` maps the non-negative
    distances into [0, 1) without ties, so the evaluator's AUROCs are those of the raw scores.
    """
    from anomalib.post_processing import PostProcessor

    class RankPreserving(PostProcessor):
        def post_process_batch(self, batch: Any) -> None:
            for field in ("pred_score", "anomaly_map"):
                value = getattr(batch, field, None)
                if value is not None:
                    setattr(batch, field, value / (1.0 + value))

    return RankPreserving()


def through_anomalib(root: Path, category: str, config: dict[str, Any], default_post_processor: bool = False
                     ) -> dict[str, Any]:
    import lightning
    from anomalib.data import MVTecAD
    from anomalib.engine import Engine
    from anomalib.models import Patchcore

    from pyimgano import torchkit as w
    from pyimgano_anomalib.detector import reseed_before_memory_bank

    lightning.seed_everything(config["seed"], verbose=False)
    size = (config["image_size"], config["image_size"])
    model = Patchcore(
        backbone=w.LITE0_TIMM_NAME, layers=LAYERS, pre_trained=False, coreset_sampling_ratio=config["coreset"],
        pre_processor=Patchcore.configure_pre_processor(image_size=size),
        post_processor=True if default_post_processor else _rank_preserving_post_processor(),
        evaluator=True if default_post_processor else _auroc_evaluator(),
    )
    extractor = model.model.feature_extractor.feature_extractor
    w.load_weights(extractor, w.LITE0_TIMM_NAME, w.read_state_dict(w.offline_weights_file()), "bundled")
    datamodule = MVTecAD(
        root=root, category=category, train_batch_size=config["batch_size"], eval_batch_size=config["batch_size"],
        num_workers=0,
    )
    with tempfile.TemporaryDirectory(prefix="anomalib-engine-") as results:
        engine = Engine(accelerator="cpu", devices=1, default_root_dir=results, logger=False,
                        enable_progress_bar=False, callbacks=[reseed_before_memory_bank(config["seed"])])
        start = time.perf_counter()
        engine.fit(model=model, datamodule=datamodule)
        fit_s = time.perf_counter() - start
        out = engine.test(model=model, datamodule=datamodule, verbose=False)[0]
    return {"image_auroc": float(out["image_AUROC"]), "pixel_auroc": float(out["pixel_AUROC"]), "fit_s": fit_s}


def _auroc_evaluator() -> Any:
    """anomalib's evaluator with AUROCs only (its F1 needs the post-processor's labels)."""
    from anomalib.metrics import AUROC, Evaluator

    return Evaluator(test_metrics=[AUROC(fields=["pred_score", "gt_label"], prefix="image_"),
                                   AUROC(fields=["anomaly_map", "gt_mask"], prefix="pixel_")])


def run(category: str = "brick", image_size: int = 128, n_train: int = 16, n_test_good: int = 8,
        n_test_defect: int = 12, coreset: float = 0.1, batch_size: int = 8, seed: int = 0,
        with_default: bool = False) -> dict[str, Any]:
    """Both pipelines on one freshly generated synthetic category; returns the figures."""
    import pyimgano

    config = {"image_size": image_size, "coreset": coreset, "batch_size": batch_size, "seed": seed}
    with tempfile.TemporaryDirectory(prefix="pyimgano-equivalence-") as tmp:
        root = Path(tmp) / "synthetic"
        dataset = pyimgano.load_dataset(
            "synthetic", root=root, category=category, image_size=image_size, n_train=n_train,
            n_test_good=n_test_good, n_test_defect=n_test_defect, seed=seed,
        )
        ours = through_pyimgano(dataset, config)
        theirs = through_anomalib(root, category, config)
        clamped = through_anomalib(root, category, config, default_post_processor=True) if with_default else None
    diff = {k: abs(ours[k] - theirs[k]) for k in ("image_auroc", "pixel_auroc")}
    return {"category": category, "config": {**config, "n_train": n_train, "n_test_good": n_test_good,
            "n_test_defect": n_test_defect}, "pyimgano": ours, "anomalib": theirs, "difference": diff,
            "anomalib_default_post_processor": clamped}


def _stand_in_files(folder: Path) -> dict[str, dict[str, str]]:
    """Random files with the shapes of EfficientAD's teacher and DSR's discrete model."""
    import torch
    from anomalib.models.image.dsr.torch_model import DsrModel
    from anomalib.models.image.efficient_ad.torch_model import EfficientAdModel

    torch.manual_seed(0)
    teacher, vq = folder / "pretrained_teacher_small.pth", folder / "vq_model_pretrained_128_4096.pckl"
    torch.save(EfficientAdModel(teacher_out_channels=384, model_size="small").teacher.state_dict(), teacher)
    torch.save(DsrModel(0.2).discrete_latent_model.state_dict(), vq)
    return {"efficient_ad": {"teacher_weights": str(teacher)}, "dsr": {"vq_weights": str(vq)}}


def smoke_table(category: str = "brick", image_size: int = 128, n_train: int = 16, seed: int = 0,
                models: list[str] | None = None) -> list[dict[str, Any]]:
    """Every wrapped model at its smoke budget on one synthetic category."""
    import pyimgano

    rows = []
    with tempfile.TemporaryDirectory(prefix="pyimgano-smoke-table-") as tmp:
        dataset = pyimgano.load_dataset("synthetic", root=Path(tmp) / "synthetic", category=category,
                                        image_size=image_size, n_train=n_train, seed=seed)
        train, test = list(dataset.train), list(dataset.test)
        labels = np.array([s.label for s in test])
        extra = _stand_in_files(Path(tmp))
        registry = pyimgano.get_registry()
        for name in models or [n.split(":", 1)[1] for n in registry.names("detector") if n.startswith("anomalib:")]:
            spec, _ = registry.resolve("detector", f"anomalib:{name}")
            params = {**spec.capabilities.check_params, **extra.get(name, {})}
            row: dict[str, Any] = {"model": name, "params": params}
            try:
                det = pyimgano.create_detector(f"anomalib:{name}", **params)
                start = time.perf_counter()
                det.fit(train)
                row["fit_s"] = time.perf_counter() - start
                row["steps"] = det.fit_info_["steps"]
                scores = det.decision_function(test)
                row["image_auroc"] = _image_auroc(labels, scores)
            except Exception as exc:  # noqa: BLE001 - a failing model is a row of the table
                row["error"] = f"{type(exc).__name__}: {exc}"
            rows.append(row)
            print(f"{name:22}{row.get('fit_s', float('nan')):>8.1f}{row.get('image_auroc', float('nan')):>12.3f}"
                  f"  {row.get('error', '')}", flush=True)
    return rows


def _image_auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    try:
        from pyimgano.metrics import image_auroc

        return image_auroc(labels, scores)
    except ImportError:
        from sklearn.metrics import roc_auc_score

        return float(roc_auc_score(labels, scores))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--category", default="brick")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--n-train", type=int, default=16)
    parser.add_argument("--n-test-good", type=int, default=8)
    parser.add_argument("--n-test-defect", type=int, default=12)
    parser.add_argument("--coreset", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=float, default=0.01)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--with-default", action="store_true",
                        help="also run Engine.test with anomalib's default (clamping) post-processor, for reference")
    parser.add_argument("--smoke-table", action="store_true", help="fit time and image AUROC of every wrapped model")
    parser.add_argument("--models", nargs="*", default=None, help="with --smoke-table: only these models")
    args = parser.parse_args(argv)
    if args.smoke_table:
        print(f"synthetic/{args.category}, {args.image_size}px, {args.n_train} train images, smoke budgets")
        print(f"{'model':22}{'fit s':>8}{'image AUROC':>12}")
        rows = smoke_table(args.category, args.image_size, args.n_train, args.seed, args.models)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2))
        return 0 if all("error" not in r for r in rows) else 1
    result = run(args.category, args.image_size, args.n_train, args.n_test_good, args.n_test_defect,
                 args.coreset, seed=args.seed, with_default=args.with_default)
    print(f"synthetic/{args.category}, {args.image_size}px, {args.n_train} train images, coreset {args.coreset}")
    rows = [("pyimgano anomalib:patchcore", result["pyimgano"]), ("anomalib Engine", result["anomalib"]),
            ("anomalib Engine, default post", result["anomalib_default_post_processor"])]
    print(f"{'':32}{'image AUROC':>12}{'pixel AUROC':>13}{'fit s':>8}")
    for label, r in rows:
        if r is not None:
            print(f"{label:32}{r['image_auroc']:>12.4f}{r['pixel_auroc']:>13.4f}{r['fit_s']:>8.1f}")
    d = result["difference"]
    print(f"{'|pyimgano - Engine|':32}{d['image_auroc']:>12.4f}{d['pixel_auroc']:>13.4f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if max(d.values()) <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
