"""Several seeds per grid: settings, job expansion, aggregated tables, resume across seed sets."""

from __future__ import annotations

import argparse
import csv
import io
import json

import pytest
from benchtest import CORE_METRIC_KEYS
from rich.console import Console

from pyimgano.benchmark import tables
from pyimgano.benchmark.config import (
    BenchmarkConfig,
    ConfigError,
    DatasetEntry,
    DetectorEntry,
    JobSpec,
    expand_jobs,
    grid_seeds,
    load_config_file,
)
from pyimgano.benchmark.executors import LocalExecutor
from pyimgano.benchmark.runner import run_benchmark
from pyimgano.cli.benchmark import add_arguments, build_config


def grid(out, root, *detectors, categories=("alpha",), **kwargs):
    entries = [DetectorEntry(name=d) if isinstance(d, str) else DetectorEntry(name=d[0], params=d[1])
               for d in detectors]
    return BenchmarkConfig(detectors=entries, datasets=[DatasetEntry(name="toy", root=str(root),
                                                                     categories=list(categories))],
                           out=str(out), overlays=0, **kwargs)


def quiet():
    return Console(file=io.StringIO(), width=200)


class Recording(LocalExecutor):
    def __init__(self, workers=1):
        super().__init__(workers=workers)
        self.seen = []

    def map_unordered(self, jobs, progress=None):
        self.seen.extend((j.category, j.seed) for j in jobs)
        yield from super().map_unordered(jobs, progress)


# -- settings ------------------------------------------------------------------------------------
def test_seed_or_seeds_one_way_only():
    assert grid_seeds(BenchmarkConfig()) == [0]
    assert grid_seeds(BenchmarkConfig(seed=3)) == [3]
    assert BenchmarkConfig(seeds=[2, 0, 1]).seed_list == [2, 0, 1]  # the order given
    with pytest.raises(ConfigError, match=r"either seed \(1\) or seeds \(\[0, 1\]\), not both"):
        grid_seeds(BenchmarkConfig(seed=1, seeds=[0, 1]))
    with pytest.raises(ConfigError, match=r"seeds \[0, 1, 0, 1\]: 0, 1 given more than once"):
        grid_seeds(BenchmarkConfig(seeds=[0, 1, 0, 1]))
    with pytest.raises(ConfigError, match="seeds is empty"):
        grid_seeds(BenchmarkConfig(seeds=[]))


def test_config_files_give_seeds_in_toml_or_json(tmp_path):
    toml = tmp_path / "bench.toml"
    toml.write_text("seeds = [0, 1, 2]\nflush_interval = 2.5\n")
    config = load_config_file(toml)
    assert config.seed_list == [0, 1, 2] and config.flush_interval == 2.5
    as_json = tmp_path / "bench.json"
    as_json.write_text(json.dumps({"seeds": [4, 5], "detectors": [{"name": "x"}]}))
    assert load_config_file(as_json).seed_list == [4, 5]
    toml.write_text("seed = 1\nseeds = [0, 1]\n")
    with pytest.raises(ConfigError, match=f"{toml}: give either seed"):
        load_config_file(toml)
    as_json.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="expected a JSON object"):
        load_config_file(as_json)
    as_json.write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config_file(as_json)
    toml.write_text("flush_interval = -1\n")
    with pytest.raises(ConfigError, match="flush_interval"):
        load_config_file(toml)


def _cli(*argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return build_config(parser.parse_args(list(argv)))


def test_cli_seeds_flags(tmp_path):
    assert _cli("--out", "x").seed_list == [0]
    assert _cli("--seed", "7").seed_list == [7]
    config = _cli("--seeds", "0", "1", "2", "--flush-interval", "0")
    assert config.seed_list == [0, 1, 2] and config.seed is None and config.flush_interval == 0
    assert _cli().flush_interval == 10
    with pytest.raises(ConfigError, match="either --seed S or --seeds"):
        _cli("--seed", "1", "--seeds", "0", "1")
    with pytest.raises(ConfigError, match="1 given more than once"):
        _cli("--seeds", "1", "1")
    # flags override the config file's seed(s), whichever form each uses
    file = tmp_path / "bench.toml"
    file.write_text("seed = 5\n")
    assert _cli("--config", str(file), "--seeds", "0", "1").seed_list == [0, 1]
    file.write_text("seeds = [0, 1]\n")
    assert _cli("--config", str(file), "--seed", "3").seed_list == [3]
    assert _cli("--config", str(file)).seed_list == [0, 1]


# -- jobs ------------------------------------------------------------------------------------------
def test_one_job_per_seed_each_the_same_as_its_one_seed_job(fake_plugin, toy_root, tmp_path):
    detectors = ("benchtest:mean", "benchtest:nomaps")
    jobs = expand_jobs(grid(tmp_path, toy_root, *detectors, seeds=[0, 1, 2]))
    assert [(j.detector, j.seed) for j in jobs] == [
        ("benchtest:mean", 0), ("benchtest:mean", 1), ("benchtest:mean", 2),
        ("benchtest:nomaps", 0), ("benchtest:nomaps", 1), ("benchtest:nomaps", 2)]
    assert [j.params for j in jobs[:3]] == [{"sigma": 1.0, "seed": s} for s in (0, 1, 2)]
    assert jobs[3].params == {}  # no seed parameter: the job's seed still seeds Python, NumPy, torch
    assert len({j.key for j in jobs}) == 6
    for seed in (0, 1, 2):  # a several-seed grid reuses the one-seed runs of an output folder
        one = expand_jobs(grid(tmp_path, toy_root, *detectors, seed=seed))
        assert one == [j for j in jobs if j.seed == seed]
    assert expand_jobs(grid(tmp_path, toy_root, *detectors)) == [j for j in jobs if j.seed == 0]


def test_job_keys_are_stable():
    # keys are a digest of the spec: the same spec must give the same key in every version (a rerun
    # skips what finished). The pipeline fields (post-processing, thresholds, validation share) joined
    # the spec with the inspection pipeline, so runs measured before it are measured anew once; so
    # did the calibration source and the fpr:ALPHA default image threshold (calibration changes
    # what the detector is fitted on).
    spec = dict(detector="benchtest:mean", dataset="benchtest:toy", dataset_label="toy", root="/data/toy",
                category="alpha")
    assert JobSpec(**spec, params={"sigma": 1.0, "seed": 0}, seed=0).key == "8ef2441d8e"
    assert JobSpec(**spec, params={"sigma": 1.0, "seed": 2}, seed=2).job_id.startswith("benchtest-mean__toy__alpha__")
    raw = JobSpec(**spec, params={"sigma": 1.0, "seed": 0}, seed=0, postprocess=[{"name": "standardize"}])
    assert raw.key != JobSpec(**spec, params={"sigma": 1.0, "seed": 0}, seed=0).key


def test_a_detector_seed_set_by_hand_conflicts_with_several_seeds(fake_plugin, toy_root, tmp_path):
    with pytest.raises(ConfigError, match=r"'benchtest:mean' sets seed=4 itself, so the seeds 0, 1 would all fit"):
        expand_jobs(grid(tmp_path, toy_root, ("benchtest:mean", {"seed": 4}), seeds=[0, 1]))
    (job,) = expand_jobs(grid(tmp_path, toy_root, ("benchtest:mean", {"seed": 4}), seed=0))
    assert job.params["seed"] == 4 and job.seed == 0  # one seed: as before


# -- tables ----------------------------------------------------------------------------------------
def _run(detector, category, seed, auroc, status="ok", params=None):
    metrics = dict.fromkeys(CORE_METRIC_KEYS)
    metrics["image_auroc"] = auroc
    return {"detector": detector, "dataset": "toy", "category": category, "seed": seed, "status": status,
            "error": "fit: boom" if status == "error" else None, "params": params or {"seed": seed},
            "metrics": metrics, "timing": {"fit_s": 1.0 + seed, "predict_s": 2.0, "images_per_s": 3.0},
            "peak_rss_mb": 100.0 + seed, "n_train": 6, "n_test": 7}


def test_tables_aggregate_seeds_mean_and_spread():
    runs = [_run("a", "alpha", s, v) for s, v in ((0, 0.8), (1, 0.9), (2, 1.0))]
    runs += [_run("a", "beta", 0, 0.6), _run("a", "beta", 1, None, status="error"), _run("a", "beta", 2, 0.7)]
    runs += [_run("b", "alpha", s, 0.5, params={"seed": s, "k": 1}) for s in (0, 1, 2)]
    runs += [_run("b", "beta", s, 0.5, status="error", params={"seed": s, "k": 1}) for s in (0, 1, 2)]
    header, rows = tables.table_rows(runs)
    assert header[:4] == ["category", "detector", "seeds", "img AUROC"]
    cells = {(c[0], c[1]): c for _, c in rows}
    assert cells[("alpha", "a")][2:4] == ["3/3", "0.900 ± 0.100"]  # sample std of 0.8, 0.9, 1.0
    assert cells[("alpha", "a")][-4:] == ["2.00", "2.00", "3.0", "102"]  # mean times, peak memory: the max
    assert cells[("beta", "a")][2:4] == ["2/3", "0.650 ± 0.071"]
    assert cells[("alpha", "b")][2:4] == ["3/3", "0.500 ± 0.000"]  # the grid's seed is no variant of b
    assert rows[[c[:2] for _, c in rows].index(["beta", "b"])] == (
        "error", ["beta", "b", "0/3", "error"] + [""] * (len(header) - 4))
    # mean rows: mean over ok runs, ± the spread of the per-seed means (0.7, 0.9, 0.85 for a)
    means = {c[1]: c for kind, c in rows if kind == "mean"}
    assert means["a"][:4] == ["mean (5/6)", "a", "3", "0.800 ± 0.104"]
    assert means["b"][:4] == ["mean (3/6)", "b", "3", "0.500 ± 0.000"]
    side_header, side_rows = tables.comparison_rows(runs, "image_auroc")
    assert side_header == ["category", "a", "b"]
    assert side_rows == [["alpha", "0.900", "0.500"], ["beta", "0.650", "error"], ["mean", "0.800", "0.500"]]
    summary = tables.summary_markdown(runs)
    assert "Seeds: 3 seeds (0, 1, 2): each row is the mean" in summary
    assert "### img AUROC side by side (mean over 3 seeds)" in summary
    assert "- `a` on toy/beta (seed 1): fit: boom" in summary
    csv_lines = tables.results_csv(runs).splitlines()
    assert csv_lines[0].split(",")[-4:] == ["seed", "params", "pipeline", "error"] and len(csv_lines) == 1 + len(runs)
    assert [row["seed"] for row in csv.DictReader(csv_lines)][:3] == ["0", "1", "2"]
    rendered = Console(file=io.StringIO(), width=250, record=True)
    for renderable in tables.rich_tables(runs, width=250):
        rendered.print(renderable)
    text = rendered.export_text()
    assert "mean ± std over 3 seeds" in text and "0.900 ± 0.100" in text and "(seed 1): fit: boom" in text


def test_one_seed_tables_have_no_seed_column_or_spread():
    runs = [_run("a", "alpha", 0, 0.8), _run("a", "beta", 0, 0.6)]
    header, rows = tables.table_rows(runs)
    assert "seeds" not in header and tables.seeds_note(runs) is None
    assert [c[:3] for _, c in rows] == [["alpha", "a", "0.800"], ["beta", "a", "0.600"], ["mean", "a", "0.700"]]
    assert "Seeds:" not in tables.summary_markdown(runs) and "±" not in tables.summary_markdown(runs)


# -- end to end ------------------------------------------------------------------------------------------
def _by_seed(out):
    return {(r["detector"], r["category"], r["seed"]): r for r in
            json.loads((out / "results.json").read_text())["runs"]}


def test_several_seeds_end_to_end_serial_and_parallel_and_resume(fake_plugin, toy_root, tmp_path):
    detectors = ("benchtest:mean", "benchtest:nomaps")
    # a one-seed run first: its runs are the seed-0 runs of the several-seed grid that follows
    run_benchmark(grid(tmp_path / "serial", toy_root, *detectors, categories=("alpha", "beta")), console=quiet())
    serial = Recording()
    outcome = run_benchmark(grid(tmp_path / "serial", toy_root, *detectors, categories=("alpha", "beta"),
                                 seeds=[0, 1]), executor=serial, console=quiet())
    assert sorted(serial.seen) == [("alpha", 1), ("alpha", 1), ("beta", 1), ("beta", 1)]
    assert len(outcome.skipped) == 4 and all(s.endswith("(seed 0)") for s in outcome.skipped)
    runs = _by_seed(tmp_path / "serial")
    assert len(runs) == 8 and {k[2] for k in runs} == {0, 1}
    assert runs[("benchtest:mean", "alpha", 1)]["params"] == {"sigma": 1.0, "seed": 1}

    parallel = run_benchmark(grid(tmp_path / "parallel", toy_root, *detectors, categories=("alpha", "beta"),
                                  seeds=[0, 1], jobs=2), console=quiet())
    assert parallel.n_errors == 0 and len({r["extra"]["pid"] for r in parallel.records}) == 2
    assert {k: r["metrics"] for k, r in _by_seed(tmp_path / "parallel").items()} == {
        k: r["metrics"] for k, r in runs.items()}
    summary = (tmp_path / "parallel" / "summary.md").read_text()
    assert "Seeds: 2 seeds (0, 1)" in summary and "| alpha | benchtest:mean | 2/2 |" in summary
    assert "(seed=" not in summary  # the seed parameter the grid passed on is not a detector variant
    assert "seed" in (tmp_path / "parallel" / "results.csv").read_text().splitlines()[0].split(",")
    assert "mean over 2 seeds" in (tmp_path / "parallel" / "report.html").read_text()

    # one more seed: only its jobs run
    more = Recording()
    run_benchmark(grid(tmp_path / "serial", toy_root, *detectors, categories=("alpha", "beta"), seeds=[0, 1, 2]),
                  executor=more, console=quiet())
    assert sorted(more.seen) == [("alpha", 2), ("alpha", 2), ("beta", 2), ("beta", 2)]
    assert len(_by_seed(tmp_path / "serial")) == 12


def test_report_shows_one_seeds_heatmaps(fake_plugin, toy_root, tmp_path):
    config = grid(tmp_path, toy_root, "benchtest:mean", seeds=[0, 1])
    config.overlays = 1
    run_benchmark(config, console=quiet())
    report = (tmp_path / "report.html").read_text()
    assert report.count("data:image/png;base64,") == 1 and "benchtest:mean</b> (seed 0)" in report
