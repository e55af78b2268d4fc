"""``pyimgano benchmark``, ``fit`` and ``predict`` from the command line."""

from __future__ import annotations

import csv
import json
import re
import shutil
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
    assert len(list((out / "overlays").rglob("*.jpg"))) == 1
    assert json.loads((out / "config.json").read_text())["seed"] == 3


def test_fit_predict_round_trip_gives_the_benchmark_scores(cli_plugin, cli_toy_root, tmp_path, capsys):
    category = cli_toy_root / "alpha"
    assert main(["benchmark", "--detector", "benchtest:mean", "--dataset", "toy", "--root", str(cli_toy_root),
                 "--category", "alpha", "--out", str(tmp_path / "bench"), "--no-progress"]) == 0
    (scores_file,) = (tmp_path / "bench" / "scores").glob("*.csv")
    bench = {Path(r["image"]).resolve(): r for r in read_csv(scores_file)}
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "bench" / "jobs").glob("*.json")]

    model = tmp_path / "model"
    assert main(["fit", "--detector", "benchtest:mean", "--train", str(category / "train" / "good"),
                 "--out", str(model)]) == 0
    saved = json.loads((model / "pyimgano-model.json").read_text())
    assert saved["detector"] == "benchtest:mean" and saved["plugin_version"] == "0.3.0"
    assert saved["params"] == {"sigma": 1.0, "seed": 0}
    pipeline = json.loads((model / "pyimgano-pipeline.json").read_text())
    assert saved["threshold"] == pipeline["image_threshold"]["value"]
    # the same seeded split, the same detector: the benchmark's fitted pipeline, bit for bit
    assert pipeline == record["extra"]["pipeline"]
    assert not list(model.glob("*.pkl"))

    pred = tmp_path / "pred"
    assert main(["predict", "--model", str(model), str(category / "test"), "--out", str(pred)]) == 0
    rows = read_csv(pred / "predictions.csv")
    assert {Path(r["image"]) for r in rows} == set(bench)
    for row in rows:
        assert float(row["score"]) == pytest.approx(float(bench[Path(row["image"])]["score"]), rel=1e-9, abs=1e-12)
        assert row["label"] == bench[Path(row["image"])]["predicted"]
        assert (pred / row["heatmap"]).is_file() and (pred / row["mask"]).is_file()
    assert "7 image(s) scored" in capsys.readouterr().out
    assert not (pred / "maps").exists()


def test_fit_flags_choose_postprocessing_thresholds_and_validation(cli_plugin, cli_toy_root, tmp_path):
    category = cli_toy_root / "beta"
    model = tmp_path / "model"
    steps = [{"name": "gaussian", "sigma": 1}, {"name": "minmax"}]
    config = tmp_path / "post.json"
    config.write_text(json.dumps(steps))
    assert main(["fit", "--detector", "benchtest:mean", "--set", "sigma=0",
                 "--train", str(category / "train" / "good" / "*.png"), "--val", str(category / "test" / "good"),
                 "--postprocess", str(config), "--image-threshold", "quantile:1.0",
                 "--pixel-threshold", "quantile:0.99", "--out", str(model)]) == 0
    training = json.loads((model / "training.json").read_text())
    assert training["n_train"] == 6 and training["n_val"] == 3 and len(training["val"]) == 3
    pipeline = json.loads((model / "pyimgano-pipeline.json").read_text())
    assert [s["name"] for s in pipeline["postprocess"]] == ["gaussian", "minmax"]
    assert set(pipeline["postprocess"][1]["state"]) == {"offset", "scale"}
    assert pipeline["image_threshold"]["strategy"] == "quantile" and pipeline["image_threshold"]["q"] == 1.0
    assert pipeline["pixel_threshold"]["q"] == 0.99 and pipeline["n_val"] == 3

    held = tmp_path / "held"
    assert main(["fit", "--detector", "benchtest:mean", "--train", str(category / "train"), "--val-fraction", "0.5",
                 "--seed", "3", "--postprocess", "none", "--image-threshold", "fixed:0.5", "--out", str(held)]) == 0
    training = json.loads((held / "training.json").read_text())
    assert (training["n_train"], training["n_val"], training["seed"]) == (3, 3, 3)
    assert not set(training["train"]) & set(training["val"])
    pipeline = json.loads((held / "pyimgano-pipeline.json").read_text())
    assert pipeline["postprocess"] == [] and pipeline["image_threshold"] == {"strategy": "fixed", "value": 0.5}


def test_predict_writes_masks_regions_and_json(cli_plugin, cli_toy_root, tmp_path):
    category = cli_toy_root / "beta"
    model = tmp_path / "model"
    assert main(["fit", "--detector", "benchtest:mean", "--set", "sigma=0", "--train", str(category / "train"),
                 "--val", str(category / "test" / "good"), "--image-threshold", "quantile:1.0",
                 "--pixel-threshold", "quantile:1.0", "--out", str(model)]) == 0
    pipeline = json.loads((model / "pyimgano-pipeline.json").read_text())
    image_threshold, pixel_threshold = pipeline["image_threshold"]["value"], pipeline["pixel_threshold"]["value"]
    pred = tmp_path / "pred"
    assert main(["predict", "--model", str(model), str(category / "test"), "--out", str(pred), "--save-maps",
                 "--save-json"]) == 0
    rows = read_csv(pred / "predictions.csv")
    document = json.loads((pred / "predictions.json").read_text())
    assert document["pixel_threshold"] == pixel_threshold and len(document["images"]) == len(rows) == 7
    by_image = {item["image"]: item for item in document["images"]}
    for row in rows:
        assert row["label"] == str(int(float(row["score"]) > image_threshold))
        mask = np.asarray(Image.open(pred / row["mask"])) > 0
        amap = np.load(pred / row["map"])
        assert mask.shape == amap.shape == (32, 32)
        np.testing.assert_array_equal(mask, amap > pixel_threshold)  # the post-processed map at the pixel threshold
        regions = by_image[row["image"]]["regions"]
        assert int(row["n_regions"]) == len(regions) and sum(r["area"] for r in regions) == mask.sum()
        assert float(row["anomalous_fraction"]) == pytest.approx(mask.mean(), abs=1e-6)
        if regions:
            x, y, w, h = regions[0]["bbox"]
            assert [row["largest_x"], row["largest_y"], row["largest_width"], row["largest_height"]] == [
                str(x), str(y), str(w), str(h)]
            assert int(row["largest_area"]) == regions[0]["area"] == max(r["area"] for r in regions)
            assert mask[y : y + h, x : x + w].sum() >= regions[0]["area"]
            assert regions[0]["peak"] == pytest.approx(float(amap[y : y + h, x : x + w].max()))
        else:
            assert row["largest_area"] == ""
    assert all(r["label"] == "1" and int(r["n_regions"]) >= 1 for r in rows if "/spot/" in r["image"])


def test_predict_output_names_are_unique_and_any_file_name_flows_through(cli_plugin, cli_toy_root, tmp_path):
    import os
    import shutil

    model = tmp_path / "model"
    assert main(["fit", "--detector", "benchtest:mean", "--train", str(cli_toy_root / "alpha" / "train"),
                 "--out", str(model)]) == 0
    images = tmp_path / "images"
    images.mkdir()
    source = next((cli_toy_root / "alpha" / "test" / "spot").glob("*.png"))
    odd = [b"a b.png", b"a-b.png", b"A-B.png", b"caf\xe9.png", "日本.png".encode(), b"x.PNG"]
    for name in odd:
        shutil.copy(source, os.path.join(os.fsencode(images), name))
    pred = tmp_path / "pred"
    assert main(["predict", "--model", str(model), str(images), "--out", str(pred), "--save-json"]) == 0
    raw = (pred / "predictions.csv").read_bytes()
    for name in odd:
        assert name in raw  # the file name's own bytes, UTF-8 or not
    rows = read_csv_bytes(pred / "predictions.csv")
    heatmaps = [r["heatmap"] for r in rows]
    masks = [r["mask"] for r in rows]
    assert len(set(h.casefold() for h in heatmaps)) == len(rows) == len(odd)  # no two share an output
    assert all(re.fullmatch(r"heatmaps/[A-Za-z0-9._-]+\.png", h) for h in heatmaps)
    assert all((pred / h).is_file() for h in heatmaps) and all((pred / m).is_file() for m in masks)
    document = json.loads((pred / "predictions.json").read_text())
    assert {os.fsencode(item["image"]) for item in document["images"]} == {
        os.path.join(os.fsencode(images), n) for n in odd}


def read_csv_bytes(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("args, message", [
    (["--image-threshold", "quantile:2"], "image_threshold 'quantile:2': q: Input should be less than or equal to 1"),
    (["--image-threshold", "median"], "image_threshold 'median' does not parse; expected quantile:Q"),
    (["--pixel-threshold", "fixed:nan"], "pixel_threshold 'fixed:nan': value: must be a finite number"),
    (["--image-threshold", "fixed:inf"], "must be a finite number"),
    (["--postprocess", '[{"name": "blur"}]'], "post-processing step 0 (blur): no postprocessor named 'blur'"),
    (["--postprocess", '[{"name": "gaussian", "sigma": -1}]'], "sigma: Input should be greater than 0"),
    (["--postprocess", "{oops"], "postprocess '{oops': not a JSON list of steps"),
    (["--val-fraction", "1.5"], "val_fraction 1.5: Input should be less than 1"),
    (["--val-fraction", "0"], "val_fraction 0 leaves an empty validation split"),
    (["--val-fraction", "0.95"], "leaves 0 to fit benchtest:mean"),
    (["--image-threshold", "f1"], "image_threshold 'f1' needs labelled validation images"),
])
def test_bad_fit_arguments_fail_before_any_image_is_read(cli_plugin, cli_toy_root, tmp_path, capsys, monkeypatch,
                                                         args, message):
    import pyimgano.images

    def no_reading(*a, **k):
        raise AssertionError("an image was read")

    monkeypatch.setattr(pyimgano.images, "read_image", no_reading)
    rc = main(["fit", "--detector", "benchtest:mean", "--train", str(cli_toy_root / "alpha" / "train"),
               "--out", str(tmp_path / "model"), *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "model").exists()


def test_fit_refuses_an_out_that_is_a_file_or_a_folder_of_other_files(cli_plugin, cli_toy_root, tmp_path, capsys):
    train = str(cli_toy_root / "alpha" / "train")
    afile = tmp_path / "notes.txt"
    afile.write_text("keep me")
    assert main(["fit", "--detector", "benchtest:mean", "--train", train, "--out", str(afile)]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err and afile.read_text() == "keep me"
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"...")
    assert main(["fit", "--detector", "benchtest:mean", "--train", train, "--out", str(folder)]) == 2
    assert "refusing to replace it" in capsys.readouterr().err and (folder / "holiday.jpg").exists()
    model = tmp_path / "model"  # an earlier model folder is replaced whole
    assert main(["fit", "--detector", "benchtest:mean", "--train", train, "--out", str(model)]) == 0
    assert main(["fit", "--detector", "benchtest:mean", "--train", train, "--out", str(model)]) == 0
    capsys.readouterr()
    # ... but not when it holds anything the model did not write: the user's file, predictions written into it
    (model / "mine.txt").write_text("the user's")
    images = str(cli_toy_root / "alpha" / "test")
    assert main(["predict", "--model", str(model), images, "--out", str(model / "preds")]) == 0
    capsys.readouterr()
    assert main(["fit", "--detector", "benchtest:mean", "--train", train, "--out", str(model)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"error: {model}: a saved pyimgano model that also holds ") and "mine.txt" in err
    assert "replacing it would delete them: move them out or choose another folder" in err
    assert (model / "mine.txt").read_text() == "the user's" and (model / "preds" / "predictions.csv").is_file()
    (model / "mine.txt").unlink()
    shutil.rmtree(model / "preds")
    assert main(["fit", "--detector", "benchtest:mean", "--train", train, "--out", str(model)]) == 0
    # a model saved before folders recorded their contents: its own kinds of files only, no folders
    (model / ".pyimgano-contents.json").unlink()
    (model / "preds").mkdir()
    (model / "preds" / "a.png").write_bytes(b"x")
    assert main(["fit", "--detector", "benchtest:mean", "--train", train, "--out", str(model)]) == 2
    assert "preds/a.png" in capsys.readouterr().err


def test_predict_refuses_non_finite_thresholds_and_an_out_file(cli_plugin, cli_toy_root, tmp_path, capsys):
    model = _fitted_model(cli_toy_root, tmp_path / "model")
    images = str(cli_toy_root / "alpha" / "test")
    assert main(["predict", "--model", str(model), images, "--out", str(tmp_path / "p"),
                 "--image-threshold", "nan"]) == 2
    assert "--image-threshold nan: value: must be a finite number" in capsys.readouterr().err
    assert main(["predict", "--model", str(model), images, "--out", str(tmp_path / "p"),
                 "--pixel-threshold", "quantile:0.9"]) == 2
    assert "a saved pipeline applies a fixed threshold (V or fixed:V)" in capsys.readouterr().err
    afile = tmp_path / "out.txt"
    afile.write_text("x")
    assert main(["predict", "--model", str(model), images, "--out", str(afile)]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err


def test_a_model_folder_saved_before_pipelines_predicts_as_it_did(cli_plugin, cli_toy_root, tmp_path):
    from pyimgano.factories import create_detector

    category = cli_toy_root / "beta"
    detector = create_detector("benchtest:mean", sigma=0.0)
    detector.fit(sorted((category / "train" / "good").glob("*.png")))
    detector.calibrate(sorted((category / "test" / "good").glob("*.png")), strategy={"strategy": "quantile", "q": 1.0})
    model = detector.save(tmp_path / "legacy")
    assert not (model / "pyimgano-pipeline.json").exists()
    pred = tmp_path / "pred"
    assert main(["predict", "--model", str(model), str(category / "test"), "--out", str(pred), "--save-maps"]) == 0
    rows = read_csv(pred / "predictions.csv")
    assert len(rows) == 7
    for row in rows:
        assert row["label"] == str(int(float(row["score"]) > detector.threshold_))
        mask = np.asarray(Image.open(pred / row["mask"])) > 0
        np.testing.assert_array_equal(mask, np.load(pred / row["map"]) > detector.threshold_)  # raw maps
        assert mask.any() == (row["label"] == "1")  # score = map maximum, pixel threshold = image threshold
    assert all(r["label"] == "1" for r in rows if "/spot/" in r["image"])


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
        # results.json is the first file of a flush: the Ctrl-C lands while the report is drawn,
        # and the exit then writes the whole flush again (matplotlib imported anew, in seconds on
        # an idle machine, several times that on a loaded one); 120 s is a guard against a hang
        stdout, stderr = process.communicate(timeout=120)
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


def test_predict_on_large_images_draws_bounded_heatmaps_and_full_size_masks(cli_plugin, tmp_path, monkeypatch):
    import pyimgano.cli.predict as predict

    rng = np.random.default_rng(0)
    train = tmp_path / "train"
    train.mkdir()
    for i in range(4):
        Image.fromarray(rng.integers(90, 110, (1100, 1500, 3), dtype=np.uint8)).save(train / f"{i}.png")
    big = rng.integers(90, 110, (1100, 1500, 3), dtype=np.uint8)
    big[500:540, 700:760] = 250
    Image.fromarray(big).save(tmp_path / "big.png")
    model = tmp_path / "model"
    assert main(["fit", "--detector", "benchtest:mean", "--train", str(train), "--out", str(model)]) == 0
    monkeypatch.setattr(predict, "BATCH_PIXELS", 2_000_000)  # one 1.65 Mpixel image per batch
    assert predict.batches([tmp_path / "big.png", *sorted(train.glob("*.png"))]) == [[0], [1], [2], [3], [4]]
    pred = tmp_path / "pred"
    assert main(["predict", "--model", str(model), str(tmp_path / "big.png"), "--out", str(pred), "--save-json"]) == 0
    (row,) = read_csv(pred / "predictions.csv")
    with Image.open(pred / row["heatmap"]) as heatmap:
        assert max(heatmap.size) == predict.HEATMAP_MAX_SIDE and heatmap.size == (1024, 751)
    with Image.open(pred / row["mask"]) as mask:
        assert mask.size == (1500, 1100)
    (item,) = json.loads((pred / "predictions.json").read_text())["images"]
    x, y, w, h = item["regions"][0]["bbox"]
    assert x <= 700 and y <= 500 and x + w >= 760 and y + h >= 540  # the bright patch, in image pixels


def test_old_option_spellings_work_for_one_release_with_a_deprecation_line(cli_plugin, cli_toy_root, tmp_path, capsys):
    train = str(cli_toy_root / "alpha" / "train")
    model = tmp_path / "model"
    assert main(["fit", "--detector", "benchtest:mean", "--train", train, "--holdout", "0.5", "--threshold", "0.5",
                 "--out", str(model)]) == 0
    err = capsys.readouterr().err
    assert "warning: --holdout is deprecated and goes in the next release; use --val-fraction 0.5" in err
    assert "warning: --threshold is deprecated and goes in the next release; use --image-threshold fixed:0.5" in err
    pipeline = json.loads((model / "pyimgano-pipeline.json").read_text())
    assert pipeline["image_threshold"] == {"strategy": "fixed", "value": 0.5} and pipeline["val_fraction"] == 0.5
    assert main(["fit", "--detector", "benchtest:mean", "--train", train, "--quantile", "0.9",
                 "--image-threshold", "quantile:0.8", "--out", str(tmp_path / "m2")]) == 2
    assert "--quantile and --image-threshold both set image threshold; give --image-threshold only" in capsys.readouterr().err

    pred = tmp_path / "pred"  # predict: --threshold is --image-threshold; --json prints, and writes the file once more
    assert main(["predict", "--model", str(model), str(cli_toy_root / "alpha" / "test"), "--out", str(pred),
                 "--threshold", "1e9", "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["image_threshold"] == 1e9 and summary["n_anomalous"] == 0 and summary["n_images"] > 0
    assert "--threshold is deprecated" in captured.err and "use --save-json for the file" in captured.err
    assert (pred / "predictions.json").exists() and str(pred / "predictions.json") in summary["files"]


@pytest.mark.parametrize("chosen", [None, "ACTIVE"])
def test_the_command_lets_idle_openmp_threads_sleep_unless_the_user_chose(chosen, tmp_path):
    # torch's and faiss's OpenMP runtimes share the cores with OpenVINO: spinning idle threads
    # slow the next library down; the policy must be in the environment before torch loads,
    # and worker processes inherit it
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if chosen:
        env["OMP_WAIT_POLICY"] = chosen
    probe = ("import contextlib, os, sys; from pyimgano.cli import main\n"
             "with contextlib.suppress(SystemExit):\n    main(['--version'])\n"
             "print('torch' in sys.modules, os.environ.get('OMP_WAIT_POLICY'))")
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == f"False {chosen or 'PASSIVE'}"
