"""How faiss:patchcore's detail and context views are combined: every rule scored from the same views.

For each data set and seed the default detector is fitted once (on the training images the
pipeline's holdout split keeps: all but ``val_fraction``) and scores the test images once; every combination rule is then applied
to the same two views through the detector's own combination (``set_params`` and ``_combine``),
so the rules differ by the rule alone. Prints image AUROC, pixel AUROC and AUPRO of the
detector's maps (no post-processing) per seed and the mean over seeds, per data set.

Rules: ``context_weight`` x ``context_margin`` (``none``: the weight alone), given as lists:

    python benchmarks/bench_context_fusion.py --mvtec GRID_DIR --mvtec TRANSISTOR_DIR --visa CAPSULES_DIR \\
        --weights 0.6 0.7 1.0 --margins none 0.2 0.4 --json fusion.json

Run it alone on the machine (``flock /tmp/pyimgano-heavy.lock``); its fits are not timed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mvtec", action="append", default=[], metavar="DIR", help="an MVTec AD-layout folder (repeatable)")
    parser.add_argument("--visa", action="append", default=[], metavar="DIR", help="a VisA-layout folder (repeatable)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--weights", type=float, nargs="+", default=[0.6, 0.7, 1.0], help="context_weight values")
    parser.add_argument("--margins", nargs="+", default=["none", "0.4"],
                        help="context_margin values ('none': the weight alone)")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args(argv)
    if not args.mvtec and not args.visa:
        parser.error("give at least one --mvtec or --visa folder")
    try:
        args.margins = [None if m.lower() == "none" else float(m) for m in args.margins]
    except ValueError:
        parser.error(f"--margins takes numbers or 'none', got {args.margins}")
    return args


def _rules(weights: list[float], margins: list[float | None]) -> list[tuple[str, dict]]:
    return [(f"w={w:g} m={'none' if m is None else f'{m:g}'}", {"context_weight": w, "context_margin": m})
            for w in weights for m in margins]


def _categories(args: argparse.Namespace):
    from pyimgano import load_dataset

    for kind, roots in (("mvtec", args.mvtec), ("visa", args.visa)):
        for root in roots:
            for category in load_dataset(kind, root=root).categories:
                yield f"{kind}/{category}", load_dataset(kind, root=root, category=category)


def run(args: argparse.Namespace) -> dict:
    import torch

    import pyimgano
    from pyimgano.benchmark.scoring import load_pair
    from pyimgano.metrics._inputs import shared_split
    from pyimgano.metrics.image import image_auroc
    from pyimgano.metrics.pixel import pixel_auroc
    from pyimgano.metrics.pro import aupro
    from pyimgano.pipeline import split_validation
    from pyimgano.pipeline.settings import PipelineSettings
    from pyimgano_faiss.patchcore import PatchCore

    rules = _rules(args.weights, args.margins)
    val_fraction = PipelineSettings().val_fraction
    views: list[tuple] = []
    combine = PatchCore._combine

    def record(self, *view):
        views.append(view)
        return combine(self, *view)

    PatchCore._combine = record
    table: dict = {}
    try:
        for name, ds in _categories(args):
            train = [load_pair(ds, s, None)[0] for s in ds.train]
            test = [load_pair(ds, s, None) for s in ds.test]
            labels = np.array([s.label for s in ds.test])
            masks = [m if m is not None else np.zeros(img.shape[:2], bool) for img, m in test]
            for seed in args.seeds:
                keep, _ = split_validation(len(train), val_fraction, seed)
                torch.manual_seed(seed)
                det = pyimgano.create_detector("faiss:patchcore", backbone="efficientnet_lite0", seed=seed, progress=False)
                det.fit([train[i] for i in keep])
                if not det.context_:
                    print(f"{name}: no context view at this input size; nothing to compare", file=sys.stderr)
                    break
                views.clear()
                det.score([img for img, _ in test])
                for rule, params in rules:
                    det.set_params(**params)
                    out = [combine(det, *v) for v in views]
                    maps = [o[1] for o in out]
                    with shared_split():
                        figures = (image_auroc(labels, np.array([o[0] for o in out])),
                                   pixel_auroc(masks, maps), aupro(masks, maps))
                    table.setdefault(name, {}).setdefault(rule, []).append([float(f) for f in figures])
                    print(f"{name:22s} seed {seed} {rule:16s} " + " ".join(f"{f:.3f}" for f in figures), flush=True)
    finally:
        PatchCore._combine = combine
    return table


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    table = run(args)
    print(f"\nmean over seeds {args.seeds}: image AUROC / pixel AUROC / AUPRO")
    for name, rules in table.items():
        for rule, rows in rules.items():
            print(f"{name:22s} {rule:16s} " + " ".join(f"{v:.3f}" for v in np.mean(rows, 0)))
    if args.json:
        args.json.write_text(json.dumps({"seeds": args.seeds, "table": table}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
