"""anomalib:patchcore through pyimgano matches anomalib's own Engine.fit + Engine.test."""

from __future__ import annotations

import importlib.util

import pytest

from pyimgano_testutils import REPO_ROOT

pytestmark = [pytest.mark.torch, pytest.mark.anomalib, pytest.mark.slow]


def load_benchmark():
    path = REPO_ROOT / "benchmarks" / "bench_anomalib_equivalence.py"
    spec = importlib.util.spec_from_file_location("bench_anomalib_equivalence", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_patchcore_matches_anomalib_engine(tmp_path, monkeypatch):
    pytest.importorskip("pyimgano_datasets")
    monkeypatch.chdir(tmp_path)
    result = load_benchmark().run(category="brick", image_size=96, n_train=10, n_test_good=6, n_test_defect=8)
    assert result["difference"]["image_auroc"] <= 0.01, result
    assert result["difference"]["pixel_auroc"] <= 0.01, result
    assert result["pyimgano"]["image_auroc"] > 0.6  # the figures compared are meaningful
    assert list(tmp_path.iterdir()) == []
