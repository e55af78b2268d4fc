"""benchmarks/bench_metrics.py runs end to end (on a tiny set) and agrees with anomalib."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from pyimgano_testutils import REPO_ROOT


@pytest.mark.slow
def test_bench_metrics_smoke_run():
    out = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "bench_metrics.py"), "--sizes", "64"],
        check=True, capture_output=True, text=True, timeout=300,
    ).stdout
    assert "12 maps of 64x64" in out and "anomalib _AUPRO" in out and "peak MiB" in out
    diff = float(re.search(r"\|pyimgano aupro - anomalib aupro\| = (\S+)", out).group(1))
    assert diff < 1e-6
