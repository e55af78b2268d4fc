"""Where the default benchmark spends its time, and what the full MVTec AD + VisA run would take.

Runs one benchmark job per data set given (``pyimgano benchmark``'s own job, in this process:
the default pipeline, faiss:patchcore with the offline backbone and otherwise its defaults,
calibrated out of fold) with a timer around each stage of the work, and prints per data set:

- the breakdown of fit (per training image) and predict (per test image) into decoding,
  resizing, the backbone, patch embedding, the coreset, the index build, the nearest-neighbour
  search, map assembly, post-processing, metrics and the rest (each stage's own time: a stage
  called inside another is counted once, in the inner one);
- fit seconds per training image and predict images per second (as the benchmark reports them);
- the projected wall time of the default benchmark over the whole of MVTec AD and VisA: the
  per-image costs measured on an MVTec AD-layout data set (``--mvtec``) and a VisA-layout one
  (``--visa``) times the data sets' image counts (``FULL_COUNTS``), plus the setup once (building
  the backbone and the engine's first inference, which the benchmark's worker process pays once
  for every job). A job's other fixed costs (the index, the thresholds, the metric curves) are
  spread over the subset's images, so they weigh more per image here than in a full category.

The projection scales per image: costs that grow with the number of training images (the
coreset's chunks, a larger memory bank searched by every patch) are measured at the subset's
size, so a full category of 800 training images costs somewhat more per image than a subset of
120 (the approximate index the detector switches to above 2**23 distances per input keeps the
search from growing with the bank; ``docs/patchcore.md``).

    python benchmarks/profile_default.py --mvtec DIR --visa DIR [--category grid] [--json out.json]

Run it alone on the machine (``flock /tmp/pyimgano-heavy.lock``): the timings are what count.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

# image counts of the full data sets (the default benchmark: every category, zero-shot):
# MVTec AD, Bergmann et al., CVPR 2019, table 1 (15 categories); VisA's "1cls" split file
# (split_csv/1cls.csv of the VisA release; 12 categories)
FULL_COUNTS = {
    "mvtec": {"categories": 15, "train": 3629, "test": 1725},
    "visa": {"categories": 12, "train": 8659, "test": 2162},
}

# (module, attribute, stage): the functions timed; a method is "Class.method"
STAGES = (
    ("pyimgano_faiss.base", "_shared_backbone", "setup"),
    ("pyimgano.images", "read_image", "decode"),
    ("pyimgano.images", "read_mask", "decode"),
    ("pyimgano.images", "as_rgb", "decode"),
    ("pyimgano.preprocess", "Preprocess.apply_to_image", "resize"),
    ("pyimgano.preprocess", "Preprocess.apply", "resize"),
    ("pyimgano_faiss.backbones", "images_to_tensor", "resize"),
    ("pyimgano_faiss.base", "openvino_backbone", "setup"),  # the name the detector calls
    ("pyimgano_faiss.base", "BackboneDetector.forward", "backbone"),
    ("pyimgano_faiss.patchcore", "PatchCore._embed", "embedding"),
    ("pyimgano_faiss.patchcore", "PatchCore._rows", "embedding"),
    ("pyimgano_faiss.embeddings", "EmbeddingStore.append", "embedding"),
    ("pyimgano_faiss.embeddings", "EmbeddingStore.gather", "embedding"),
    ("pyimgano_faiss.coreset", "ChunkedCoreset.add", "coreset"),
    ("pyimgano_faiss.coreset", "ChunkedCoreset.finish", "coreset"),
    ("pyimgano_faiss.patchcore", "build_index", "index build"),
    ("pyimgano_faiss.patchcore", "PatchCore._patch_distances", "search"),
    ("pyimgano_faiss.patchcore", "PatchCore._leave_out_distances", "search"),
    ("pyimgano_faiss.patchcore", "PatchCore._reweighted", "search"),
    ("pyimgano_faiss.patchcore", "PatchCore._view_map", "maps"),
    ("pyimgano_faiss.patchcore", "PatchCore._combine", "maps"),
    ("pyimgano_faiss.patchcore", "PatchCore._stitch", "maps"),
    ("pyimgano.benchmark.scoring", "postprocess_each", "post-processing"),
    ("pyimgano.pipeline", "Pipeline._calibrate_scored", "post-processing"),
    ("pyimgano.benchmark.job", "compute_metrics", "metrics"),
    ("pyimgano.benchmark.job", "deployed_metrics", "metrics"),
    ("pyimgano.benchmark.job", "curves", "metrics"),
)
ORDER = ("setup", "decode", "resize", "backbone", "embedding", "coreset", "index build", "search", "maps",
         "post-processing", "metrics", "other")
METRICS = ("image_auroc", "pixel_auroc", "aupro")
PHASES = ("fit", "predict")  # the job's fit (training images loaded, detector fit, calibration) and the rest


class Timers:
    """Exclusive time per stage: a timed call inside another timed call is subtracted from the outer."""

    def __init__(self) -> None:
        self.phase = "fit"
        self.totals: dict[tuple[str, str], float] = defaultdict(float)
        self._stack: list[list[float]] = []

    def wrap(self, fn, stage: str):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            self._stack.append([0.0])
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                inner = self._stack.pop()[0]
                self.totals[(self.phase, stage)] += elapsed - inner
                if self._stack:
                    self._stack[-1][0] += elapsed
        return timed


def install(timers: Timers) -> list[tuple[object, str, object]]:
    """Wrap every function in ``STAGES`` (skipping ones this version lacks); returns what to restore."""
    restore = []
    for module_name, attr, stage in STAGES:
        try:
            owner = importlib.import_module(module_name)
        except ImportError:
            continue
        *path, name = attr.split(".")
        for part in path:
            owner = getattr(owner, part, None)
        original = owner.__dict__.get(name) if owner is not None and hasattr(owner, "__dict__") else None
        if original is None:
            continue
        restore.append((owner, name, original))
        if isinstance(original, (staticmethod, classmethod)):
            setattr(owner, name, type(original)(timers.wrap(original.__func__, stage)))
        else:
            setattr(owner, name, timers.wrap(original, stage))
    return restore


def warm_on_build(fn):
    """``fn`` (which returns the process's compiled backbone), running the backbone once on a tiny
    input the first time it returns it: the engine's one-time initialisation at its first
    inference (seconds with OpenVINO, whatever the input's shape) then counts as setup, once per
    process, as in the benchmark's worker, not as backbone time of the first job's images."""
    warmed: set[int] = set()

    @functools.wraps(fn)
    def build(*args, **kwargs):
        compiled = fn(*args, **kwargs)
        if id(compiled) not in warmed:
            import torch

            compiled(torch.zeros(1, 3, 64, 64))
            warmed.add(id(compiled))
        return compiled
    return build


def profile_job(dataset: str, root: str, category: str, seed: int) -> dict:
    """One default benchmark job under the timers: stage seconds per phase, counts, times, metrics."""
    from pyimgano.benchmark import job as job_module
    from pyimgano_faiss import base

    timers = Timers()
    compiled_backbone = base.openvino_backbone
    base.openvino_backbone = warm_on_build(compiled_backbone)  # install() times it as setup
    restore = install(timers)
    phase_s = {}
    original_score = job_module.score

    original_load = job_module.load
    loaded = {}

    def load_phase(ctx):
        original_load(ctx)
        loaded["train"] = len(ctx.train)  # every training image (fit may hold some out to calibrate)

    def score_phase(ctx):
        timers.phase = "predict"
        return original_score(ctx)

    replaced = {original_load: load_phase, original_score: score_phase}
    job_module.STAGES = tuple(replaced.get(s, s) for s in job_module.STAGES)
    from pyimgano.benchmark.config import BenchmarkConfig, expand_jobs

    config = BenchmarkConfig.model_validate({
        "seeds": [seed], "jobs": 1, "overlays": 0, "metrics": list(METRICS),
        "detectors": [{"name": "faiss:patchcore", "params": {"backbone": "efficientnet_lite0", "progress": False}}],
        "datasets": [{"name": dataset, "root": root, "categories": [category]}]})
    (spec,) = expand_jobs(config)
    try:
        started = time.perf_counter()
        result = job_module.run_job(spec)
        wall = time.perf_counter() - started
    finally:
        back = {new: old for old, new in replaced.items()}
        job_module.STAGES = tuple(back.get(s, s) for s in job_module.STAGES)
        for owner, name, original in restore:
            setattr(owner, name, original)
        base.openvino_backbone = compiled_backbone
    run, extra = result["run"], result["extra"]
    if run.get("status") != "ok":
        raise SystemExit(f"error: the {dataset}/{category} job failed: {run.get('error')}")
    timing = run["timing"]
    fit_wall = timing["fit_s"] + extra.get("load_train_s", 0.0)
    phase_s["fit"] = fit_wall
    phase_s["predict"] = wall - fit_wall
    stages_s = {phase: {stage: timers.totals.get((phase, stage), 0.0) for stage in ORDER[:-1]} for phase in PHASES}
    for phase in PHASES:
        stages_s[phase]["other"] = max(0.0, phase_s[phase] - sum(stages_s[phase].values()))
    return {"dataset": dataset, "category": category, "n_train": loaded["train"],
            "n_test": run["n_test"], "wall_s": wall, "phase_s": phase_s, "stages_s": stages_s,
            "fit_s": timing["fit_s"], "predict_s": timing.get("predict_s"),
            "metrics": {k: v for k, v in run["metrics"].items() if k.split(":")[-1] in METRICS}}


def per_image(row: dict) -> dict:
    """Seconds per training image (fit) and per test image (predict), per stage."""
    return {phase: {stage: s / row["n_train" if phase == "fit" else "n_test"]
                    for stage, s in row["stages_s"][phase].items()} for phase in PHASES}


def projection(rows: list[dict]) -> tuple[float, list[str]]:
    """Projected seconds of the full default benchmark, and one line per data set saying how.

    Building the backbone ("setup") happens once in the benchmark's worker process, which runs
    every job: it is counted once, not per image."""
    total, lines = 0.0, []
    setup = max((row["stages_s"]["fit"].get("setup", 0.0) for row in rows), default=0.0)
    for row in rows:
        full = FULL_COUNTS[row["dataset"]]
        costs = per_image(row)
        fit_img = sum(v for k, v in costs["fit"].items() if k != "setup")
        predict_img = sum(costs["predict"].values())
        seconds = full["train"] * fit_img + full["test"] * predict_img
        total += seconds
        lines.append(f"{row['dataset']}: {full['train']} training x {fit_img:.3f} s + {full['test']} test x "
                     f"{predict_img:.3f} s = {seconds / 60:.1f} min ({full['categories']} categories)")
    lines.append(f"building the backbone once: {setup:.1f} s")
    return total + setup, lines


def print_report(rows: list[dict]) -> None:
    for row in rows:
        costs = per_image(row)
        print(f"\n{row['dataset']}/{row['category']}: {row['n_train']} training, {row['n_test']} test images; "
              f"fit {row['fit_s'] / row['n_train']:.3f} s per training image, "
              f"predict {row['n_test'] / row['predict_s']:.2f} img/s; "
              + ", ".join(f"{k} {v:.3f}" for k, v in row["metrics"].items() if v is not None))
        print(f"  {'stage':<16}{'fit ms/img':>12}{'share':>8}{'predict ms/img':>16}{'share':>8}")
        fit_total = sum(costs["fit"].values()) or 1.0
        pred_total = sum(costs["predict"].values()) or 1.0
        for stage in ORDER:
            f, p = costs["fit"][stage], costs["predict"][stage]
            print(f"  {stage:<16}{1000 * f:>12.1f}{f / fit_total:>8.0%}{1000 * p:>16.1f}{p / pred_total:>8.0%}")
        print(f"  {'total':<16}{1000 * fit_total:>12.1f}{'':>8}{1000 * pred_total:>16.1f}")
    total, lines = projection(rows)
    print("\nprojected full MVTec AD + VisA default benchmark on this machine:")
    for line in lines:
        print("  " + line)
    missing = sorted(set(FULL_COUNTS) - {row["dataset"] for row in rows})
    print(f"  total {total / 3600:.2f} h" + (f" (without {', '.join(missing)}: not measured)" if missing else ""))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mvtec", help="an MVTec AD-layout folder (its --mvtec-category is profiled)")
    parser.add_argument("--mvtec-category", default="grid")
    parser.add_argument("--visa", help="a VisA-layout folder (its --visa-category is profiled)")
    parser.add_argument("--visa-category", default="capsules")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the measurements here too")
    parser.add_argument("--report", type=Path, help="print the report of an earlier --json file (nothing is run)")
    args = parser.parse_args(argv)
    if not args.mvtec and not args.visa and not args.report:
        parser.error("give --mvtec DIR and/or --visa DIR")
    return args


def main(argv: list[str] | None = None) -> int:
    from pyimgano.openmp import apply_wait_policy

    apply_wait_policy()  # as the pyimgano command does, before torch or faiss is loaded
    args = parse_args(argv)
    if args.report:
        print_report(json.loads(args.report.read_text())["rows"])
        return 0
    rows = []
    for dataset, root, category in (("mvtec", args.mvtec, args.mvtec_category),
                                    ("visa", args.visa, args.visa_category)):
        if root:
            print(f"profiling {dataset}/{category} ...", file=sys.stderr, flush=True)
            rows.append(profile_job(dataset, str(Path(root).resolve()), category, args.seed))
    print_report(rows)
    if args.json:
        total, _ = projection(rows)
        args.json.write_text(json.dumps({"rows": rows, "projected_s": total, "full_counts": FULL_COUNTS}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
