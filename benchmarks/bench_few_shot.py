"""Few-shot vs zero-shot on the same held-out images (docs/few-shot.md, "Measured").

Runs ``pyimgano benchmark --few-shot K`` for each K and seed, then reads the job records
and prints, per data set, category, detector and K, mean ± std over the seeds of the
zero-shot and the few-shot pipeline evaluated on the *same* images (the test split less
that seed's K shots): deployed image F1, image FPR and pixel F1, the threshold-free image
AUROC and AUPRO, and the tuning time. For a detector trained with the shots
(``learns_from_anomalies``) it adds the untrained detector tuned on the same shots
(``calibration_only``), which separates what training adds from what calibration adds.
Each run is checked on the way: no shot among the evaluated images, and both pipelines'
image lists identical.

    python benchmarks/bench_few_shot.py --out /tmp/few-shot \\
        --mvtec GRID_DIR --visa CAPSULES_DIR
    python benchmarks/bench_few_shot.py --out /tmp/few-shot --supersimplenet --no-run   # tables only

Heavy (minutes of CPU per data set): on a shared machine wrap it in ``flock``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
from collections import defaultdict

import numpy as np

PATCHCORE = ["--detector", "faiss:patchcore", "--set", "faiss:patchcore.backbone=efficientnet_lite0"]


def _supersimplenet(steps: int, limit_s: float) -> list[str]:
    name = "anomalib:supersimplenet"
    return ["--detector", name, "--set", f"{name}.backbone=efficientnet_lite0", "--set", f"{name}.image_size=128",
            "--set", f"{name}.max_steps={steps}", "--set", f"{name}.time_limit_s={limit_s:g}"]


def _groups(args: argparse.Namespace) -> list[tuple[str, list[str], list[int]]]:
    """(output subfolder, benchmark arguments, the K of its runs) of each benchmark this measurement runs."""
    groups = [("synthetic", PATCHCORE + ["--dataset", "synthetic", "--image-size", str(args.image_size)])]
    if args.mvtec:
        groups.append(("mvtec-grid", PATCHCORE + ["--dataset", "mvtec", "--root", args.mvtec, "--category", "grid",
                                                  "--image-size", str(args.image_size)]))
    if args.visa:
        groups.append(("visa-capsules", PATCHCORE + ["--dataset", "visa", "--root", args.visa, "--category",
                                                     "capsules", "--image-size", str(args.image_size)]))
    if args.supersimplenet:
        data = (["--dataset", "mvtec", "--root", args.mvtec, "--category", "grid"] if args.mvtec
                else ["--dataset", "synthetic", "--category", "brick"])
        groups.append(("supersimplenet", _supersimplenet(args.ssn_steps, args.ssn_time_limit) + data + ["--image-size", "128"]))
    return [(name, extra, args.ssn_k if name == "supersimplenet" else args.k) for name, extra in groups]


def _run(out: str, extra: list[str], ks: list[int], args: argparse.Namespace) -> None:
    command = [sys.executable, "-m", "pyimgano", "benchmark", *extra, "--seeds", *map(str, args.seeds),
               "--out", out, "--no-progress", "--overlays", "0", "--in-process"]
    for k in ks:
        command += ["--few-shot", str(k)]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=False, stdout=subprocess.DEVNULL, env={**os.environ, "COLUMNS": "200"})


def _records(out: str) -> list[dict]:
    """The job records of the finished few-shot runs, each checked for honesty."""
    records = []
    for path in sorted(glob.glob(os.path.join(out, "jobs", "*.json"))):
        with open(path) as fh:
            record = json.load(fh)
        run = record["run"]
        if run.get("status") != "ok" or not (run.get("few_shot") or {}).get("k"):
            continue
        evaluated = record["extra"]["few_shot"]["evaluated"]
        shots = set(run["few_shot"]["shots"])
        if evaluated["zero_shot"] != evaluated["few_shot"] or shots & set(evaluated["few_shot"]):
            raise SystemExit(f"{path}: the pipelines were not evaluated on the same shot-free images")
        records.append(record)
    return records


def _ms(values: list[float | None]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


FIGURES = (("img F1", "deployed", "image_f1"), ("img FPR", "deployed", "image_fpr"),
           ("px F1", "deployed", "pixel_f1"), ("img AUROC", "metrics", "image_auroc"),
           ("AUPRO", "metrics", "aupro"))


def _table(records: list[dict]) -> str:
    rows: dict[tuple, list[dict]] = defaultdict(list)
    for record in records:
        run = record["run"]
        rows[(run["dataset"], run["category"], run["detector"], run["few_shot"]["k"])].append(record)
    head = ["data set / category", "detector", "K", "seeds", "n test"]
    for name, _, _ in FIGURES:
        head += [f"{name} 0-shot", f"{name} K-shot"]
    head += ["tune s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    extra_lines = []
    for (dataset, category, detector, k), group in sorted(rows.items()):
        runs = [r["run"] for r in group]
        cells = [f"{dataset}/{category}", detector, str(k), str(len(runs)), str(runs[0]["n_test"])]
        for _, block, key in FIGURES:
            cells.append(_ms([r["few_shot"]["zero_shot"][block].get(key) for r in runs]))
            cells.append(_ms([r[block].get(key) for r in runs]))
        cells.append(_ms([r["few_shot"]["tuned"].get("tuning_s") for r in runs]))
        lines.append("| " + " | ".join(cells) + " |")
        calibrated = [r["extra"]["few_shot"].get("calibration_only") for r in group]
        if all(c is not None for c in calibrated):
            extra_lines.append(
                f"| {dataset}/{category} | {detector} | {k} | "
                + " | ".join(f"{_ms([c[block].get(key) for c in calibrated])} | {_ms([r[block].get(key) for r in runs])}"
                             for _, block, key in FIGURES) + " |")
    text = "\n".join(lines)
    if extra_lines:
        head = ["data set / category", "detector", "K"]
        for name, _, _ in FIGURES:
            head += [f"{name} tuned only", f"{name} trained + tuned"]
        text += "\n\nTrained with the shots vs the unsupervised detector tuned on the same shots:\n\n"
        text += "| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n" + "\n".join(extra_lines)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder of the benchmark outputs (one subfolder per data set)")
    parser.add_argument("--mvtec", help="an MVTec AD folder holding the grid category")
    parser.add_argument("--visa", help="a VisA folder holding the capsules category")
    parser.add_argument("--supersimplenet", action="store_true",
                        help="also anomalib:supersimplenet, trained with the shots (on grid, else synthetic brick)")
    parser.add_argument("--ssn-steps", type=int, default=100, help="SuperSimpleNet optimiser steps (default 100)")
    parser.add_argument("--ssn-time-limit", type=float, default=60, help="and at most this many seconds a fit")
    parser.add_argument("--ssn-k", type=int, nargs="+", default=[5], help="SuperSimpleNet's shots (default 5)")
    parser.add_argument("--k", type=int, nargs="+", default=[1, 5], help="shots per run (default 1 5)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--only", nargs="+", help="run only these groups (synthetic, mvtec-grid, ...)")
    parser.add_argument("--no-run", action="store_true", help="only print the tables of finished outputs")
    args = parser.parse_args()
    for name, extra, ks in _groups(args):
        if args.only and name not in args.only:
            continue
        out = os.path.join(args.out, name)
        if not args.no_run:
            _run(out, extra, ks, args)
        records = _records(out)
        print(f"\n### {name} ({len(records)} few-shot runs)\n")
        print(_table(records) if records else "(none finished)")


if __name__ == "__main__":
    main()
