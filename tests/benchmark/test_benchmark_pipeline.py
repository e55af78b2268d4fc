"""The benchmark runs the inspection pipeline: settings, deployed figures, curves, pictures."""

from __future__ import annotations

import html
import io
import json

import numpy as np
import pytest
from benchtest import load_records
from rich.console import Console

from pyimgano.benchmark import figures
from pyimgano.benchmark.config import BenchmarkConfig, ConfigError, DatasetEntry, DetectorEntry, expand_jobs
from pyimgano.benchmark.deployed import deployed_metrics, pro_curve, roc_curve
from pyimgano.benchmark.results import ResultStore
from pyimgano.benchmark.runner import run_benchmark
from pyimgano.cli import main
from pyimgano.metrics import aupro
from pyimgano_testutils import optional


def quiet():
    return Console(file=io.StringIO(), width=200)


def grid(out, root, *entries, **kwargs):
    return BenchmarkConfig(detectors=list(entries), datasets=[DatasetEntry(name="toy", root=str(root),
                                                                           categories=["alpha"])],
                           out=str(out), **kwargs)


def test_deployed_figures_count_images_and_pixels():
    labels = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.6, 0.2, 0.9, 0.4])
    masks = [np.zeros((2, 2), bool), np.array([[1, 1], [0, 0]], bool)]
    maps = [np.array([[0.0, 0.8], [0.0, 0.0]]), np.array([[0.9, 0.1], [0.7, 0.0]])]
    got = deployed_metrics(labels, scores, 0.5, masks, maps, 0.5).model_dump()
    # images: flagged 0.6 (good) and 0.9 (defective): tp 1, fp 1, fn 1, 3 good images
    assert got["image_threshold"] == 0.5 and got["image_precision"] == 0.5 and got["image_recall"] == 0.5
    assert got["image_f1"] == 0.5 and got["image_fpr"] == pytest.approx(1 / 3)
    # pixels: flagged 0.8 (good), 0.9 (defect), 0.7 (good): tp 1, fp 2, fn 1
    assert got["pixel_precision"] == pytest.approx(1 / 3) and got["pixel_recall"] == 0.5
    assert got["pixel_f1"] == pytest.approx(2 / 5) and got["pixel_iou"] == pytest.approx(1 / 4)
    none = deployed_metrics(labels, scores, 0.5, None, maps, 0.5).model_dump()
    assert none["pixel_threshold"] is None and none["pixel_f1"] is None and none["image_f1"] == 0.5
    nothing_flagged = deployed_metrics(np.zeros(3), np.zeros(3), 1.0, None, None, None).model_dump()
    assert nothing_flagged["image_precision"] is None and nothing_flagged["image_fpr"] == 0.0


def test_curves_follow_the_metrics():
    rng = np.random.default_rng(0)
    masks = np.zeros((4, 32, 32), bool)
    masks[:, 8:16, 8:20] = True
    maps = rng.random((4, 32, 32)) + 0.8 * masks
    fpr, pro = pro_curve(list(masks), list(maps), 0.3)
    assert fpr[0] == pro[0] == 0 and max(fpr) <= 0.3 + 1e-9 and all(np.diff(pro) >= -1e-12)
    area = np.trapezoid(pro, fpr) / 0.3
    assert area == pytest.approx(aupro(masks, maps), abs=0.01)
    fpr, tpr = roc_curve(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert roc_curve(np.array([0, 0]), np.array([0.1, 0.2])) is None


def test_the_pro_curve_shares_the_metrics_split_and_sort(monkeypatch):
    # a category's test pixels are tens of millions: the metric stage splits and sorts them
    # once for the pixel metrics and the report's PRO curve, with the same curve as alone
    from pyimgano.benchmark.deployed import metrics_and_curves
    from pyimgano.benchmark.metric_set import resolve_metrics
    from pyimgano.metrics import _inputs

    rng = np.random.default_rng(1)
    masks = np.zeros((5, 24, 40), bool)
    masks[1:, 5:12, 9:30] = True
    maps = (rng.random((5, 24, 40)) + 0.7 * masks).astype(np.float32)
    alone = pro_curve(list(masks), list(maps), 0.3)
    splits = []
    original = _inputs.split_pixels
    monkeypatch.setattr(_inputs, "split_pixels", lambda *a: splits.append(1) or original(*a))
    labels = np.array([0, 1, 1, 1, 1])
    values, _, shared = metrics_and_curves(labels, maps.max((1, 2)), list(masks), list(maps), resolve_metrics(), [],
                                           0.3)
    assert len(splits) == 1 and values["aupro"] is not None
    assert shared["pro"] == alone


def test_entries_and_flags_choose_the_pipeline(fake_plugin, toy_root, tmp_path):
    steps = [{"name": "gaussian", "sigma": 2.0}]
    cfg = grid(tmp_path, toy_root, DetectorEntry(name="benchtest:mean", postprocess=steps),
               DetectorEntry(name="benchtest:mean", pixel_threshold="fixed:0.5", image_threshold="quantile:0.5"),
               DetectorEntry(name="benchtest:nomaps"), pixel_threshold="quantile:0.99", val_fraction=0.5)
    first, second, nomaps = expand_jobs(cfg)
    assert first.postprocess == [{"name": "gaussian", "sigma": 2.0, "truncate": 4.0}]
    assert first.pixel_threshold == {"strategy": "quantile", "q": 0.99} and first.val_fraction == 0.5
    assert second.postprocess == [] and second.pixel_threshold == {"strategy": "fixed", "value": 0.5}
    assert second.image_threshold == {"strategy": "quantile", "q": 0.5}
    assert nomaps.pixel_threshold is None and nomaps.postprocess == []  # the shared setting skips it
    outcome = run_benchmark(cfg, console=quiet())
    runs = outcome.runs
    assert [r["n_val"] for r in runs] == [3, 3, 3] and [r["n_train"] for r in runs] == [3, 3, 3]
    assert runs[1]["deployed"]["pixel_threshold"] == 0.5
    assert runs[2]["deployed"]["pixel_threshold"] is None and runs[2]["deployed"]["image_f1"] is not None
    # the same detector with two pipelines reads as two variants
    summary = (tmp_path / "summary.md").read_text()
    assert 'benchtest:mean (image_threshold="quantile:0.5", pixel_threshold="fixed:0.5", postprocess="none"' in summary
    assert 'postprocess="gaussian(sigma=2.0)"' in summary
    header = next(line for line in summary.splitlines() if line.startswith("| category"))
    assert "| AUPRO@0.3 | img F1@thr | img FPR@thr | px F1@thr | fit s |" in header
    records = load_records(tmp_path)
    raw = next(r for r in records if r["run"]["pipeline"]["postprocess"])  # the raw maps' metrics, on record
    assert set(raw["extra"]["raw_metrics"]) == {"pixel_auroc", "pixel_ap", "pixel_f1_max", "aupro"}
    assert raw["extra"]["postprocess_s"] > 0 and raw["extra"]["curves"]["pro"] is not None


@pytest.mark.parametrize("entry, message", [
    (DetectorEntry(name="benchtest:mean", postprocess=[{"name": "smooth"}]),
     "detector 'benchtest:mean': post-processing step 0 (smooth): no postprocessor named 'smooth'"),
    (DetectorEntry(name="benchtest:mean", pixel_threshold="f1"), "needs labelled anomalous validation images"),
    (DetectorEntry(name="benchtest:mean", image_threshold="q:3"), "image_threshold 'q:3' does not parse"),
    (DetectorEntry(name="benchtest:nomaps", pixel_threshold="quantile:0.9"), "gives no anomaly maps"),
    (DetectorEntry(name="benchtest:nomaps", postprocess=[{"name": "standardize"}]), "gives no anomaly maps"),
])
def test_bad_pipeline_settings_fail_before_anything_runs(fake_plugin, toy_root, tmp_path, entry, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        expand_jobs(grid(tmp_path, toy_root, entry))


def test_benchmark_flags_and_bench_toml(fake_plugin, toy_root, tmp_path, capsys):
    config = tmp_path / "bench.toml"
    config.write_text(f"""
val_fraction = 0.2
pixel_threshold = "quantile:0.95"

[[detectors]]
name = "benchtest:mean"
postprocess = [{{ name = "minmax" }}]
image_threshold = "fixed:0.3"

[[datasets]]
name = "toy"
root = "{toy_root}"
categories = ["alpha"]
""")
    assert main(["benchmark", "--config", str(config), "--out", str(tmp_path / "a"), "--no-progress"]) == 0
    (run,) = json.loads((tmp_path / "a" / "results.json").read_text())["runs"]
    assert run["pipeline"] == {"postprocess": [{"name": "minmax", "per_image": False, "clip": False}],
                               "image_threshold": "fixed:0.3", "pixel_threshold": "quantile:0.95",
                               "val_fraction": 0.2, "calibration": "auto"}
    assert run["deployed"]["image_threshold"] == 0.3 and run["n_val"] == 1
    # flags decide for every detector, over the file's entries
    assert main(["benchmark", "--config", str(config), "--out", str(tmp_path / "b"), "--no-progress",
                 "--postprocess", "none", "--pixel-threshold", "none", "--image-threshold", "quantile:1",
                 "--val-fraction", "0.5", "--calibration", "holdout"]) == 0
    (run,) = json.loads((tmp_path / "b" / "results.json").read_text())["runs"]
    assert run["pipeline"] == {"postprocess": [], "image_threshold": "quantile:1.0", "pixel_threshold": None,
                               "val_fraction": 0.5, "calibration": "holdout"}
    assert run["deployed"]["pixel_f1"] is None and run["n_val"] == 3
    capsys.readouterr()
    assert main(["benchmark", "--config", str(config), "--out", str(tmp_path / "c"), "--no-progress",
                 "--postprocess", '[{"name": "gaussian", "sigma": "wide"}]']) == 2
    err = capsys.readouterr().err
    assert "sigma: Input should be a valid number" in err and len(err.strip().splitlines()) == 1


def test_report_pictures_and_the_line_without_matplotlib(fake_plugin, toy_root, tmp_path, monkeypatch):
    optional("matplotlib")
    cfg = grid(tmp_path, toy_root, DetectorEntry(name="benchtest:mean"),
               DetectorEntry(name="benchtest:mean", params={"sigma": 0.0}))
    outcome = run_benchmark(cfg, console=quiet())
    (picture,) = (tmp_path / "figures").glob("toy__alpha__*.png")
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (tmp_path / "report.html").read_text()
    assert report.count("data:image/png;base64,") == 1 and "image ROC curves and the PRO curves" in report
    assert figures.MISSING not in report
    store, records = ResultStore(tmp_path), outcome.records
    from pyimgano.benchmark.runner import write_outputs

    write_outputs(store, records)  # a rewrite reuses the picture
    assert list((tmp_path / "figures").glob("*.png")) == [picture]
    monkeypatch.setattr(figures, "matplotlib_available", lambda: False)
    write_outputs(store, records)
    report = (tmp_path / "report.html").read_text()
    assert html.escape(figures.MISSING) in report and "data:image/png;base64," not in report
    assert report.count("data:image/jpeg;base64,") == 8  # the overlays are still there


def test_result_folders_from_before_the_pipeline_still_read(fake_plugin, toy_root, tmp_path):
    from pyimgano.benchmark import tables

    cfg = grid(tmp_path, toy_root, DetectorEntry(name="benchtest:mean"))
    outcome = run_benchmark(cfg, console=quiet())
    (job,) = expand_jobs(cfg)
    path = ResultStore(tmp_path).record_path(job)
    record = json.loads(path.read_text())
    for key in ("pipeline", "deployed", "n_val"):
        del record["run"][key]
    path.write_text(json.dumps(record))
    loaded = ResultStore(tmp_path).load_record(job)
    assert loaded["run"]["deployed"] is None and loaded["run"]["n_val"] is None
    header, rows = tables.table_rows([loaded["run"]])
    assert "img F1@thr" not in header  # no deployed figures: no columns for them
    assert tables.results_csv([loaded["run"], outcome.runs[0]])  # old and new runs side by side


@pytest.mark.parametrize("change, problem", [
    (lambda run: run.update(n_train=-1), "run.n_train: Input should be greater than or equal to 0"),
    (lambda run: run["timing"].update(fit_s=-5.0), "run.timing.fit_s: Input should be greater than or equal to 0"),
    (lambda run: run.update(status="maybe"), "run.status: Input should be 'ok' or 'error'"),
])
def test_a_job_record_out_of_bounds_is_one_line_naming_file_and_field(fake_plugin, toy_root, tmp_path, change,
                                                                        problem):
    from pyimgano.errors import SavedFileError

    cfg = grid(tmp_path, toy_root, DetectorEntry(name="benchtest:mean"))
    run_benchmark(cfg, console=quiet())
    (job,) = expand_jobs(cfg)
    path = ResultStore(tmp_path).record_path(job)
    record = json.loads(path.read_text())
    change(record["run"])
    path.write_text(json.dumps(record))
    with pytest.raises(SavedFileError, match=f"^{path}: invalid job record: {problem}.*delete the file") as info:
        run_benchmark(cfg, console=quiet())  # the rerun reads the record back before anything runs
    assert "\n" not in str(info.value)


def test_an_oversized_job_record_is_refused_before_it_is_read(fake_plugin, toy_root, tmp_path):
    from pyimgano.benchmark.results import MAX_RECORD_BYTES
    from pyimgano.errors import SavedFileError

    cfg = grid(tmp_path, toy_root, DetectorEntry(name="benchtest:mean"))
    run_benchmark(cfg, console=quiet())
    (job,) = expand_jobs(cfg)
    with open(ResultStore(tmp_path).record_path(job), "r+b") as handle:
        handle.truncate(MAX_RECORD_BYTES + 1)
    with pytest.raises(SavedFileError, match="far more than a job record holds"):
        ResultStore(tmp_path).load_record(job)
