from __future__ import annotations

from pathlib import Path

import pytest

from pyimgano_testutils import benchtest_module

benchtest = benchtest_module()


@pytest.fixture(scope="session")
def cli_plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return benchtest.install_fake_plugin(tmp_path_factory.mktemp("cli-benchtest-site"))


@pytest.fixture(scope="session")
def cli_toy_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return benchtest.make_toy_root(tmp_path_factory.mktemp("cli-toy"))


@pytest.fixture
def cli_plugin(cli_plugin_site: Path):
    with benchtest.plugin_on_path(cli_plugin_site):
        yield cli_plugin_site
