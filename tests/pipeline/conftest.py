from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmark"))  # the fake plugin's helpers
import benchtest


@pytest.fixture(scope="session")
def pipe_plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return benchtest.install_fake_plugin(tmp_path_factory.mktemp("pipeline-benchtest-site"))


@pytest.fixture(scope="session")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return benchtest.make_toy_root(tmp_path_factory.mktemp("pipeline-toy"), n_train=10)


@pytest.fixture
def plugin(pipe_plugin_site: Path):
    with benchtest.plugin_on_path(pipe_plugin_site):
        yield pipe_plugin_site
