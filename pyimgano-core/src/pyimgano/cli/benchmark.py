"""``pyimgano benchmark``: detectors x data sets x categories x seeds, metrics, tables and a report."""

from __future__ import annotations

import argparse
import os
import shlex
import sys

EPILOG = """\
examples:
  pyimgano benchmark --out runs/demo
      the embedded default: faiss:patchcore (offline backbone) on the synthetic data set
  pyimgano benchmark --detector faiss:patchcore --detector anomalib:patchcore \\
      --set faiss:patchcore.coreset_ratio=0.05 --dataset mvtec --root ~/data/mvtec_ad \\
      --category bottle --category grid --jobs 2 --out runs/mvtec
  pyimgano benchmark --detector example:mad --seeds 0 1 2 --out runs/seeds
      every (detector, category) three times; tables show mean ± std over the seeds
  pyimgano benchmark --metric image_auroc --metric aupro --out runs/two-metrics
      only these metrics (default: every registered metric, plugins' included)
  pyimgano benchmark --postprocess none --pixel-threshold quantile:0.9999 --out runs/raw
      raw maps (no post-processing) and another pixel-threshold quantile for every detector
  pyimgano benchmark --few-shot 0 --few-shot 5 --seeds 0 1 2 --out runs/few-shot
      zero-shot, and 5 labelled test defects per run tuning the pipeline (docs/few-shot.md)
  pyimgano benchmark --config bench.toml

Every run fits the detector on the training images less a seeded --val-fraction, on
which the post-processing statistics and both thresholds are fitted; metrics are computed
on the post-processed maps, and the tables add image F1 / FPR and pixel F1 at the
calibrated thresholds (docs/pipeline.md).

A rerun with the same --out skips runs that finished (--force redoes them); runs that
ended in an error are retried. Exit status: 0 all ok, 1 when some run failed, 2 bad usage.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pyimgano.bounds import TIMEOUT_MAX_S
    from pyimgano.cli.options import add_few_shot_options, add_model_options, add_set_option
    from pyimgano.pipeline.settings import PipelineSettings

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("--detector", action="append", default=[], metavar="NAME",
                        help="detector to run (repeatable); qualified plugin:name or bare name")
    add_set_option(parser, "detector parameter (repeatable): NAME.key=value for one detector, key=value for every "
                           "detector that has it; values are JSON where they parse (0.1, true, [1,2])")
    parser.add_argument("--dataset", metavar="NAME", help="data set (default: synthetic)")
    parser.add_argument("--root", metavar="DIR", help="folder of the data set")
    parser.add_argument("--category", action="append", default=[], metavar="C",
                        help="category (repeatable; default: every category)")
    parser.add_argument("--image-size", type=int, metavar="N",
                        help="resize images and masks to N x N before the detector, squashing other aspect ratios, "
                             "and score at that size (default: each image at its own size; detectors pick their own "
                             "input size, e.g. faiss:patchcore's image_size)")
    parser.add_argument("--seed", type=int, help="random seed of every job (default 0)")
    parser.add_argument("--seeds", type=int, nargs="+", metavar="S",
                        help="several seeds: every (detector, data set, category) runs once per seed and the "
                             "tables show the mean and spread (not with --seed)")
    parser.add_argument("--jobs", type=int, metavar="N", help="run N jobs in parallel processes (default 1)")
    parser.add_argument("--job-timeout", type=float, metavar="SECONDS",
                        help="stop a job that runs longer and record it as an error (default: no limit; 0: none; "
                             f"at most {TIMEOUT_MAX_S:g} s, a week)")
    parser.add_argument("--in-process", action="store_true",
                        help="run the jobs one by one in this process, for debuggers and profilers (by default "
                             "each runs in a worker process, so a crashing plugin fails only its own job)")
    parser.add_argument("--executor", default="local", metavar="NAME", help="where jobs run (default: local)")
    parser.add_argument("--ray-address", metavar="ADDR",
                        help="with --executor ray: cluster to join ('auto', 'host:6379', 'ray://host:10001'); "
                             "default: a local Ray instance. Needs pyimgano-core[ray]")
    parser.add_argument("--metric", action="append", dest="metrics", metavar="NAME",
                        help="metric to compute (repeatable; default: every registered metric, see "
                             "pyimgano list-plugins); pixel metrics need anomaly maps and masks")
    parser.add_argument("--overlays", type=int, metavar="N", help="heatmap overlays saved per category (default 4)")
    add_model_options(parser, PipelineSettings, suffix="; for every detector, replacing the config file's")
    parser.add_argument("--few-shot", action="append", type=int, dest="few_shot", metavar="K",
                        help="repeatable: K defective test images per run (drawn with its seed, removed from the "
                             "evaluation) tune the pipeline, reported beside the zero-shot pipeline on the same "
                             "images; 0: the zero-shot run on the whole test split (default). docs/few-shot.md")
    add_few_shot_options(parser, "calibration only: do not train detectors that learn from anomalies with the shots")
    parser.add_argument("--out", metavar="DIR", help="output folder (results.json, summary.md, report.html...)")
    parser.add_argument("--force", action="store_true", help="rerun runs that already finished in --out")
    parser.add_argument("--flush-interval", type=float, metavar="SECONDS",
                        help="rewrite results.json, CSV, summary.md and report.html at most this often "
                             "(default 10; 0: after every job). Each job's record is written at once")
    parser.add_argument("--config", metavar="FILE", help="bench.toml with a grid (flags override its values)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_config(args: argparse.Namespace):
    """The effective configuration: the config file (or defaults), then the flags."""
    from pydantic import ValidationError

    from pyimgano.benchmark.config import (
        DEFAULT_DATASET,
        DEFAULT_DETECTOR,
        DEFAULT_DETECTOR_PARAMS,
        BenchmarkConfig,
        ConfigError,
        DatasetEntry,
        DetectorEntry,
        grid_few_shot,
        grid_seeds,
        load_config_file,
    )
    from pyimgano.cli.options import given_settings
    from pyimgano.errors import validation_problems
    from pyimgano.pipeline.settings import PipelineSettings

    config = load_config_file(args.config) if args.config else BenchmarkConfig()
    if args.detector:
        config.detectors = [DetectorEntry(name=name) for name in dict.fromkeys(args.detector)]
    elif not config.detectors:
        config.detectors = [DetectorEntry(name=DEFAULT_DETECTOR, params=dict(DEFAULT_DETECTOR_PARAMS))]
    if args.dataset:
        config.datasets = [DatasetEntry(name=args.dataset, root=args.root, categories=args.category)]
    elif not config.datasets:
        config.datasets = [DatasetEntry(name=DEFAULT_DATASET, root=args.root, categories=args.category)]
    elif args.root or args.category:
        if len(config.datasets) != 1:
            raise ConfigError("--root/--category need --dataset when the config lists several data sets")
        entry = config.datasets[0]
        entry.root = args.root or entry.root
        entry.categories = args.category or entry.categories
    apply_assignments(config.detectors, args.assignments)
    if args.seed is not None and args.seeds is not None:
        raise ConfigError("give either --seed S or --seeds S [S ...], not both")
    if args.seed is not None:  # the flags override the config file's seed or seeds
        config.seed, config.seeds = args.seed, None
    if args.seeds is not None:
        config.seed, config.seeds = None, list(args.seeds)
    apply_few_shot_flags(config, args)
    for flag in ("image_size", "jobs", "job_timeout", "out", "overlays", "flush_interval", "metrics"):
        value = getattr(args, flag)
        if value is not None:
            setattr(config, flag, value)
    for name, value in given_settings(args, PipelineSettings).items():  # the flag decides for every detector
        setattr(config, name, value)
        for entry in config.detectors:
            setattr(entry, name, None)
    config.force = config.force or args.force
    try:
        config = BenchmarkConfig.model_validate(config.model_dump())
    except ValidationError as exc:
        raise ConfigError(f"invalid benchmark settings: {validation_problems(exc)}") from None
    grid_seeds(config)  # a repeated seed is a usage error before anything starts
    grid_few_shot(config)
    return config


def apply_few_shot_flags(config, args: argparse.Namespace) -> None:
    """--few-shot K (repeatable), --few-shot-objective, --few-shot-search, --no-few-shot-training."""
    from pyimgano.cli.options import few_shot_given

    if args.few_shot is not None:
        config.few_shot = list(args.few_shot)
    for name, value in few_shot_given(args).items():
        setattr(config, f"few_shot_{'training' if name == 'train' else name}", value)


def apply_assignments(detectors: list, assignments: list[str]) -> None:
    """Apply ``--set`` items to the detectors (in place).

    ``NAME.key=value`` sets one detector's parameter (NAME as written on the command line,
    qualified, or bare); ``key=value`` sets it on every detector whose parameters include
    ``key``, and is an error when none does.
    """
    from pyimgano.benchmark.config import ConfigError
    from pyimgano.cli.options import parse_assignment
    from pyimgano.errors import PyimganoError
    from pyimgano.plugins import get_registry

    registry = get_registry()

    def same(name: str, target: str) -> bool:
        if name == target:
            return True
        try:
            return registry.qualified_name("detector", name) == registry.qualified_name("detector", target)
        except PyimganoError:
            return False

    for item in assignments:
        target, key, value = parse_assignment(item)
        if target is not None:
            matched = [d for d in detectors if same(d.name, target)]
            if not matched:
                known = ", ".join(d.name for d in detectors) or "none"
                raise ConfigError(f"--set {item!r}: no detector {target!r} in this benchmark (detectors: {known})")
        else:
            matched = [d for d in detectors
                       if key in registry.resolve("detector", d.name)[0].params.model_fields]
            if not matched:
                raise ConfigError(
                    f"--set {item!r}: no detector of this benchmark has a parameter {key!r} "
                    f"(detectors: {', '.join(d.name for d in detectors)})"
                )
        for entry in matched:
            entry.params[key] = value


def run(args: argparse.Namespace) -> int:
    from pyimgano.benchmark.executors import create_executor
    from pyimgano.benchmark.runner import print_summary, run_benchmark

    config = build_config(args)
    # libraries' own tqdm bars (anomalib's coreset loop...) would tear through ours
    os.environ.setdefault("TQDM_DISABLE", "1")
    options = {}
    if args.executor == "ray":
        from pathlib import Path

        from pyimgano.benchmark.config import ConfigError

        if config.job_timeout or args.in_process:
            raise ConfigError("--job-timeout and --in-process apply to the local executor, not to --executor ray")
        options = {"address": args.ray_address, "log_path": Path(config.out) / "ray_log.jsonl" if config.out else None}
    elif args.executor == "local":
        options = {"job_timeout": config.job_timeout, "isolate": not args.in_process}
    executor = create_executor(args.executor, workers=config.jobs, **options)
    command = "pyimgano " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv else None
    outcome = run_benchmark(config, executor=executor, command=command, show_progress=not args.no_progress)
    print_summary(outcome)
    return 1 if outcome.n_errors else 0
