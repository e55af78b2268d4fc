"""The offline backbones side by side: fit and predict time of faiss:patchcore with each, like for like.

One process, the same training and test images for every backbone (the first ``--train``
training and ``--test`` test images of a data set's category, decoded from their files as the
benchmark does), the detector's defaults otherwise (``image_size="auto"``: the input size does
not depend on the backbone). The backbones alternate within each round (the order rotates from
round to round) and each keeps its best of ``--repeats`` rounds, so load from other work on
the machine touches every backbone alike. Prints fit seconds per training image, predict
images per second, and each backbone's time as a ratio of the first one's (the default,
EfficientNet-Lite0) measured in the same run: below 1 is faster; and the network's work per
image, in multiply-accumulates up to the deepest stage read (torch's flop counter, at the
detail view's input size the detector chose for the first training image).

Quality is measured by ``benchmarks/bench_default_protocol.py`` (``--candidate
lite1='{"backbone": "efficientnet_lite1"}'``); ``docs/patchcore.md`` ("Backbones: the
quality/speed frontier") puts the two together.

    python benchmarks/bench_backbones.py --visa DIR [--category capsules] [--train 24 --test 16] [--repeats 3]

Run it alone on the machine (``flock /tmp/pyimgano-heavy.lock``): the timings are what count.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from pyimgano.torchkit import OFFLINE_BACKBONES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--visa", metavar="DIR", help="a VisA-layout folder")
    where.add_argument("--mvtec", metavar="DIR", help="an MVTec AD-layout folder")
    parser.add_argument("--category", default=None, help="the category (default: the folder's first)")
    parser.add_argument("--backbones", nargs="+", default=list(OFFLINE_BACKBONES),
                        help="backbones to time; the first is the reference of the ratios (default: the offline ones)")
    parser.add_argument("--train", type=int, default=24, help="training images (default 24)")
    parser.add_argument("--test", type=int, default=16, help="test images (default 16)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; each backbone keeps its best (default 3)")
    parser.add_argument("--json", type=Path, default=None, help="write the table as JSON here")
    return parser.parse_args(argv)


def load_images(args: argparse.Namespace) -> tuple[str, list[Path], list[Path]]:
    import pyimgano

    name, root = ("visa", args.visa) if args.visa else ("mvtec", args.mvtec)
    dataset = pyimgano.load_dataset(name, root=root, category=args.category)
    train = [s.image_path for s in dataset.train[: args.train]]
    test = [s.image_path for s in dataset.test[: args.test]]
    if len(train) < args.train or len(test) < args.test:
        raise SystemExit(f"error: {root} has {len(train)} training and {len(test)} test images; "
                         f"asked for {args.train} and {args.test}")
    return f"{name}/{dataset.train[0].category}", train, test


def network_gmac(backbone: str, detector, image_path: Path) -> tuple[float, tuple[int, int]]:
    """(billions of multiply-accumulates for one detail-view input, that input's (H, W))."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from pyimgano.images import read_image
    from pyimgano_faiss.backbones import build_backbone

    frame = tuple(detector.geometry.output_shape(read_image(image_path).shape)[:2])
    net = build_backbone(backbone)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        net(torch.rand(1, 3, *frame))
    return counter.get_total_flops() / 2e9, frame


def time_once(backbone: str, train: list[Path], test: list[Path]) -> tuple[float, float, object]:
    """(fit seconds, predict seconds, the fitted detector) of a fresh detector with ``backbone``."""
    import pyimgano

    detector = pyimgano.create_detector("faiss:patchcore", backbone=backbone, progress=False)
    started = time.perf_counter()
    detector.fit(train)
    fitted = time.perf_counter()
    detector.score(test)
    return fitted - started, time.perf_counter() - fitted, detector


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    where, train, test = load_images(args)
    best = {name: [float("inf"), float("inf")] for name in args.backbones}
    work: dict[str, tuple[float, tuple[int, int]]] = {}
    for round_ in range(args.repeats):
        order = args.backbones[round_ % len(args.backbones):] + args.backbones[: round_ % len(args.backbones)]
        for name in order:
            fit_s, predict_s, detector = time_once(name, train, test)
            if name not in work:
                work[name] = network_gmac(name, detector, train[0])
            best[name] = [min(best[name][0], fit_s), min(best[name][1], predict_s)]
            print(f"round {round_ + 1}/{args.repeats} {name}: fit {fit_s:.2f} s, predict {predict_s:.2f} s", flush=True)
    ref_fit, ref_predict = best[args.backbones[0]]
    rows = [{"backbone": name, "fit_s_per_image": fit_s / len(train), "images_per_s": len(test) / predict_s,
             "fit_ratio": fit_s / ref_fit, "predict_ratio": predict_s / ref_predict,
             "gmac": work[name][0], "input": list(work[name][1])}
            for name, (fit_s, predict_s) in best.items()]
    print(f"\n{where}: {len(train)} training, {len(test)} test images, best of {args.repeats}; "
          f"ratios: time against {args.backbones[0]} in this run (below 1 is faster)")
    print(f"{'backbone':<20} {'fit s/img':>10} {'fit ratio':>10} {'img/s':>8} {'predict ratio':>14} "
          f"{'GMAC/input':>11} {'input':>10}")
    for row in rows:
        print(f"{row['backbone']:<20} {row['fit_s_per_image']:>10.3f} {row['fit_ratio']:>10.2f} "
              f"{row['images_per_s']:>8.2f} {row['predict_ratio']:>14.2f} {row['gmac']:>11.2f} "
              f"{'x'.join(map(str, row['input'])):>10}")
    if args.json:
        args.json.write_text(json.dumps({"data": where, "train": len(train), "test": len(test),
                                         "repeats": args.repeats, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
