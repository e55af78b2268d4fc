"""The development protocol for faiss:patchcore's defaults: every kind of defect, three seeds.

Runs candidate detector settings through the benchmark (``pyimgano benchmark``: the default
inspection pipeline, no threshold or statistic sees a test image) over every real data set
given (MVTec AD-layout and VisA-layout folders; every category they hold) and the offline
sets (``synthetic``: textures with surface defects, 256 px; ``synthetic_parts``: a board of
parts with structural defects, 512 px), with seeds 0, 1, 2 by default, and prints per
category and candidate: image AUROC, pixel AUROC, AUPRO (mean ± std over the seeds), fit
seconds per training image and predict images/s, then the mean over categories. A candidate is a name and detector
parameters; the built-in ones:

- ``default``: the detector's own defaults (what ``pyimgano benchmark`` runs with no flags);
- ``detail``: the same without the context view (``context=None``: the default before it);
- ``square256``: the 256 x 256 square input of earlier releases (stretched, coreset 0.1, exact search).

More with ``--candidate NAME='{"key": value}'``. Every candidate uses the offline backbone
(EfficientNet-Lite0) unless it sets another. Runs go one at a time (``jobs = 1``) so the times
compare; on a shared machine run it under ``flock /tmp/pyimgano-heavy.lock``. The benchmark's
own output folder (``--out``) keeps every run, so an interrupted protocol goes on where it
stopped.

    python benchmarks/bench_default_protocol.py --mvtec DIR --mvtec DIR2 --visa DIR3 --json table.json
    python benchmarks/bench_default_protocol.py --candidates default detail --seeds 0 --no-synthetic --visa DIR
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

METRICS = ("image_auroc", "pixel_auroc", "aupro")
TITLES = ("img AUROC", "px AUROC", "AUPRO")
BACKBONE = {"backbone": "efficientnet_lite0"}
SYNTHETIC = ("synthetic", "synthetic_parts")  # the offline sets: surface defects on textures, structural ones on a board
ADDED_BY_RUNNER = ("seed", "progress")  # parameters the benchmark sets on every job
CANDIDATES = {
    "default": {},
    "detail": {"context": None},
    "square256": {"image_size": 256, "aspect": "stretch", "coreset_ratio": 0.1, "index": "flat", "context": None},
}


def _candidate(text: str) -> tuple[str, dict]:
    name, sep, params = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--candidate takes NAME=JSON, got {text!r}")
    try:
        value = json.loads(params)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"--candidate {name}: parameters are not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"--candidate {name}: parameters must be a JSON object")
    return name, value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mvtec", action="append", default=[], metavar="DIR", help="an MVTec AD-layout folder (repeatable)")
    parser.add_argument("--visa", action="append", default=[], metavar="DIR", help="a VisA-layout folder (repeatable)")
    parser.add_argument("--synthetic", nargs="+", choices=SYNTHETIC, default=list(SYNTHETIC), metavar="NAME",
                        help=f"the offline sets to run ({', '.join(SYNTHETIC)}; default: both)")
    parser.add_argument("--no-synthetic", action="store_true", help="leave out the offline sets")
    parser.add_argument("--candidates", nargs="+", default=["default", "detail", "square256"],
                        help=f"built-in candidates to run ({', '.join(CANDIDATES)}) and names given with --candidate")
    parser.add_argument("--candidate", action="append", type=_candidate, default=[], metavar="NAME=JSON",
                        help="a candidate of your own: detector parameters as a JSON object")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=None, help="the benchmark's output folder (default: a temp folder)")
    parser.add_argument("--json", type=Path, default=None, help="write the table as JSON here")
    args = parser.parse_args(argv)
    known = {**CANDIDATES, **dict(args.candidate)}
    unknown = [name for name in args.candidates if name not in known]
    if unknown:
        parser.error(f"unknown candidate(s) {', '.join(unknown)}; known: {', '.join(known)}")
    names = list(dict.fromkeys(args.candidates + [name for name, _ in args.candidate]))
    args.params = {name: {**BACKBONE, **known[name]} for name in names}
    return args


def config(args: argparse.Namespace, out: Path) -> dict:
    """The benchmark grid: every candidate x data set x category x seed, one job at a time."""
    datasets = [{"name": "mvtec", "root": str(Path(root).resolve())} for root in args.mvtec]
    datasets += [{"name": "visa", "root": str(Path(root).resolve())} for root in args.visa]
    if not args.no_synthetic:
        datasets += [{"name": name} for name in dict.fromkeys(args.synthetic)]
    if not datasets:
        raise SystemExit("error: no data set: give --mvtec / --visa folders or leave the offline sets in")
    return {
        "seeds": list(args.seeds),
        "jobs": 1,
        "out": str(out),
        "overlays": 0,
        "metrics": list(METRICS),
        "detectors": [{"name": "faiss:patchcore", "params": params} for params in args.params.values()],
        "datasets": datasets,
    }


def _full_params(params: dict) -> str:
    """A candidate's every parameter (its own and the detector's defaults), as results.json records them."""
    import pyimgano

    full = pyimgano.create_detector("faiss:patchcore", **params).get_params()
    return json.dumps({k: v for k, v in full.items() if k not in ADDED_BY_RUNNER}, sort_keys=True, default=str)


def table(results: dict, params: dict[str, dict]) -> list[dict]:
    """Per (data set/category, candidate): metric means and stds over seeds, fit s per image, img/s."""
    by_params = {_full_params(p): name for name, p in params.items()}
    groups: dict[tuple[str, str], list[dict]] = {}
    for run in results["runs"]:
        given = {k: v for k, v in run["params"].items() if k not in ADDED_BY_RUNNER}
        name = by_params.get(json.dumps(given, sort_keys=True, default=str))
        if name is None or run["status"] != "ok":
            continue
        groups.setdefault((f"{run['dataset']}/{run['category']}", name), []).append(run)
    rows = []
    for (category, name), runs in sorted(groups.items()):
        row = {"category": category, "candidate": name, "seeds": sorted(r.get("seed") for r in runs)}
        for key in METRICS:
            values = [r["metrics"].get(key) for r in runs if r["metrics"].get(key) is not None]
            row[key] = float(np.mean(values)) if values else None
            row[key + "_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        row["fit_s_per_image"] = float(np.mean([r["timing"]["fit_s"] / max(r["n_train"], 1) for r in runs]))
        row["images_per_s"] = float(np.mean([r["timing"]["images_per_s"] for r in runs]))
        rows.append(row)
    for name in params:
        mine = [r for r in rows if r["candidate"] == name and r["category"] != "mean"]
        if not mine:
            continue
        mean = {"category": "mean", "candidate": name, "seeds": mine[0]["seeds"]}
        for key in (*METRICS, "fit_s_per_image", "images_per_s"):
            values = [r[key] for r in mine if r[key] is not None]
            mean[key] = float(np.mean(values)) if values else None
            mean[key + "_std"] = None
        rows.append(mean)
    return rows


def _cell(row: dict, key: str) -> str:
    if row[key] is None:
        return "-"
    std = row.get(key + "_std")
    return f"{row[key]:.3f}" + (f" ± {std:.3f}" if std else "")


def print_table(rows: list[dict]) -> None:
    head = ["category", "candidate", *TITLES, "fit s/img", "img/s"]
    lines = [[r["category"], r["candidate"], *(_cell(r, k) for k in METRICS),
              f"{r['fit_s_per_image']:.3f}", f"{r['images_per_s']:.2f}"] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines)]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    print("  ".join("-" * w for w in widths))
    for line in lines:
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths)))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="pyimgano-protocol-"))
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "protocol.json"
    cfg_path.write_text(json.dumps(config(args, out), indent=2))
    command = [sys.executable, "-c", "import sys; from pyimgano.cli import main; sys.exit(main())",
               "benchmark", "--config", str(cfg_path)]
    code = subprocess.call(command)
    results_path = out / "results.json"
    if not results_path.is_file():
        print(f"error: the benchmark wrote no {results_path} (exit {code})", file=sys.stderr)
        return code or 1
    rows = table(json.loads(results_path.read_text()), args.params)
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps({"params": args.params, "rows": rows}, indent=2))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
