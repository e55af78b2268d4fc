"""Fixtures of the reliability suite (helpers live in reliability_helpers)."""

from __future__ import annotations

from pathlib import Path

import pytest
from reliability_helpers import install_hostile_plugin, make_mvtec, plugin_on_path


@pytest.fixture(scope="session")
def hostile_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``hostile`` plugin (detector ``hostile:crasher``) installed into a private folder."""
    return install_hostile_plugin(tmp_path_factory.mktemp("hostile-site"))


@pytest.fixture
def hostile(hostile_site: Path):
    with plugin_on_path(hostile_site):
        yield hostile_site


@pytest.fixture(scope="session")
def mvtec_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_mvtec(tmp_path_factory.mktemp("mvtec"))
