"""results.json, CSV, summary and report are rewritten at a bounded rate; job records at once."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from benchtest import load_records
from rich.console import Console

from pyimgano.benchmark import runner
from pyimgano.benchmark.config import BenchmarkConfig, DatasetEntry, DetectorEntry
from pyimgano.benchmark.executors import LocalExecutor
from pyimgano.benchmark.runner import _Flusher, run_benchmark


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_flusher_writes_the_first_result_then_at_most_every_interval():
    clock, writes = FakeClock(), []
    flusher = _Flusher(lambda: writes.append(clock.now) or {"results": clock.now}, 10.0, clock=clock)
    for t in (100, 101, 105, 110, 111, 125):
        clock.now = t
        flusher.result_arrived()
    assert writes == [100, 110, 125]
    clock.now = 126
    flusher.result_arrived()
    assert flusher.close() == {"results": 126} and writes == [100, 110, 125, 126]  # the pending one, at the end
    assert flusher.close() == {"results": 126} and len(writes) == 4  # nothing pending: no rewrite

    every = []
    flusher = _Flusher(lambda: every.append(1) or {}, 0.0, clock=clock)
    for _ in range(3):
        flusher.result_arrived()
    flusher.close()
    assert len(every) == 3  # 0: after every result, nothing left for the end


def test_a_failing_final_write_gives_way_to_the_exception_in_flight():
    def write():
        raise OSError("disk full")

    flusher = _Flusher(write, 10.0)
    flusher.pending = True
    assert flusher.close(quiet=True) == {}
    with pytest.raises(OSError, match="disk full"):
        flusher.close()


def grid(out, root, flush_interval, seeds=(0, 1), categories=("alpha", "beta")):
    return BenchmarkConfig(detectors=[DetectorEntry(name="benchtest:mean"), DetectorEntry(name="benchtest:nomaps")],
                           datasets=[DatasetEntry(name="toy", root=str(root), categories=list(categories))],
                           seeds=list(seeds), out=str(out), overlays=0, flush_interval=flush_interval)


class InterruptAfter(LocalExecutor):
    """The serial executor; Ctrl-C arrives once ``n`` results reached the driver."""

    def __init__(self, n):
        super().__init__(workers=1)
        self.n = n
        self.seen = []

    def map_unordered(self, jobs, progress=None):
        for i, item in enumerate(super().map_unordered(jobs, progress)):
            if i == self.n:
                raise KeyboardInterrupt
            self.seen.append(item[0].key)
            yield item


def _count_writes(monkeypatch):
    calls = []
    real = runner.write_outputs

    def counting(store, records, command=None):
        calls.append(len(records))
        return real(store, records, command)

    monkeypatch.setattr(runner, "write_outputs", counting)
    return calls


def _runs(out):
    return json.loads((out / "results.json").read_text())["runs"]


def test_throttled_writes_and_a_final_write_on_ctrl_c(fake_plugin, toy_root, tmp_path, monkeypatch):
    calls = _count_writes(monkeypatch)
    console = Console(file=io.StringIO())
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(grid(tmp_path, toy_root, 3600), executor=InterruptAfter(5), console=console)
    assert calls == [1, 5]  # the first result, then once more as Ctrl-C ends the run
    assert len(_runs(tmp_path)) == 5 and len(load_records(tmp_path)) == 5

    calls.clear()
    again = InterruptAfter(99)
    outcome = run_benchmark(grid(tmp_path, toy_root, 3600), executor=again, console=console)
    assert len(again.seen) == 3 and len(outcome.skipped) == 5  # nothing finished was recomputed
    assert calls == [6, 8] and len(_runs(tmp_path)) == 8  # the first new result, and the end

    calls.clear()
    run_benchmark(grid(tmp_path / "every", toy_root, 0), console=console)
    assert calls == [1, 2, 3, 4, 5, 6, 7, 8]  # flush_interval 0: after every result, as before


def test_killed_between_rewrites_a_rerun_recomputes_nothing(fake_plugin_site, toy_root, tmp_path):
    """SIGKILL (no final write): results.json is stale, the job records are not."""
    out = tmp_path / "bench"
    args = [sys.executable, "-m", "pyimgano", "benchmark", "--detector", "benchtest:sleepy", "--set", "sleep_s=60",
            "--dataset", "toy", "--root", str(toy_root), "--seeds", "0", "1", "--flush-interval", "3600",
            "--overlays", "0", "--out", str(out), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake_plugin_site), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while len(list((out / "jobs").glob("*.json"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(list((out / "jobs").glob("*.json"))) == 2, "alpha's two seeds never finished"
        time.sleep(0.3)  # beta's fit sleeps 60 s
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=120)  # a guard against a hang
    finally:
        process.kill()
    assert [r["seed"] for r in _runs(out)] == [0]  # written after the first result only
    assert sorted(r["run"]["seed"] for r in load_records(out)) == [0, 1]

    from benchtest import plugin_on_path

    class Recording(LocalExecutor):
        seen: list = []

        def map_unordered(self, jobs, progress=None):
            self.seen.extend(jobs)
            yield from super().map_unordered(jobs, progress)

    with plugin_on_path(fake_plugin_site):
        config = BenchmarkConfig(detectors=[DetectorEntry(name="benchtest:sleepy", params={"sleep_s": 60})],
                                 datasets=[DatasetEntry(name="toy", root=str(toy_root), categories=["alpha"])],
                                 seeds=[0, 1], out=str(out), overlays=0, flush_interval=3600)
        outcome = run_benchmark(config, executor=Recording(), console=Console(file=io.StringIO()))
    assert Recording.seen == [] and len(outcome.skipped) == 2
    assert [(r["category"], r["seed"], r["status"]) for r in _runs(out)] == [("alpha", 0, "ok"), ("alpha", 1, "ok")]
