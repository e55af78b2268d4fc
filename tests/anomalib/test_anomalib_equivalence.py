"""anomalib models through pyimgano give anomalib's own Engine.fit + Engine.predict scores.

A small run of ``benchmarks/bench_anomalib_equivalence.py``: one memory-bank model (whose
coreset draw is re-seeded) and one trained by gradient descent over two epochs (weights
initialisation, batch order and the epoch boundary must all match the Engine's)."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from pyimgano_testutils import REPO_ROOT

pytestmark = [pytest.mark.torch, pytest.mark.anomalib, pytest.mark.slow]


def load_benchmark():
    path = REPO_ROOT / "benchmarks" / "bench_anomalib_equivalence.py"
    spec = importlib.util.spec_from_file_location("bench_anomalib_equivalence", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses resolve their annotations through it
    spec.loader.exec_module(module)
    return module


def test_scores_equal_anomalib_engine(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bench = load_benchmark()
    rows = bench.run(["patchcore", "stfpm"], n_train=8, n_test_good=4, n_test_defect=4)
    for row in rows:
        assert "error" not in row, row
        assert row["max_rel_score_diff"] <= bench.SCORE_RTOL, row
        assert row["difference"] == {"image_auroc": 0.0, "pixel_auroc": 0.0}, row
        assert bench.verdict(row)[0] == "scores equal"
    assert rows[1]["pyimgano"]["steps"] == rows[1]["anomalib"]["steps"] == 2  # two epochs of one batch
    assert list(tmp_path.iterdir()) == []
