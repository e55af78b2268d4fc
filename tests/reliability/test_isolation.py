"""Plugins that crash or hang fail only their own job; a killed driver leaves no worker behind."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from reliability_helpers import benchtest
from rich.console import Console

from pyimgano.benchmark.config import BenchmarkConfig, ConfigError, DatasetEntry, DetectorEntry, load_config_file
from pyimgano.benchmark.executors import LocalExecutor
from pyimgano.benchmark.runner import run_benchmark
from pyimgano_testutils import run_cli

BETA = 20  # image height of the beta category: the crasher acts there only


def config(out: Path, root: Path, jobs: int = 1, **params) -> BenchmarkConfig:
    return BenchmarkConfig(detectors=[DetectorEntry(name="hostile:crasher", params={"on_height": BETA, **params})],
                           datasets=[DatasetEntry(name="mvtec", root=str(root))], out=str(out), jobs=jobs,
                           overlays=0)


def quiet() -> Console:
    return Console(file=io.StringIO(), width=200)


def status(outcome) -> dict[str, tuple[str, str | None]]:
    return {r["category"]: (r["status"], r["error"]) for r in outcome.runs}


@pytest.mark.parametrize(("action", "expected"), [
    ("segfault", "worker process died while running this job: killed by SIGSEGV (11: a crash in native code)"),
    ("abort", "worker process died while running this job: killed by SIGABRT (6: aborted, e.g. by a failed check "
              "in native code)"),
])
def test_a_crashing_plugin_fails_only_its_job_with_the_signal(hostile, mvtec_root, tmp_path, action, expected):
    outcome = run_benchmark(config(tmp_path, mvtec_root, action=action), console=quiet())
    assert status(outcome) == {"alpha": ("ok", None), "beta": ("error", expected)}
    beta = next(r for r in benchtest.load_records(tmp_path) if r["run"]["category"] == "beta")
    assert beta["extra"]["signal"] == ("SIGSEGV" if action == "segfault" else "SIGABRT")
    assert [r["status"] for r in json.loads((tmp_path / "results.json").read_text())["runs"]] == ["ok", "error"]


def test_default_cli_run_survives_a_segfault_and_a_rerun_goes_on(hostile_site, mvtec_root, tmp_path):
    args = ["benchmark", "--detector", "hostile:crasher", "--set", "action=segfault", "--set", f"on_height={BETA}",
            "--dataset", "mvtec", "--root", str(mvtec_root), "--overlays", "0", "--out", str(tmp_path),
            "--no-progress"]
    for attempt in range(2):
        result = run_cli(*args, pythonpath=[hostile_site])
        assert result.returncode == 1, result.stderr  # some run failed; not 139
        assert "killed by SIGSEGV" in result.stdout
        runs = json.loads((tmp_path / "results.json").read_text())["runs"]
        assert [(r["category"], r["status"]) for r in runs] == [("alpha", "ok"), ("beta", "error")]
        if attempt == 1:
            assert "1 already finished there (skipped" in result.stdout


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_hanging_plugin_is_stopped_after_the_job_timeout(hostile, mvtec_root, tmp_path, jobs):
    started = time.monotonic()
    outcome = run_benchmark(config(tmp_path, mvtec_root, jobs=jobs, action="hang").model_copy(
        update={"job_timeout": 5.0}), console=quiet())  # room for alpha's worker to start on a busy machine
    assert time.monotonic() - started < 300  # a guard against a hang: the timeout stopped beta
    assert status(outcome) == {
        "alpha": ("ok", None),
        "beta": ("error", "timed out after 5 s (job_timeout); its worker process was stopped"),
    }


def test_job_timeout_in_bench_toml_and_its_limits(tmp_path):
    (tmp_path / "bench.toml").write_text("job_timeout = 90.5\n")
    assert load_config_file(tmp_path / "bench.toml").job_timeout == 90.5
    (tmp_path / "bad.toml").write_text("job_timeout = -1\n")
    with pytest.raises(ConfigError, match=r"bad.toml: job_timeout: Input should be greater than or equal to 0"):
        load_config_file(tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match=r"--in-process cannot stop a job after job_timeout \(60 s\); give "
                                          r"--job-timeout 0 to run without it"):
        LocalExecutor(isolate=False, job_timeout=60)
    with pytest.raises(ConfigError, match="--in-process runs one job at a time; it cannot run --jobs 2"):
        LocalExecutor(workers=2, isolate=False)
    assert LocalExecutor(isolate=False, job_timeout=0).job_timeout is None


def test_in_process_opt_out_runs_jobs_here(hostile, mvtec_root, tmp_path):
    outcome = run_benchmark(config(tmp_path, mvtec_root), executor=LocalExecutor(isolate=False), console=quiet())
    assert {r["extra"]["pid"] for r in outcome.records} == {os.getpid()}
    isolated = run_benchmark(config(tmp_path / "isolated", mvtec_root), console=quiet())
    assert os.getpid() not in {r["extra"]["pid"] for r in isolated.records}
    assert [r["metrics"] for r in isolated.runs] == [r["metrics"] for r in outcome.runs]


def test_progress_comes_back_from_the_worker(hostile, mvtec_root, tmp_path):
    from pyimgano.benchmark.config import expand_jobs

    events = []
    jobs = expand_jobs(config(tmp_path, mvtec_root))
    outcomes = list(LocalExecutor().map_unordered(jobs, lambda *event: events.append(event)))
    assert [spec.category for spec, _ in outcomes] == ["alpha", "beta"]
    stages = [(job_id.split("__")[2], stage) for job_id, stage, _, _ in events]
    assert ("alpha", "load") in stages and ("beta", "score") in stages and stages[-1] == ("beta", "metrics")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its new parent) computes nothing either
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_workers_stop_when_the_driver_is_killed(hostile_site, mvtec_root, tmp_path, how):
    marker = tmp_path / "worker.pid"
    out = tmp_path / "out"
    args = [sys.executable, "-m", "pyimgano", "benchmark", "--detector", "hostile:crasher", "--set", "action=hang",
            "--set", f"on_height={BETA}", "--set", f"marker={marker}", "--dataset", "mvtec", "--root",
            str(mvtec_root), "--overlays", "0", "--out", str(out), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hostile_site), os.environ.get("PYTHONPATH", "")])}
    driver = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    worker = None
    try:
        deadline = time.monotonic() + 120  # a guard against a hang only: the state is polled
        while time.monotonic() < deadline and not (len(list((out / "jobs").glob("*.json"))) == 1
                                                   and marker.is_file() and marker.read_text().endswith("hanging")):
            time.sleep(0.05)
        worker = int(marker.read_text().split()[0])  # beta's fit wrote it and now hangs
        assert worker != driver.pid and _alive(worker)
        driver.send_signal(how)
        _, stderr = driver.communicate(timeout=120)  # a guard against a hang (the exit takes about a second)
        deadline = time.monotonic() + 10
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(worker), "the worker computes on after its driver was killed"
    finally:
        driver.kill()
        if worker is not None and _alive(worker):
            os.kill(worker, signal.SIGKILL)
    if how == signal.SIGTERM:
        assert driver.returncode == 128 + signal.SIGTERM
        assert stderr.splitlines() == ["terminated: stopping the workers; finished runs are saved"]
        runs = json.loads((out / "results.json").read_text())["runs"]
        assert [(r["category"], r["status"]) for r in runs] == [("alpha", "ok")]  # finished work written
    assert [r["run"]["category"] for r in benchtest.load_records(out)] == ["alpha"]
