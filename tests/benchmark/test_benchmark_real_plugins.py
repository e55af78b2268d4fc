"""The benchmark with the project's own plugins: the embedded default and a tiny real run."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from pyimgano.benchmark.config import BenchmarkConfig, DatasetEntry, DetectorEntry, default_config, expand_jobs
from pyimgano.benchmark.runner import run_benchmark
from pyimgano.plugins import get_registry

TINY_SYNTHETIC = {"image_size": 64, "n_train": 4, "n_test_good": 2, "n_test_defect": 4}


def _require(kind: str, name: str) -> None:
    """The project's own plugins are always installed: a missing component is a failure."""
    assert name in get_registry().names(kind), f"{kind} {name} is not registered (a first-party plugin failed to load)"


def test_the_embedded_default_is_offline_patchcore_on_synthetic(tmp_path):
    _require("detector", "faiss:patchcore")
    _require("dataset", "datasets:synthetic")
    jobs = expand_jobs(default_config(str(tmp_path)))
    assert [(j.detector, j.dataset_label, j.category) for j in jobs] == [
        ("faiss:patchcore", "synthetic", c) for c in ("brick", "grass", "gravel")]
    assert jobs[0].params["backbone"] == "efficientnet_lite0"
    assert jobs[0].params["progress"] is False  # the benchmark draws its own bars


@pytest.mark.slow
@pytest.mark.torch
def test_patchcore_on_a_tiny_synthetic_category(tmp_path):
    _require("detector", "faiss:patchcore")
    _require("dataset", "datasets:synthetic")
    config = BenchmarkConfig(
        detectors=[DetectorEntry(name="faiss:patchcore",
                                 params={"backbone": "efficientnet_lite0", "image_size": 64, "coreset_ratio": 0.5})],
        datasets=[DatasetEntry(name="synthetic", categories=["brick"],
                               options={**TINY_SYNTHETIC, "cache_dir": str(tmp_path / "cache")})],
        out=str(tmp_path / "out"),
        overlays=2,
    )
    outcome = run_benchmark(config, console=Console(file=io.StringIO(), width=200))
    (run,) = json.loads((tmp_path / "out" / "results.json").read_text())["runs"]
    assert run["status"] == "ok", run["error"]
    # calibration="auto": faiss:patchcore fits on all four training images and calibrates on their
    # out-of-fold scores (docs/pipeline.md), so every training image is also a calibration image
    assert (run["n_train"], run["n_val"], run["n_test"]) == (4, 4, 6)
    assert all(v is not None for v in run["metrics"].values())
    assert run["peak_rss_mb"] > 100  # torch and a backbone were loaded in this job
    assert len(outcome.records[0]["overlays"]) == 2


@pytest.mark.slow
@pytest.mark.shared_data
def test_mvtec_loader_on_the_real_grid_subset(fake_plugin, tmp_path):
    from pyimgano_testutils import shared_path

    root = shared_path("data", "mvtec_ad_grid_subset")
    _require("dataset", "datasets:mvtec")
    config = BenchmarkConfig(
        detectors=[DetectorEntry(name="benchtest:mean")],
        datasets=[DatasetEntry(name="mvtec", root=str(root))],
        image_size=64,
        out=str(tmp_path),
        overlays=1,
    )
    run_benchmark(config, console=Console(file=io.StringIO(), width=200))
    (run,) = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert (run["dataset"], run["category"], run["status"]) == ("mvtec", "grid", "ok"), run["error"]
    assert (run["n_train"], run["n_val"], run["n_test"]) == (22, 3, 14)  # a seeded tenth (3 of 25) calibrates
    assert all(v is not None for v in run["metrics"].values())  # real masks reach the pixel metrics
