"""benchmark --few-shot: the shots never reach the evaluation, and the zero-shot and few-shot
figures of a run are computed on the same images."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from benchtest import RecordingExecutor, load_records
from rich.console import Console

from pyimgano.benchmark.config import BenchmarkConfig, ConfigError, DatasetEntry, DetectorEntry, expand_jobs
from pyimgano.benchmark.deployed import image_figures
from pyimgano.benchmark.results import ResultsFile
from pyimgano.benchmark.runner import run_benchmark
from pyimgano.cli import main
from pyimgano.metrics import image_auroc


def quiet():
    return Console(file=io.StringIO(), width=200)


def grid(out, root, detector="benchtest:mean", dataset="toy", **kwargs):
    return BenchmarkConfig(detectors=[DetectorEntry(name=detector)],
                           datasets=[DatasetEntry(name=dataset, root=str(root), categories=kwargs.pop("categories",
                                                                                                      ["alpha"]))],
                           out=str(out), val_fraction=0.2, flush_interval=0, **kwargs)


def scores_file(out: Path, record: dict) -> list[dict]:
    return list(csv.DictReader((out / record["scores_file"]).open()))


def test_shots_never_reach_the_evaluation_and_both_pipelines_score_the_same_images(plugin, kinds_root, tmp_path):
    outcome = run_benchmark(grid(tmp_path, kinds_root, few_shot=[0, 1, 3], seeds=[0, 1, 2],
                                 categories=["alpha", "beta"]), console=quiet())
    assert outcome.n_errors == 0
    records = load_records(tmp_path)
    assert len(records) == 18
    shots_of = {}
    for record in records:
        run, category = record["run"], record["run"]["category"]
        test_dir = kinds_root / category / "test"
        every = sorted(str(p) for p in test_dir.glob("*/*.png"))
        rows = scores_file(tmp_path, record)
        scored = sorted(r["image"] for r in rows)
        k = run["few_shot"]["k"]
        shots = run["few_shot"]["shots"]
        assert len(shots) == k and not set(shots) & set(scored)  # a shot is never scored for evaluation
        assert scored == sorted(set(every) - set(shots)) and run["n_test"] == len(every) - k
        shots_of[(category, run["seed"], k)] = shots
        if not k:
            assert run["few_shot"] == {"k": 0, "shots": [], "tuned": {}, "objective": None, "image_only": None,
                                       "trained": None, "zero_shot": None, "notes": []}
            assert "zero_shot_score" not in rows[0]
            continue
        evaluated = record["extra"]["few_shot"]["evaluated"]
        assert evaluated["zero_shot"] == evaluated["few_shot"] == [r["image"] for r in rows]
        # both columns of the scores file are exactly what each pipeline's figures were computed from
        labels = np.array([int(r["label"]) for r in rows])
        for column, figures in (("zero_shot_score", run["few_shot"]["zero_shot"]), ("score", run)):
            scores = np.array([float(r[column]) for r in rows])
            assert figures["metrics"]["image_auroc"] == pytest.approx(image_auroc(labels, scores))
            threshold = figures["deployed"]["image_threshold"]
            assert figures["deployed"]["image_f1"] == pytest.approx(image_figures(labels, scores, threshold)["image_f1"])
        predicted = [int(r["predicted"]) for r in rows]
        assert predicted == [int(float(r["score"]) > run["few_shot"]["tuned"]["image_threshold"]) for r in rows]
        assert run["deployed"]["image_threshold"] == run["few_shot"]["tuned"]["image_threshold"]
        assert record["extra"]["few_shot"]["trials"]
        assert [s["image"] for s in record["extra"]["few_shot"]["shots"]] == shots
    for category in ("alpha", "beta"):
        for seed in (0, 1, 2):
            one, three = shots_of[(category, seed, 1)], shots_of[(category, seed, 3)]
            assert three[:1] == one  # the 3-shot draw holds the 1-shot image
            assert len({Path(s).parent.name for s in three[:2]}) == 2  # spread over spot and crack
        assert len({tuple(shots_of[(category, seed, 3)]) for seed in (0, 1, 2)}) > 1  # the seed changes the draw
    results = ResultsFile.model_validate_json((tmp_path / "results.json").read_text())
    assert [r.few_shot.k for r in results.runs][:3] == [0, 1, 3]
    summary = (tmp_path / "summary.md").read_text()
    assert "### Few-shot: toy" in summary and "| img F1@thr 0-shot | img F1@thr K-shot |" in summary
    assert "benchtest:mean (few_shot=3)" in summary
    report = (tmp_path / "report.html").read_text()
    assert "<h3>Few-shot: toy</h3>" in report and "img FPR@thr K-shot" in report


def test_tuning_never_depends_on_the_evaluated_images(plugin, kinds_root, tmp_path):
    """Drop good test images and change every defect that is not a shot: what was tuned stays bit-identical."""
    changed = tmp_path / "changed"
    shutil.copytree(kinds_root, changed)
    first = run_benchmark(grid(tmp_path / "a", kinds_root, few_shot=[2]), console=quiet())
    shots = {Path(s).name for s in first.runs[0]["few_shot"]["shots"]}
    for path in sorted((changed / "alpha" / "test" / "good").glob("*.png"))[1:]:
        path.unlink()
    from PIL import Image

    for path in (changed / "alpha" / "test").glob("[cs]*/*.png"):
        if path.name not in shots:
            image = np.asarray(Image.open(path)).copy()
            image[:4] = 0
            Image.fromarray(image).save(path)
    second = run_benchmark(grid(tmp_path / "b", changed, few_shot=[2]), console=quiet())
    a, b = first.runs[0]["few_shot"], second.runs[0]["few_shot"]
    assert [Path(s).name for s in a["shots"]] == [Path(s).name for s in b["shots"]]
    assert {k: v for k, v in a["tuned"].items() if k != "tuning_s"} == \
        {k: v for k, v in b["tuned"].items() if k != "tuning_s"}
    assert first.runs[0]["n_test"] != second.runs[0]["n_test"]


def test_adding_few_shot_to_a_finished_grid_runs_only_the_new_runs(plugin, kinds_root, tmp_path):
    run_benchmark(grid(tmp_path, kinds_root), console=quiet())
    executor = RecordingExecutor()
    outcome = run_benchmark(grid(tmp_path, kinds_root, few_shot=[0, 2]), console=quiet(), executor=executor)
    assert executor.seen == ["benchtest:mean on toy/alpha (2-shot)"]
    assert [r["few_shot"]["k"] for r in outcome.runs] == [0, 2]


def test_a_detector_that_learns_from_anomalies_is_trained_with_the_shots(plugin, kinds_root, tmp_path):
    outcome = run_benchmark(grid(tmp_path, kinds_root, "benchtest:learning", few_shot=[2]), console=quiet())
    (record,) = load_records(tmp_path)
    run = record["run"]
    assert run["status"] == "ok" and run["few_shot"]["trained"]
    only = record["extra"]["few_shot"]["calibration_only"]  # the same detector untrained, calibrated on the shots
    assert set(only) == {"metrics", "deployed", "tuned"}
    rows = scores_file(tmp_path, record)
    assert any(r["score"] != r["zero_shot_score"] for r in rows)  # another detector scored the few-shot column
    summary = (tmp_path / "summary.md").read_text()
    assert "benchtest:learning (trained)" in summary
    untrained = run_benchmark(grid(tmp_path / "off", kinds_root, "benchtest:learning", few_shot=[2],
                                   few_shot_training=False), console=quiet())
    assert not untrained.runs[0]["few_shot"]["trained"] and outcome.runs[0]["few_shot"]["shots"] == \
        untrained.runs[0]["few_shot"]["shots"]


def test_too_few_defects_no_defects_no_masks_no_maps(plugin, kinds_root, tmp_path):
    clean = tmp_path / "clean"
    shutil.copytree(kinds_root, clean)
    for folder in ("test", "ground_truth"):
        for kind in ("spot", "crack"):
            shutil.rmtree(clean / "beta" / folder / kind)
    outcome = run_benchmark(grid(tmp_path / "a", clean, few_shot=[0, 6], categories=["alpha", "beta"]),
                            console=quiet())
    by = {(r["category"], r["few_shot"]["k"]): r for r in outcome.runs}
    assert by[("alpha", 0)]["status"] == by[("beta", 0)]["status"] == "ok"  # nothing else is lost
    assert by[("alpha", 6)]["error"] == ("drawing the few-shot images: InvalidParams: few-shot 6: toy/alpha's test "
                                         "split has 6 defective image(s), and 6 shot(s) would leave 0 to evaluate; "
                                         "K must be at most 5")
    assert "few-shot 6: toy/beta's test split has no defective images to draw shots from" in by[("beta", 6)]["error"]
    unmasked = run_benchmark(grid(tmp_path / "b", kinds_root, dataset="toynomasks", few_shot=[2]), console=quiet())
    run = unmasked.runs[0]
    assert run["status"] == "ok" and run["few_shot"]["image_only"] and run["deployed"]["pixel_f1"] is None
    assert any("the shots have no defect masks: only the image threshold is tuned" in n for n in run["few_shot"]["notes"])
    nomaps = run_benchmark(grid(tmp_path / "c", kinds_root, "benchtest:nomaps", few_shot=[2]), console=quiet())
    assert nomaps.runs[0]["few_shot"]["image_only"] and nomaps.runs[0]["deployed"]["image_f1"] is not None
    assert "image threshold only" in (tmp_path / "c" / "summary.md").read_text()


def test_few_shot_flags_and_bench_toml(plugin, kinds_root, tmp_path, capsys):
    config = tmp_path / "bench.toml"
    config.write_text(f"""
few_shot = [0, 1]
few_shot_objective = "aupro"
few_shot_search = {{ sigma = [1.0], open_size = [], min_area = [] }}
val_fraction = 0.2

[[detectors]]
name = "benchtest:mean"

[[datasets]]
name = "toy"
root = "{kinds_root}"
categories = ["alpha"]
""")
    assert main(["benchmark", "--config", str(config), "--out", str(tmp_path / "a"), "--no-progress"]) == 0
    runs = json.loads((tmp_path / "a" / "results.json").read_text())["runs"]
    assert [r["few_shot"]["k"] for r in runs] == [0, 1] and runs[1]["few_shot"]["objective"] == "aupro"
    assert main(["benchmark", "--config", str(config), "--out", str(tmp_path / "b"), "--no-progress",
                 "--few-shot", "2", "--few-shot-objective", "pixel_f1"]) == 0
    runs = json.loads((tmp_path / "b" / "results.json").read_text())["runs"]
    assert [r["few_shot"]["k"] for r in runs] == [2] and runs[0]["few_shot"]["objective"] == "pixel_f1"
    capsys.readouterr()
    for flags, message in ((["--few-shot", "-1"], "few_shot.0: Input should be greater than or equal to 0"),
                           (["--few-shot", "1", "--few-shot", "1"], "1 given more than once"),
                           (["--few-shot-search", '{"sigma": [0]}'], "sigma.0: Input should be greater than 0"),
                           (["--few-shot-search", "{sigma"], "--few-shot-search '{sigma': not JSON")):
        assert main(["benchmark", "--config", str(config), "--out", str(tmp_path / "c"), "--no-progress",
                     *flags]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    with pytest.raises(ConfigError, match="few_shot is empty"):
        expand_jobs(grid(tmp_path, kinds_root, few_shot=[]))
