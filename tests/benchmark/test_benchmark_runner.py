"""The benchmark runner end to end on a fake plugin and tiny MVTec-layout folders."""

from __future__ import annotations

import io
import json
import math

import pytest
from benchtest import CORE_METRIC_KEYS, RecordingExecutor, in_order
from PIL import Image
from rich.console import Console

from pyimgano.benchmark.config import BenchmarkConfig, DatasetEntry, DetectorEntry, expand_jobs
from pyimgano.benchmark.metric_set import resolve_metrics
from pyimgano.benchmark.runner import run_benchmark

# the results.json schema of docs/benchmark.md ("Output folder"), written out independently of the code
RUN_KEYS = {"detector", "dataset", "category", "seed", "status", "error", "params", "pipeline", "metrics",
            "deployed", "timing", "peak_rss_mb", "n_train", "n_val", "n_test", "few_shot"}
DEPLOYED_KEYS = {"image_threshold", "image_precision", "image_recall", "image_f1", "image_fpr",
                 "image_fpr_target", "image_fpr_upper", "n_calibration", "pixel_threshold", "pixel_precision", "pixel_recall", "pixel_f1", "pixel_iou"}
TIMING_KEYS = {"fit_s", "predict_s", "images_per_s"}


def config(out, toy_root, *detectors, jobs=1, **kwargs):
    entries = [DetectorEntry(name=d) if isinstance(d, str) else DetectorEntry(name=d[0], params=d[1])
               for d in detectors]
    return BenchmarkConfig(detectors=entries, datasets=[DatasetEntry(name="toy", root=str(toy_root))],
                           out=str(out), jobs=jobs, **kwargs)


def quiet():
    return Console(file=io.StringIO(), width=200)


def test_results_json_has_exactly_the_documented_schema(fake_plugin, toy_root, tmp_path):
    outcome = run_benchmark(config(tmp_path, toy_root, "benchtest:mean"), console=quiet())
    data = json.loads((tmp_path / "results.json").read_text())
    assert set(data) == {"runs"}
    assert [(r["detector"], r["dataset"], r["category"]) for r in data["runs"]] == [
        ("benchtest:mean", "toy", "alpha"), ("benchtest:mean", "toy", "beta")]
    for run in data["runs"]:
        assert set(run) == RUN_KEYS
        # one key per registered metric (no metric plugin here: the core's), the old keys among them
        assert list(run["metrics"]) == [m.key for m in resolve_metrics()] and set(run["timing"]) == TIMING_KEYS
        assert in_order(CORE_METRIC_KEYS, list(run["metrics"]))
        assert run["status"] == "ok" and run["error"] is None and run["seed"] == 0
        assert run["params"] == {"sigma": 1.0, "seed": 0}
        # the detector fits on 5 of the 6 training images; one is held out to calibrate
        assert (run["n_train"], run["n_val"], run["n_test"]) == (5, 1, 7)
        assert set(run["deployed"]) == DEPLOYED_KEYS and run["pipeline"]["val_fraction"] == 0.1
        for name, value in run["metrics"].items():
            assert isinstance(value, float) and 0.0 <= value <= 1.0, name
        assert run["metrics"]["image_auroc"] > 0.9  # bright squares are easy
        assert run["timing"]["fit_s"] >= 0 and run["timing"]["predict_s"] > 0
        assert math.isclose(run["timing"]["images_per_s"], 7 / run["timing"]["predict_s"])
        assert isinstance(run["peak_rss_mb"], float) and run["peak_rss_mb"] > 10
    assert outcome.n_errors == 0


def test_outputs_csv_summary_overlays_report(fake_plugin, toy_root, tmp_path):
    run_benchmark(config(tmp_path, toy_root, "benchtest:mean", ("benchtest:mean", {"sigma": 0.0})), console=quiet())
    csv_lines = (tmp_path / "results.csv").read_text().splitlines()
    assert csv_lines[0].startswith("detector,label,dataset,category,status,image_auroc")
    assert len(csv_lines) == 1 + 4
    summary = (tmp_path / "summary.md").read_text()
    # two parameter sets of one detector: labelled by the parameter that differs, mean row each
    assert "benchtest:mean (sigma=1.0)" in summary and "benchtest:mean (sigma=0.0)" in summary
    assert summary.count("| **mean** |") == 2
    assert "img AUROC side by side" in summary
    overlays = sorted((tmp_path / "overlays").rglob("*.jpg"))
    assert len(overlays) == 4 * 4  # 4 jobs x (3 defects + 1 good, capped at 4)
    with Image.open(overlays[0]) as picture:
        assert picture.format == "JPEG"
        assert picture.width > 3 * picture.height - 100  # three panels side by side, plus a caption strip
    report = (tmp_path / "report.html").read_text()
    assert report.count("data:image/jpeg;base64,") == 16
    assert "<table>" in report and "alpha" in report and "src=\"http" not in report
    scores = (tmp_path / "scores").glob("*.csv")
    assert len(list(scores)) == 4


def test_rerun_skips_finished_runs_and_force_redoes_them(fake_plugin, toy_root, tmp_path):
    def config(*args, **kwargs):  # no overlays: this test is about which jobs run
        return globals()["config"](*args, overlays=0, **kwargs)

    first = RecordingExecutor()
    run_benchmark(config(tmp_path, toy_root, "benchtest:mean"), executor=first, console=quiet())
    assert len(first.seen) == 2
    results = (tmp_path / "results.json").read_text()

    again = RecordingExecutor()
    outcome = run_benchmark(config(tmp_path, toy_root, "benchtest:mean"), executor=again, console=quiet())
    assert again.seen == [] and len(outcome.skipped) == 2
    assert (tmp_path / "results.json").read_text() == results

    # an interrupted benchmark: one record missing -> only that job runs
    next((tmp_path / "jobs").glob("*beta*.json")).unlink()
    resumed = RecordingExecutor()
    run_benchmark(config(tmp_path, toy_root, "benchtest:mean"), executor=resumed, console=quiet())
    assert resumed.seen == ["benchtest:mean on toy/beta"]
    assert len(json.loads((tmp_path / "results.json").read_text())["runs"]) == 2

    # different params are a different run; --force reruns everything
    changed = RecordingExecutor()
    run_benchmark(config(tmp_path, toy_root, ("benchtest:mean", {"sigma": 2.0})), executor=changed, console=quiet())
    assert len(changed.seen) == 2
    forced = RecordingExecutor()
    run_benchmark(config(tmp_path, toy_root, "benchtest:mean", force=True), executor=forced, console=quiet())
    assert len(forced.seen) == 2


def test_a_detector_failing_on_one_category_is_recorded_and_the_run_goes_on(fake_plugin, toy_root, tmp_path):
    cfg = config(tmp_path, toy_root, "benchtest:mean", ("benchtest:fragile", {"fail_height": 32}))
    outcome = run_benchmark(cfg, console=quiet())
    runs = {(r["detector"], r["category"]): r for r in json.loads((tmp_path / "results.json").read_text())["runs"]}
    assert len(runs) == 4 and outcome.n_errors == 1
    failed = runs[("benchtest:fragile", "beta")]
    assert failed["status"] == "error"
    assert failed["error"] == "fit: RuntimeError: boom: cannot handle height 32"
    assert all(v is None for v in failed["metrics"].values()) and failed["timing"]["fit_s"] is None
    assert failed["n_train"] == 6 and failed["peak_rss_mb"] > 0
    assert runs[("benchtest:fragile", "alpha")]["status"] == "ok"
    assert runs[("benchtest:mean", "beta")]["status"] == "ok"
    assert "## Errors" in (tmp_path / "summary.md").read_text()
    assert "boom: cannot handle height 32" in (tmp_path / "report.html").read_text()
    record = json.loads(next((tmp_path / "jobs").glob("benchtest-fragile__toy__beta*.json")).read_text())
    assert "Traceback" in record["extra"]["traceback"]

    # errors are not "finished": a rerun retries them (and only them)
    retry = RecordingExecutor()
    run_benchmark(cfg, executor=retry, console=quiet())
    assert retry.seen == ["benchtest:fragile on toy/beta"]


@pytest.mark.parametrize("mode, expected", [  # found at calibration, when the held-out image is scored
    ("shape", "contract violation: benchtest:bad returned anomaly maps of shape (1, 12, 12); expected (1, 24, 24)"),
    ("nan", "contract violation: benchtest:bad returned image scores with 1 non-finite value(s)"),
    ("count", "contract violation: benchtest:bad returned image scores of length 0; expected 1 scores"),
])
def test_contract_violations_are_reported_by_name(fake_plugin, toy_root, tmp_path, mode, expected):
    cfg = config(tmp_path, toy_root, ("benchtest:bad", {"mode": mode}))
    cfg.datasets[0].categories = ["alpha"]
    run_benchmark(cfg, console=quiet())
    (run,) = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert run["status"] == "error"
    assert run["error"].startswith("fit: " + expected)


def test_pixel_metrics_are_null_without_maps(fake_plugin, toy_root, tmp_path):
    cfg = config(tmp_path, toy_root, "benchtest:nomaps")
    cfg.datasets[0].categories = ["alpha"]
    run_benchmark(cfg, console=quiet())
    (run,) = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert run["status"] == "ok"
    assert run["metrics"]["image_auroc"] is not None
    assert all(run["metrics"][k] is None for k in ("pixel_auroc", "pixel_ap", "pixel_f1_max", "aupro"))
    assert not (tmp_path / "overlays").exists() or not list((tmp_path / "overlays").rglob("*.jpg"))
    assert run["pipeline"]["pixel_threshold"] is None and run["pipeline"]["postprocess"] == []
    deployed = run["deployed"]
    assert deployed["image_threshold"] is not None and deployed["image_fpr"] is not None
    assert all(deployed[k] is None for k in DEPLOYED_KEYS if k.startswith("pixel_"))


def test_image_size_resizes_images_and_masks(fake_plugin, toy_root, tmp_path):
    cfg = config(tmp_path, toy_root, "benchtest:mean", image_size=16)
    run_benchmark(cfg, console=quiet())
    runs = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert all(r["status"] == "ok" and r["metrics"]["aupro"] is not None for r in runs)
    assert len({j.key for j in expand_jobs(cfg)} & {j.key for j in expand_jobs(config(tmp_path, toy_root,
                                                                                      "benchtest:mean"))}) == 0


def _metrics(out):
    return [(r["detector"], r["category"], r["status"], r["metrics"], r["params"])
            for r in json.loads((out / "results.json").read_text())["runs"]]


def test_parallel_jobs_give_the_same_results_as_serial(fake_plugin, toy_root, tmp_path):
    detectors = ("benchtest:mean", ("benchtest:fragile", {"fail_height": 32}))
    run_benchmark(config(tmp_path / "serial", toy_root, *detectors), console=quiet())
    outcome = run_benchmark(config(tmp_path / "parallel", toy_root, *detectors, jobs=2), console=quiet())
    assert _metrics(tmp_path / "serial") == _metrics(tmp_path / "parallel")
    pids = {r["extra"]["pid"] for r in outcome.records}
    assert len(pids) == 2 and __import__("os").getpid() not in pids  # really in two worker processes


def test_a_worker_that_dies_fails_only_its_own_job(fake_plugin, toy_root, tmp_path):
    cfg = config(tmp_path, toy_root, "benchtest:mean", ("benchtest:fragile", {"fail_height": 32, "how": "exit"}),
                 jobs=2)
    outcome = run_benchmark(cfg, console=quiet())
    status = {(r["detector"], r["category"]): (r["status"], r["error"]) for r in outcome.runs}
    assert status[("benchtest:fragile", "beta")] == (
        "error", "worker process died while running this job: exited with status 3")
    assert [s for k, (s, _) in status.items() if k != ("benchtest:fragile", "beta")] == ["ok"] * 3
