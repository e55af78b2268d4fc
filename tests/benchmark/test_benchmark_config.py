"""Grid configuration, --set parsing, job identity, overlay choice, labels, undefined metrics."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from benchtest import make_toy_root
from rich.console import Console

from pyimgano.benchmark.config import (
    BenchmarkConfig,
    ConfigError,
    DatasetEntry,
    DetectorEntry,
    expand_jobs,
    load_config_file,
)
from pyimgano.benchmark.job import pick_overlay_samples
from pyimgano.benchmark.runner import run_benchmark
from pyimgano.benchmark.tables import detector_labels
from pyimgano.cli.benchmark import apply_assignments
from pyimgano.cli.options import parse_assignment
from pyimgano.contracts import DatasetSample
from pyimgano.errors import InvalidParams


@pytest.mark.parametrize("item, expected", [
    ("sigma=0.5", (None, "sigma", 0.5)),
    ("faiss:patchcore.coreset_ratio=0.01", ("faiss:patchcore", "coreset_ratio", 0.01)),
    ("mean.layers=[\"blocks.2\", \"blocks.4\"]", ("mean", "layers", ["blocks.2", "blocks.4"])),
    ("backbone=efficientnet_lite0", (None, "backbone", "efficientnet_lite0")),
    ("weights=null", (None, "weights", None)),
    ("pretrained=false", (None, "pretrained", False)),
    ("name=a=b", (None, "name", "a=b")),
])
def test_parse_assignment(item, expected):
    assert parse_assignment(item) == expected


@pytest.mark.parametrize("item", ["sigma", "=1", "a.b-c=1"])
def test_parse_assignment_rejects_malformed_items(item):
    with pytest.raises(InvalidParams):
        parse_assignment(item)


def test_apply_assignments_by_qualified_or_bare_name(fake_plugin):
    detectors = [DetectorEntry(name="benchtest:mean"), DetectorEntry(name="fragile")]
    apply_assignments(detectors, ["mean.sigma=2", "benchtest:fragile.how=exit", "fail_height=9"])
    assert detectors[0].params == {"sigma": 2}
    assert detectors[1].params == {"how": "exit", "fail_height": 9}


def test_job_keys_follow_everything_that_changes_a_result(fake_plugin, toy_root, tmp_path):
    def keys(**changes):
        base = dict(detectors=[DetectorEntry(name="benchtest:mean")],
                    datasets=[DatasetEntry(name="toy", root=str(toy_root), categories=["alpha"])], out=str(tmp_path))
        base.update(changes)
        return expand_jobs(BenchmarkConfig(**base))[0]

    job = keys()
    assert job.job_id.startswith("benchtest-mean__toy__alpha__") and job.key == keys(overlays=0).key
    assert job.params == {"sigma": 1.0, "seed": 0}  # defaults filled in, the seed passed on
    variants = [keys(seed=1), keys(image_size=16),
                keys(detectors=[DetectorEntry(name="benchtest:mean", params={"sigma": 2})])]
    assert len({job.key, *(v.key for v in variants)}) == 4


def test_expand_jobs_errors_are_clear(fake_plugin, toy_root, tmp_path):
    with pytest.raises(ConfigError, match="no detector named 'nope'"):
        expand_jobs(BenchmarkConfig(detectors=[DetectorEntry(name="nope")],
                                    datasets=[DatasetEntry(name="toy", root=str(toy_root))], out=str(tmp_path)))
    with pytest.raises(ConfigError, match="needs --root"):
        expand_jobs(BenchmarkConfig(detectors=[DetectorEntry(name="benchtest:mean")],
                                    datasets=[DatasetEntry(name="toy")], out=str(tmp_path)))
    with pytest.raises(ConfigError, match="twice"):
        expand_jobs(BenchmarkConfig(detectors=[DetectorEntry(name="benchtest:mean"), DetectorEntry(name="mean")],
                                    datasets=[DatasetEntry(name="toy", root=str(toy_root))], out=str(tmp_path)))
    jobs = expand_jobs(BenchmarkConfig(detectors=[DetectorEntry(name="benchtest:mean")],
                                       datasets=[DatasetEntry(name="toy", root=str(toy_root))], out=str(tmp_path)))
    assert [j.category for j in jobs] == ["alpha", "beta"]  # every category the data set reports


def test_config_file_errors_name_the_file_and_field(tmp_path):
    bad = tmp_path / "bench.toml"
    bad.write_text("jobs = 0\n[[detectors]]\nname = 'x'\nparams = 3\n")
    with pytest.raises(ConfigError) as info:
        load_config_file(bad)
    assert str(bad) in str(info.value) and "jobs" in str(info.value) and "detectors.0.params" in str(info.value)
    bad.write_text("[[detectors]\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config_file(bad)
    with pytest.raises(ConfigError, match="no such config file"):
        load_config_file(tmp_path / "missing.toml")


def _sample(i, label, kind):
    return DatasetSample(image_path=f"/x/{i}.png", label=label, defect_type=kind, category="c",
                         mask_path=f"/x/{i}_mask.png" if label else None)


def test_overlays_show_each_defect_kind_then_the_most_suspicious_good_image():
    test = [_sample(0, 0, "good"), _sample(1, 0, "good"), _sample(2, 1, "scratch"), _sample(3, 1, "scratch"),
            _sample(4, 1, "stain"), _sample(5, 1, "hole")]
    scores = np.array([0.1, 0.9, 1, 1, 1, 1])
    assert pick_overlay_samples(test, scores, 4) == [5, 2, 4, 1]
    assert pick_overlay_samples(test, scores, 6) == [5, 2, 4, 3, 1]
    assert pick_overlay_samples(test, scores, 1) == [5]
    assert pick_overlay_samples(test, scores, 0) == []


def test_detector_labels_name_only_differing_params():
    runs = [{"detector": "a", "params": {"x": 1, "y": 2}}, {"detector": "a", "params": {"x": 1, "y": 3}},
            {"detector": "b", "params": {"x": 1}}]
    labels = detector_labels(runs)
    assert sorted(labels.values()) == ["a (y=2)", "a (y=3)", "b"]


def test_metrics_undefined_on_a_one_class_test_split_are_null_with_a_note(fake_plugin, tmp_path):
    root = make_toy_root(tmp_path / "data", {"gamma": 24}, n_defect=0)
    config = BenchmarkConfig(detectors=[DetectorEntry(name="benchtest:mean")],
                             datasets=[DatasetEntry(name="toy", root=str(root))], out=str(tmp_path / "out"))
    outcome = run_benchmark(config, console=Console(file=io.StringIO(), width=200))
    (run,) = json.loads((tmp_path / "out" / "results.json").read_text())["runs"]
    assert run["status"] == "ok" and all(v is None for v in run["metrics"].values())
    notes = outcome.records[0]["extra"]["notes"]
    assert any(n.startswith("image_auroc: ") and "single class" in n for n in notes)


def test_atomic_write_replaces_whole_files_with_the_usual_permissions(tmp_path):
    import os

    from pyimgano.atomic import atomic_write

    target = tmp_path / "sub" / "results.json"
    atomic_write(target, "old")
    atomic_write(target, b"new")
    assert target.read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["results.json"]  # no temporary files left
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_data_set_samples_are_checked_against_the_contract():
    from types import SimpleNamespace

    from pyimgano import ContractViolation
    from pyimgano.benchmark.config import JobSpec
    from pyimgano.benchmark.job import check_samples

    spec = JobSpec(detector="a:b", params={}, dataset="x:toy", dataset_label="toy", category="c")
    good = SimpleNamespace(image_path="a.png", label=0, mask_path=None, defect_type="good", category="c")
    defect = SimpleNamespace(image_path="b.png", label=1, mask_path="m.png", defect_type="cut", category="c")
    assert check_samples(spec, [good, defect], "test") == [good, defect]  # duck-typed samples are fine
    with pytest.raises(ContractViolation, match=r"x:toy returned test sample 1 .*label: Input should be 0 or 1"):
        check_samples(spec, [good, SimpleNamespace(**{**vars(defect), "label": 2})], "test")
    with pytest.raises(ContractViolation, match="returned train sample 0 label 1 for b.png; expected label 0"):
        check_samples(spec, [defect], "train")
