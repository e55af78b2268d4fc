"""Fixtures of the serve and watch tests: a small fitted model (the fake plugin's ``mean``
detector on 24 x 24 images); helpers live in servetest.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import servetest

from pyimgano_testutils import run_cli

benchtest = servetest.benchtest


@pytest.fixture(scope="session")
def serve_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return benchtest.install_fake_plugin(tmp_path_factory.mktemp("serve-site"))


@pytest.fixture(scope="session")
def serve_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """alpha/train/good (6 images), alpha/test/good (3), alpha/test/spot (4 with a bright square)."""
    return benchtest.make_toy_root(tmp_path_factory.mktemp("serve-data"), {"alpha": 24})


@pytest.fixture(scope="session")
def serve_model(serve_site: Path, serve_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("serve-model") / "model"
    result = run_cli("fit", "--detector", "benchtest:mean", "--train", str(serve_data / "alpha" / "train"),
                     "--val-fraction", "0.34", "--out", str(out), pythonpath=[serve_site])
    assert result.returncode == 0, result.stderr
    return out
