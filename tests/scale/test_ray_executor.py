"""The Ray executor on a local 2-CPU cluster: same results, retries, resume, resources."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
from benchtest import load_records
from rich.console import Console

from pyimgano.benchmark.config import BenchmarkConfig, DatasetEntry, DetectorEntry, JobSpec
from pyimgano.benchmark.executors import LocalExecutor, create_executor
from pyimgano.benchmark.runner import run_benchmark
from pyimgano_testutils import optional

pytestmark = pytest.mark.ray
optional("ray")
from pyimgano.benchmark import ray_executor  # noqa: E402 - after the optional dependency

RayExecutor = ray_executor.RayExecutor


def grid(out, root, *detectors, categories=("alpha", "beta")):
    entries = [DetectorEntry(name=d) if isinstance(d, str) else DetectorEntry(name=d[0], params=d[1])
               for d in detectors]
    return BenchmarkConfig(detectors=entries, out=str(out), overlays=1,
                           datasets=[DatasetEntry(name="mvtec", root=str(root), categories=list(categories))])


def bench(config, executor):
    return run_benchmark(config, executor=executor, console=Console(file=io.StringIO()), show_progress=False)


def results(out):
    return json.loads((out / "results.json").read_text())["runs"]


def test_ray_gives_the_local_executors_results(plugins, ray_cluster, tiny_root, tmp_path):
    detectors = ["example:mad", ("example:mad", {"sigma": 0.0})]
    bench(grid(tmp_path / "local", tiny_root, *detectors), LocalExecutor())
    outcome = bench(grid(tmp_path / "ray", tiny_root, *detectors), RayExecutor(log_path=tmp_path / "ray" / "log.jsonl"))
    local, remote = results(tmp_path / "local"), results(tmp_path / "ray")
    assert len(remote) == 4 and outcome.n_errors == 0
    for a, b in zip(local, remote):
        assert (a["detector"], a["category"], a["params"]) == (b["detector"], b["category"], b["params"])
        assert a["metrics"] == b["metrics"] and a["status"] == b["status"] == "ok"
        assert a["metrics"]["image_auroc"] > 0.9
    # the run log: one line per job with node, wall time, peak memory, retries
    log = [json.loads(line) for line in (tmp_path / "ray" / "log.jsonl").read_text().splitlines()]
    assert sorted(e["job_id"] for e in log) == sorted(r["extra"]["job_id"] for r in outcome.records)
    for entry in log:
        assert entry["node_id"] and entry["node_ip"] and entry["retries"] == 0 and entry["attempts"] == 1
        assert entry["wall_s"] > 0 and entry["peak_rss_mb"] > 10
        assert entry["pid"] != str(__import__("os").getpid())  # ran in a Ray worker, not here


def test_ray_runs_a_several_seed_grid_like_the_local_executor(plugins, ray_cluster, tiny_root, tmp_path):
    def seeded(out):
        config = grid(out, tiny_root, "example:mad", categories=["alpha"])
        config.seeds = [0, 1, 2]
        return config

    bench(seeded(tmp_path / "local"), LocalExecutor())
    outcome = bench(seeded(tmp_path / "ray"), RayExecutor(log_path=tmp_path / "ray" / "log.jsonl"))
    local, remote = results(tmp_path / "local"), results(tmp_path / "ray")
    assert [r["seed"] for r in remote] == [0, 1, 2] and outcome.n_errors == 0
    assert [(r["seed"], r["metrics"]) for r in local] == [(r["seed"], r["metrics"]) for r in remote]
    assert len({r["key"] for r in outcome.records}) == 3
    assert "| alpha | example:mad | 3/3 |" in (tmp_path / "ray" / "summary.md").read_text()
    log = [json.loads(line) for line in (tmp_path / "ray" / "log.jsonl").read_text().splitlines()]
    assert sorted(e["seed"] for e in log) == [0, 1, 2]


def test_killed_worker_is_retried_and_the_grid_completes(plugins, ray_cluster, tiny_root, tmp_path):
    marker = tmp_path / "crashed-once"
    config = grid(tmp_path / "out", tiny_root, ("scaletest:crashy", {"marker": str(marker)}), "example:mad",
                  categories=["alpha"])
    outcome = bench(config, RayExecutor(max_retries=2))
    assert marker.exists()  # the first attempt did die
    assert [r["status"] for r in outcome.runs] == ["ok", "ok"]
    crashy = outcome.records[0]["extra"]["cluster"]
    assert (crashy["attempts"], crashy["retries"]) == (2, 1)
    assert outcome.records[1]["extra"]["cluster"]["retries"] == 0


def test_without_retries_a_killed_worker_fails_only_its_job(plugins, ray_cluster, tiny_root, tmp_path):
    config = grid(tmp_path / "out", tiny_root, ("scaletest:crashy", {"marker": str(tmp_path / "m")}),
                  "example:mad", categories=["alpha"])
    outcome = bench(config, RayExecutor(max_retries=0))
    crashy, mad = outcome.runs
    assert crashy["status"] == "error" and "Ray worker died" in crashy["error"] and "1 attempt" in crashy["error"]
    assert mad["status"] == "ok"


class InterruptAfter(RayExecutor):
    """The Ray executor, with Ctrl-C arriving after ``n`` results reached the driver."""

    def __init__(self, n, **options):
        super().__init__(**options)
        self.n = n

    def map_unordered(self, jobs, progress=None):
        for i, item in enumerate(super().map_unordered(jobs, progress)):
            if i == self.n:
                raise KeyboardInterrupt
            yield item


def test_interrupted_driver_keeps_finished_results_and_rerun_skips_them(plugins, ray_cluster, tiny_root, tmp_path):
    config = grid(tmp_path, tiny_root, "example:mad", ("example:mad", {"sigma": 0.0}))
    with pytest.raises(KeyboardInterrupt):
        bench(config, InterruptAfter(2))
    kept = load_records(tmp_path)
    assert len(kept) == 2 and all(r["run"]["status"] == "ok" for r in kept)
    assert len(results(tmp_path)) == 2
    outcome = bench(config, RayExecutor())
    assert len(outcome.skipped) == 2 and len(outcome.runs) == 4 and outcome.n_errors == 0
    for record in kept:  # the finished runs were not redone
        again = next(r for r in outcome.records if r["key"] == record["key"])
        assert again["extra"]["cluster"]["node_id"] == record["extra"]["cluster"]["node_id"]
        assert again["extra"]["wall_s"] == record["extra"]["wall_s"]


def test_resource_requests_reach_ray(plugins, ray_cluster, tiny_root, tmp_path):
    outcome = bench(grid(tmp_path, tiny_root, "scaletest:hungry", "scaletest:gpu", categories=["alpha"]),
                    RayExecutor())
    hungry, gpu = outcome.records
    assert hungry["run"]["status"] == "ok"
    cluster = hungry["extra"]["cluster"]
    assert cluster["requested"] == {"num_cpus": 1.5, "num_gpus": 0.0, "memory": 64 * 1024 * 1024}
    assert cluster["assigned"]["CPU"] == 1.5 and cluster["assigned"]["memory"] == 64 * 1024 * 1024
    # a request no node can meet fails that job at once instead of queueing forever
    assert gpu["run"]["status"] == "error"
    assert "no node of the Ray cluster has 1 CPU, 1 GPU (nodes: 2 CPU, 0 GPU" in gpu["run"]["error"]


def test_a_worker_that_cannot_read_the_root_fails_clearly(plugins, tmp_path):
    spec = JobSpec(detector="example:mad", params={}, dataset="mvtec", dataset_label="mvtec",
                   root=str(tmp_path / "not-mounted"), category="alpha")
    outcome = ray_executor.run_remote_job(spec.model_dump(mode="json"), {"num_cpus": 1})
    error = outcome["run"]["error"]
    assert outcome["run"]["status"] == "error"
    assert "cannot read the data set root" in error and "not-mounted" in error and "does not exist" in error


def test_executor_by_name_and_ray_stays_unimported():
    assert isinstance(create_executor("ray", workers=3, address="auto"), RayExecutor)
    code = ("import sys, pyimgano.cli.benchmark, pyimgano.benchmark.executors, pyimgano.benchmark.runner; "
            "assert 'ray' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_joins_a_running_cluster_and_writes_the_run_log(example_plugin_site, ray_cluster, tiny_root, tmp_path):
    from pyimgano_testutils import run_cli

    address = ray_cluster.get_runtime_context().gcs_address
    out = tmp_path / "out"
    proc = run_cli("benchmark", "--executor", "ray", "--ray-address", address, "--detector", "example:mad",
                   "--dataset", "mvtec", "--root", str(tiny_root), "--category", "alpha", "--overlays", "0",
                   "--no-progress", "--out", str(out), pythonpath=[example_plugin_site])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    (run,) = results(out)
    assert run["status"] == "ok" and run["metrics"]["image_auroc"] > 0.9
    (entry,) = [json.loads(line) for line in (out / "ray_log.jsonl").read_text().splitlines()]
    assert entry["status"] == "ok" and entry["node_ip"] and entry["retries"] == 0
    assert ray_cluster.is_initialized()  # the CLI left the shared cluster running
