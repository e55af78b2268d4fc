from __future__ import annotations

from pathlib import Path

import pytest
from benchtest import install_fake_plugin, make_toy_root, plugin_on_path


@pytest.fixture(scope="session")
def fake_plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_fake_plugin(tmp_path_factory.mktemp("benchtest-site"))


@pytest.fixture(scope="session")
def toy_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_toy_root(tmp_path_factory.mktemp("toy"))


@pytest.fixture
def fake_plugin(fake_plugin_site: Path):
    with plugin_on_path(fake_plugin_site):
        yield fake_plugin_site
