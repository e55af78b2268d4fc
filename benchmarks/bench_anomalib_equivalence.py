"""Every wrapped anomalib model through pyimgano vs through anomalib's own Engine.

For each model, one synthetic category (written once in the MVTec layout) is learned twice
with the same anomalib module (built from the same parameters), seed and budget:

* pyimgano: ``pyimgano.create_detector("anomalib:<name>", ...).fit(train)``, then ``score(test)``;
* anomalib: ``Engine.fit`` on anomalib's ``MVTecAD`` data module over the same files, then
  ``Engine.predict`` on its test split.

Both sides are compared on raw outputs (pred_score and anomaly_map before anomalib's
post-processor, which min-max normalises with statistics of its validation split): image
AUROC and pixel AUROC (pyimgano.metrics on both), and the largest absolute difference of
the per-image scores, relative to the largest score. The Engine runs without validation
(``limit_val_batches=0``): anomalib's default validation split is the test split, and
pyimgano never looks at test images while fitting; validation would also draw from the
global random generator (each data-loader iterator does) and so shift every later batch.
EfficientAD's map-normalisation quantiles, which anomalib computes at validation start,
are computed on the training images on both sides.

    .venv/bin/python benchmarks/bench_anomalib_equivalence.py [--models patchcore stfpm] [--json FILE]

Prints one row per model; exits 1 when a model differs beyond ``--tolerance`` (0.01 on
both AUROCs) without a declared reason (``KNOWN``). Nothing is written outside a
temporary folder. Training on a 2-core CPU: the budgets are a few optimiser steps on
small images (the same on both sides); the figures test equivalence, not accuracy.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SCORE_RTOL = 1e-5


@dataclass
class Case:
    """One model's equivalence run: its parameters (both sides) and what it needs."""

    params: dict[str, Any] = field(default_factory=dict)
    stand_ins: tuple[str, ...] = ()
    note: str = ""


_SMALL = {"image_size": 64, "batch_size": 8, "max_epochs": 2}
CASES: dict[str, Case] = {
    "patchcore": Case({**_SMALL, "max_epochs": 1}),
    "padim": Case({**_SMALL, "max_epochs": 1}),
    "dfm": Case({**_SMALL, "max_epochs": 1}),
    "dfkde": Case({**_SMALL, "max_epochs": 1, "n_pca_components": 8}),
    "fastflow": Case({**_SMALL, "flow_steps": 2}, note="random ResNet-18 (its ImageNet weights are not offline)"),
    "stfpm": Case({**_SMALL}),
    "reverse_distillation": Case({**_SMALL, "backbone": "resnet18"}, note="random ResNet-18"),
    "cflow": Case({**_SMALL, "coupling_blocks": 2, "fiber_batch_size": 16}),
    "draem": Case({**_SMALL, "textures": False}, note="Perlin-noise anomalies (no DTD textures offline)"),
    "dsr": Case({**_SMALL}, stand_ins=("vq",), note="random stand-in for the pretrained VQ model"),
    "ganomaly": Case({**_SMALL}),
    "uflow": Case({**_SMALL, "max_epochs": 1, "max_steps": 2, "flow_steps": 2},
                  note="random ResNet-18; U-Flow resizes to 448 px"),
    "csflow": Case({**_SMALL, "image_size": 128, "cross_conv_hidden_channels": 64, "n_coupling_blocks": 1,
                    "pre_trained": False}, note="random EfficientNet-B5 (its ImageNet weights are not offline)"),
    "cfa": Case({**_SMALL, "backbone": "resnet18", "pre_trained": False}, note="random ResNet-18"),
    "supersimplenet": Case({**_SMALL, "image_size": 128, "backbone": "efficientnet_lite0"},
                           note="Lite0 (the Wide-ResNet-50 tv_in1k weights are not offline)"),
    "fre": Case({**_SMALL}),
    "mh_patchcore": Case({"image_size": 64, "batch_size": 8}),
    "glass": Case({**_SMALL, "pretrain_embed_dim": 256, "target_embed_dim": 256, "discriminator_hidden": 256}),
    "patchflow": Case({**_SMALL}),
    "uninet": Case({**_SMALL, "max_epochs": 1, "student_backbone": "resnet50", "teacher_backbone": "resnet50",
                    "pre_trained": False}, note="random ResNet-50 teachers (their ImageNet weights are not offline)"),
    "efficient_ad": Case({"image_size": 256, "batch_size": 1, "max_epochs": 1, "max_steps": 6},
                         stand_ins=("teacher", "imagenette"),
                         note="random stand-ins for the teacher and ImageNette"),
}
KNOWN: dict[str, str] = {}
"""Models that cannot be made equal: {model: reason} (printed, and not a failure)."""


# -- the two sides ------------------------------------------------------------------------
def _masks(test: list[Any], shape: tuple[int, int]) -> list[np.ndarray]:
    from pyimgano.images import read_mask

    return [read_mask(s.mask_path) if s.mask_path else np.zeros(shape, dtype=bool) for s in test]


def _metrics(labels: np.ndarray, scores: np.ndarray, masks: list[np.ndarray], maps: Any) -> dict[str, float]:
    from pyimgano.metrics import image_auroc, pixel_auroc

    out = {"image_auroc": float(image_auroc(labels, scores)), "pixel_auroc": None}
    if maps is not None:
        out["pixel_auroc"] = float(pixel_auroc(masks, list(maps)))
    return out


def through_pyimgano(name: str, params: dict[str, Any], train: list[Any], test: list[Any]) -> dict[str, Any]:
    import pyimgano

    det = pyimgano.create_detector(f"anomalib:{name}", **params)
    start = time.perf_counter()
    det.fit([s.image_path for s in train])
    fit_s = time.perf_counter() - start
    scores, maps = det.score([s.image_path for s in test])
    return {"scores": scores, "maps": maps, "fit_s": fit_s, "steps": det.fit_info_["steps"]}


def through_engine(name: str, params: dict[str, Any], root: Path, category: str, test: list[Any],
                   shape: tuple[int, int]) -> dict[str, Any]:
    """anomalib's Engine on its MVTecAD data module; the module is built exactly as pyimgano
    builds it (same class, arguments, pre-processor; post-processor, evaluator and
    visualizer off so the outputs stay raw)."""
    import lightning
    import torch
    import torch.nn.functional as F
    from anomalib.data import MVTecAD
    from anomalib.engine import Engine

    import pyimgano
    from pyimgano_anomalib.training import quiet_lightning, reseed_before_memory_bank

    quiet_lightning()
    det = pyimgano.create_detector(f"anomalib:{name}", **params)
    cfg = det.config
    lightning.seed_everything(cfg.seed, workers=True, verbose=False)
    module = det._build("load")
    datamodule = MVTecAD(root=root, category=category, train_batch_size=cfg.batch_size,
                         eval_batch_size=cfg.eval_batch_size, num_workers=0)
    with tempfile.TemporaryDirectory(prefix="anomalib-engine-") as results:
        engine = Engine(accelerator="cpu", devices=1, default_root_dir=results, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, max_epochs=cfg.max_epochs,
                        max_steps=cfg.max_steps if cfg.max_steps is not None else -1, limit_val_batches=0,
                        num_sanity_val_steps=0, callbacks=[reseed_before_memory_bank(cfg.seed)])
        start = time.perf_counter()
        engine.fit(model=module, datamodule=datamodule)
        fit_s = time.perf_counter() - start
        steps = int(engine.trainer.global_step)
        if name == "efficient_ad":  # anomalib: at validation start, on its validation split
            with torch.no_grad():
                module.eval()
                module.model.quantiles.update(module.map_norm_quantiles(datamodule.train_dataloader()))
        batches = engine.predict(model=module, dataloaders=datamodule.test_dataloader(), return_predictions=True)
    by_path: dict[str, tuple[float, Any]] = {}
    for batch in batches:
        for i, path in enumerate(batch.image_path):
            amap = None
            if det.supports_maps and batch.anomaly_map is not None:
                one = batch.anomaly_map[i].detach().float().reshape(1, 1, *batch.anomaly_map.shape[-2:])
                amap = F.interpolate(one, size=shape, mode="bilinear", align_corners=False)[0, 0].numpy()
            by_path[str(Path(path).resolve())] = (float(batch.pred_score[i]), amap)
    ordered = [by_path[str(Path(s.image_path).resolve())] for s in test]
    scores = np.array([s for s, _ in ordered])
    maps = None if ordered[0][1] is None else [m for _, m in ordered]
    return {"scores": scores, "maps": maps, "fit_s": fit_s, "steps": steps}


def _stand_in_files(folder: Path) -> dict[str, dict[str, Any]]:
    """Random files with the shapes of EfficientAD's teacher and DSR's VQ model, and a tiny
    ImageNette-like folder of noise images (they exercise the training paths, not accuracy)."""
    import torch
    from anomalib.models.image.dsr.torch_model import DsrModel
    from anomalib.models.image.efficient_ad.torch_model import EfficientAdModel
    from PIL import Image

    torch.manual_seed(0)
    teacher, vq = folder / "pretrained_teacher_small.pth", folder / "vq_model_pretrained_128_4096.pckl"
    torch.save(EfficientAdModel(teacher_out_channels=384, model_size="small").teacher.state_dict(), teacher)
    torch.save(DsrModel(0.2).discrete_latent_model.state_dict(), vq)
    imagenette = folder / "imagenette"
    rng = np.random.default_rng(0)
    for cls in ("n01", "n02"):
        (imagenette / cls).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(imagenette / cls / f"{i}.png")
    return {"teacher": {"teacher_weights": str(teacher)}, "vq": {"vq_weights": str(vq)},
            "imagenette": {"imagenet_dir": str(imagenette)}}


def compare(name: str, root: Path, category: str, dataset: Any, files: dict[str, dict[str, Any]],
            seed: int = 0, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """One model through both sides; the row of the table."""
    case = CASES.get(name, Case())
    run_params = {**case.params, **(params or {}), "seed": seed}
    for key in case.stand_ins:
        run_params.update(files[key])
    train, test = list(dataset.train), list(dataset.test)
    labels = np.array([s.label for s in test])
    row: dict[str, Any] = {"model": name, "params": {k: v for k, v in run_params.items() if "/" not in str(v)},
                           "note": case.note}
    shape = _image_shape(test)
    try:
        ours = through_pyimgano(name, run_params, train, test)
        theirs = through_engine(name, run_params, root, category, test, shape)
        masks = _masks(test, shape)
        row["pyimgano"] = {**_metrics(labels, ours["scores"], masks, ours["maps"]), "fit_s": ours["fit_s"],
                           "steps": ours["steps"]}
        row["anomalib"] = {**_metrics(labels, theirs["scores"], masks, theirs["maps"]), "fit_s": theirs["fit_s"],
                           "steps": theirs["steps"]}
    except Exception as exc:  # noqa: BLE001 - a failing model is a row of the table
        row["error"] = f"{type(exc).__name__}: {exc}"
        return row
    diff = np.abs(ours["scores"] - theirs["scores"])
    scale = max(float(np.max(np.abs(theirs["scores"]))), 1e-12)
    row["max_abs_score_diff"] = float(diff.max())
    row["max_rel_score_diff"] = float(diff.max() / scale)
    row["difference"] = {k: _abs_diff(row["pyimgano"][k], row["anomalib"][k]) for k in ("image_auroc", "pixel_auroc")}
    return row


def _image_shape(test: list[Any]) -> tuple[int, int]:
    from pyimgano.images import load_image

    return tuple(load_image(test[0].image_path).shape[:2])


def _abs_diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else abs(a - b)


def verdict(row: dict[str, Any], tolerance: float = 0.01) -> tuple[str, bool]:
    """('scores equal' | 'metrics within tol' | 'differs: why' | 'error: ...', acceptable)."""
    if "error" in row:
        return f"error: {row['error']}", row["model"] in KNOWN
    if row["max_rel_score_diff"] <= SCORE_RTOL:
        return "scores equal", True
    worst = max(d for d in row["difference"].values() if d is not None)
    if worst <= tolerance:
        return f"metrics within {tolerance}", True
    reason = KNOWN.get(row["model"])
    return (f"differs: {reason}" if reason else "differs"), reason is not None


def run(models: list[str] | None = None, category: str = "brick", n_train: int = 16, n_test_good: int = 8,
        n_test_defect: int = 12, seed: int = 0, image_size: int | None = None, echo: bool = False
        ) -> list[dict[str, Any]]:
    """Both pipelines on one synthetic category per image size; returns the rows."""
    import pyimgano

    names = models or list(CASES)
    rows = []
    with tempfile.TemporaryDirectory(prefix="pyimgano-equivalence-") as tmp:
        files = _stand_in_files(Path(tmp))
        datasets: dict[int, tuple[Path, Any]] = {}
        for name in names:
            size = image_size or CASES.get(name, Case()).params.get("image_size", 64)
            if size not in datasets:
                root = Path(tmp) / f"synthetic-{size}"
                datasets[size] = (root, pyimgano.load_dataset(
                    "synthetic", root=root, category=category, image_size=size, n_train=n_train,
                    n_test_good=n_test_good, n_test_defect=n_test_defect, seed=seed))
            root, dataset = datasets[size]
            row = compare(name, root, category, dataset, files, seed=seed,
                          params={"image_size": size} if image_size else None)
            rows.append(row)
            if echo:
                print(format_row(row), flush=True)
    return rows


def quality(models: list[str], image_size: int, params: dict[str, Any], category: str = "brick", n_train: int = 32,
            n_test_good: int = 8, n_test_defect: int = 16, seed: int = 0) -> list[dict[str, Any]]:
    """pyimgano alone at a realistic size and budget: image and pixel AUROC of each model."""
    import pyimgano

    rows = []
    with tempfile.TemporaryDirectory(prefix="pyimgano-quality-") as tmp:
        dataset = pyimgano.load_dataset("synthetic", root=Path(tmp) / "synthetic", category=category,
                                        image_size=image_size, n_train=n_train, n_test_good=n_test_good,
                                        n_test_defect=n_test_defect, seed=seed)
        train, test = list(dataset.train), list(dataset.test)
        labels = np.array([s.label for s in test])
        masks = _masks(test, _image_shape(test))
        for name in models:
            run_params = {"image_size": image_size, "seed": seed, **params}
            ours = through_pyimgano(name, run_params, train, test)
            row = {"model": name, "params": run_params, **_metrics(labels, ours["scores"], masks, ours["maps"]),
                   "fit_s": ours["fit_s"], "steps": ours["steps"]}
            rows.append(row)
            print(f"{name:21}{image_size:>6}{row['steps']:>7}{row['image_auroc']:>10.4f}"
                  f"{_fmt(row['pixel_auroc'], '>10.4f')}{row['fit_s']:>8.1f}  {json.dumps(params)}", flush=True)
    return rows


HEADER = (f"{'model':21}{'steps':>6}{'img AUROC':>10}{'engine':>8}{'pix AUROC':>10}{'engine':>8}"
          f"{'max|Δs|':>10}{'rel':>9}{'fit s':>7}{'engine':>7}  verdict")


def _fmt(value: float | None, spec: str) -> str:
    return format(value, spec) if value is not None else format("-", spec[: spec.index(".")] if "." in spec else spec)


def format_row(row: dict[str, Any], tolerance: float = 0.01) -> str:
    text, _ = verdict(row, tolerance)
    if "error" in row:
        return f"{row['model']:21}{'':86}  {text}"
    ours, theirs = row["pyimgano"], row["anomalib"]
    note = f" ({row['note']})" if row.get("note") else ""
    return (f"{row['model']:21}{ours['steps']:>6}{_fmt(ours['image_auroc'], '>10.4f')}"
            f"{_fmt(theirs['image_auroc'], '>8.4f')}{_fmt(ours['pixel_auroc'], '>10.4f')}"
            f"{_fmt(theirs['pixel_auroc'], '>8.4f')}{row['max_abs_score_diff']:>10.2e}{row['max_rel_score_diff']:>9.1e}"
            f"{ours['fit_s']:>7.1f}{theirs['fit_s']:>7.1f}  {text}{note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=None, help=f"models to run (default: all of {list(CASES)})")
    parser.add_argument("--category", default="brick")
    parser.add_argument("--image-size", type=int, default=None, help="one image size for every model")
    parser.add_argument("--n-train", type=int, default=16)
    parser.add_argument("--n-test-good", type=int, default=8)
    parser.add_argument("--n-test-defect", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=float, default=0.01)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--quality", action="store_true",
                        help="no Engine: fit --models through pyimgano at --image-size with --set parameters and "
                             "print image and pixel AUROC (maps at realistic sizes and budgets)")
    parser.add_argument("--set", dest="params", action="append", default=[], metavar="KEY=VALUE",
                        help="with --quality: a parameter for every model (JSON values)")
    args = parser.parse_args(argv)
    if args.quality:
        params = {k: json.loads(v) for k, _, v in (item.partition("=") for item in args.params)}
        print(f"{'model':21}{'size':>6}{'steps':>7}{'img AUROC':>10}{'pix AUROC':>10}{'fit s':>8}  params")
        rows = quality(args.models or list(CASES), args.image_size or 256, params, args.category, 2 * args.n_train,
                       args.n_test_good, 2 * args.n_test_defect, args.seed)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2, default=str))
        return 0
    print(f"synthetic/{args.category}, {args.n_train} train / {args.n_test_good} good / {args.n_test_defect} "
          f"defective test images, seed {args.seed}; raw scores; Engine without validation")
    print(HEADER)
    rows = run(args.models, args.category, args.n_train, args.n_test_good, args.n_test_defect, args.seed,
               args.image_size, echo=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=str))
    return 0 if all(verdict(r, args.tolerance)[1] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
