"""``pyimgano benchmark``, ``fit`` and ``predict`` from the command line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pyimgano.cli import main
from pyimgano_testutils import run_cli


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("columns", [80, 200])
def test_benchmark_command_prints_the_table_and_the_report_path(cli_plugin_site, cli_toy_root, tmp_path, columns):
    out = tmp_path / "a-long-folder-name-so-that-the-path-of-the-report-is-wider-than-eighty-columns" / "bench"
    result = run_cli("benchmark", "--detector", "benchtest:mean", "--set", "sigma=0", "--dataset", "toy",
                     "--root", str(cli_toy_root), "--category", "alpha", "--out", str(out),
                     pythonpath=[cli_plugin_site], env={"COLUMNS": str(columns)})
    assert result.returncode == 0, result.stderr
    assert "pyimgano benchmark: toy" in result.stdout and "AUPRO" in result.stdout and "peak" in result.stdout
    # paths are never broken across lines, whatever the width (the terminal wraps them)
    assert f"report:  {out.resolve() / 'report.html'}" in result.stdout.splitlines()
    assert f"pyimgano benchmark: 1 run(s) into {out.resolve()}" in result.stdout.splitlines()
    table_lines = [line for line in result.stdout.splitlines() if not line.startswith(("results:", "report:",
                                                                                       "pyimgano benchmark: 1"))]
    assert all(len(line) <= columns for line in table_lines), result.stdout
    (run,) = json.loads((out / "results.json").read_text())["runs"]
    assert run["params"] == {"sigma": 0, "seed": 0} and run["category"] == "alpha"


def test_set_applies_per_detector_or_to_every_detector_that_has_the_parameter(cli_plugin, cli_toy_root, tmp_path):
    rc = main(["benchmark", "--detector", "benchtest:mean", "--detector", "benchtest:fragile",
               "--set", "sigma=0.5", "--set", "fragile.fail_height=24", "--dataset", "toy",
               "--root", str(cli_toy_root), "--category", "alpha", "--out", str(tmp_path), "--no-progress"])
    assert rc == 1  # fragile fails on alpha (24 px): the run goes on, the exit status says so
    runs = {r["detector"]: r for r in json.loads((tmp_path / "results.json").read_text())["runs"]}
    assert runs["benchtest:mean"]["params"]["sigma"] == 0.5
    assert runs["benchtest:fragile"]["params"] == {"fail_height": 24, "how": "raise"}
    assert runs["benchtest:fragile"]["status"] == "error"


@pytest.mark.parametrize("args, message", [
    (["--set", "nothing=1"], "no detector of this benchmark has a parameter 'nothing'"),
    (["--set", "other.sigma=1"], "no detector 'other' in this benchmark"),
    (["--set", "sigma=-1"], "invalid parameters for detector benchtest:mean"),
    (["--set", "sigma"], "expected key=value"),
    (["--jobs", "0"], "invalid benchmark settings"),
])
def test_bad_benchmark_arguments_are_clear_errors(cli_plugin, cli_toy_root, tmp_path, capsys, args, message):
    rc = main(["benchmark", "--detector", "benchtest:mean", "--dataset", "toy", "--root", str(cli_toy_root),
               "--out", str(tmp_path), *args])
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "results.json").exists()


def test_metric_flags_and_config_files_choose_the_metrics(cli_plugin, cli_toy_root, tmp_path, capsys):
    common = ["benchmark", "--detector", "benchtest:mean", "--dataset", "toy", "--root", str(cli_toy_root),
              "--category", "alpha", "--no-progress"]
    assert main([*common, "--metric", "aupro", "--metric", "image_auroc", "--out", str(tmp_path / "flags")]) == 0
    (run,) = json.loads((tmp_path / "flags" / "results.json").read_text())["runs"]
    assert list(run["metrics"]) == ["aupro", "image_auroc"]

    config = tmp_path / "bench.json"
    config.write_text(json.dumps({"metrics": ["pixel_ap"], "out": "json-out"}))
    assert main([*common, "--config", str(config)]) == 0
    (run,) = json.loads((tmp_path / "json-out" / "results.json").read_text())["runs"]
    assert list(run["metrics"]) == ["pixel_ap"]

    capsys.readouterr()
    assert main([*common, "--metric", "auroc", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown metric 'auroc'; known metrics: image_auroc, image_ap, ") and "aupro" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "bad" / "results.json").exists()


def test_config_file_grid_with_per_detector_params(cli_plugin, cli_toy_root, tmp_path):
    config = tmp_path / "bench.toml"
    config.write_text(f"""
seed = 3
out = "grid"
overlays = 1

[[detectors]]
name = "benchtest:mean"
params = {{ sigma = 0.0 }}

[[detectors]]
name = "nomaps"

[[datasets]]
name = "toy"
root = "{cli_toy_root}"
categories = ["beta"]
""")
    assert main(["benchmark", "--config", str(config), "--no-progress"]) == 0
    out = tmp_path / "grid"  # relative paths in the file are relative to the file
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [(r["detector"], r["category"], r["params"]) for r in runs] == [
        ("benchtest:mean", "beta", {"sigma": 0.0, "seed": 3}), ("benchtest:nomaps", "beta", {})]
    assert len(list((out / "overlays").rglob("*.png"))) == 1
    assert json.loads((out / "config.json").read_text())["seed"] == 3


def test_fit_predict_round_trip_gives_the_benchmark_scores(cli_plugin, cli_toy_root, tmp_path, capsys):
    category = cli_toy_root / "alpha"
    assert main(["benchmark", "--detector", "benchtest:mean", "--dataset", "toy", "--root", str(cli_toy_root),
                 "--category", "alpha", "--out", str(tmp_path / "bench"), "--no-progress"]) == 0
    (scores_file,) = (tmp_path / "bench" / "scores").glob("*.csv")
    bench = {Path(r["image"]).resolve(): float(r["score"]) for r in read_csv(scores_file)}

    model = tmp_path / "model"
    assert main(["fit", "--detector", "benchtest:mean", "--train", str(category / "train" / "good"),
                 "--holdout", "0", "--out", str(model)]) == 0
    saved = json.loads((model / "pyimgano-model.json").read_text())
    assert saved["detector"] == "benchtest:mean" and saved["plugin_version"] == "0.3.0"
    assert saved["params"] == {"sigma": 1.0, "seed": 0} and saved["threshold"] is None
    assert not list(model.glob("*.pkl"))

    pred = tmp_path / "pred"
    assert main(["predict", "--model", str(model), str(category / "test"), "--out", str(pred)]) == 0
    rows = read_csv(pred / "predictions.csv")
    assert {Path(r["image"]) for r in rows} == set(bench)
    for row in rows:
        assert float(row["score"]) == pytest.approx(bench[Path(row["image"])], rel=1e-9, abs=1e-12)
        assert row["label"] == ""  # no threshold in this model
        assert (pred / row["heatmap"]).is_file()
    assert "labels left empty" in capsys.readouterr().out
    assert not (pred / ".maps-tmp").exists() and not (pred / "maps").exists()


def test_fit_with_calibration_sets_a_threshold_and_predict_writes_labels_and_masks(cli_plugin, cli_toy_root,
                                                                                   tmp_path):
    category = cli_toy_root / "beta"
    model = tmp_path / "model"
    assert main(["fit", "--detector", "benchtest:mean", "--set", "sigma=0",
                 "--train", str(category / "train" / "good" / "*.png"),
                 "--calibrate", str(category / "test" / "good"), "--quantile", "1.0", "--out", str(model)]) == 0
    training = json.loads((model / "training.json").read_text())
    assert training["n_train"] == 6 and len(training["calibration"]) == 3
    threshold = json.loads((model / "pyimgano-model.json").read_text())["threshold"]
    assert threshold > 0

    pred = tmp_path / "pred"
    assert main(["predict", "--model", str(model), str(category / "test"), "--out", str(pred), "--save-maps"]) == 0
    rows = read_csv(pred / "predictions.csv")
    assert len(rows) == 7
    for row in rows:
        assert row["label"] == str(int(float(row["score"]) > threshold))
        mask = np.asarray(Image.open(pred / row["mask"]))
        assert mask.shape == (32, 32) and set(np.unique(mask)) <= {0, 255}
        assert (mask.any()) == (row["label"] == "1")  # score = map maximum, pixel threshold = image threshold
    assert all(r["label"] == "1" for r in rows if "/spot/" in r["image"])  # bright squares are found
    saved = sorted((pred / "maps").glob("*.npy"))
    assert len(saved) == 7 and np.load(saved[0]).shape == (32, 32)
    assert not (pred / ".maps-tmp").exists()


def test_fit_holds_out_training_images_for_the_threshold_by_default(cli_plugin, cli_toy_root, tmp_path):
    model = tmp_path / "model"
    assert main(["fit", "--detector", "benchtest:mean", "--train", str(cli_toy_root / "alpha" / "train"),
                 "--out", str(model)]) == 0
    training = json.loads((model / "training.json").read_text())
    assert training["n_train"] == 5 and len(training["calibration"]) == 1
    assert "holdout" in training["threshold_from"] and training["threshold"] is not None


def _fitted_model(root: Path, out: Path) -> Path:
    assert main(["fit", "--detector", "benchtest:mean", "--train", str(root / "alpha" / "train"),
                 "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("damage, message", [
    ("truncate_state", "unreadable model state"),
    ("garbage_config", "corrupt model config"),
    ("no_config", "not a saved pyimgano model"),
    ("missing_plugin", "of plugin 'gone' (version 0.3.0), which is not installed"),
    ("incompatible_version", "saved with benchtest 0.9.0, incompatible with the installed 0.3.0"),
])
def test_a_damaged_model_dir_is_a_clear_error(cli_plugin, cli_toy_root, tmp_path, capsys, damage, message):
    model = _fitted_model(cli_toy_root, tmp_path / "model")
    config_path = model / "pyimgano-model.json"
    config = json.loads(config_path.read_text())
    if damage == "truncate_state":
        data = (model / "state.npz").read_bytes()
        (model / "state.npz").write_bytes(data[: len(data) // 2])
    elif damage == "garbage_config":
        config_path.write_text("{not json")
    elif damage == "no_config":
        config_path.unlink()
    elif damage == "missing_plugin":
        config_path.write_text(json.dumps({**config, "detector": "gone:mean", "plugin": "gone"}))
    else:
        config_path.write_text(json.dumps({**config, "plugin_version": "0.9.0"}))
    capsys.readouterr()
    rc = main(["predict", "--model", str(model), str(cli_toy_root / "alpha" / "test"), "--out", str(tmp_path / "p")])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err


def test_predict_names_a_missing_image(cli_plugin, cli_toy_root, tmp_path, capsys):
    model = _fitted_model(cli_toy_root, tmp_path / "model")
    rc = main(["predict", "--model", str(model), str(tmp_path / "nope.png"), "--out", str(tmp_path / "p")])
    assert rc == 2 and f"{tmp_path / 'nope.png'}: no such file or folder" in capsys.readouterr().err


def test_an_interrupted_benchmark_keeps_finished_runs_and_a_rerun_goes_on(cli_plugin_site, cli_toy_root, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "bench"
    args = [sys.executable, "-m", "pyimgano", "benchmark", "--detector", "benchtest:sleepy", "--set", "sleep_s=60",
            "--dataset", "toy", "--root", str(cli_toy_root), "--out", str(out), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(cli_plugin_site), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (out / "results.json").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (out / "results.json").exists(), "the first run never finished"
        process.send_signal(signal.SIGINT)  # Ctrl-C while beta's fit sleeps
        stdout, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert "finished runs are saved" in stdout
    (run,) = json.loads((out / "results.json").read_text())["runs"]
    assert (run["category"], run["status"]) == ("alpha", "ok")

    rerun = run_cli("benchmark", "--detector", "benchtest:sleepy", "--set", "sleep_s=60", "--dataset", "toy",
                    "--root", str(cli_toy_root), "--out", str(out), "--category", "alpha", pythonpath=[cli_plugin_site],
                    env={"COLUMNS": "80"})  # the line names a long path: it must not break at any width
    assert rerun.returncode == 0 and "1 already finished there (skipped" in rerun.stdout
