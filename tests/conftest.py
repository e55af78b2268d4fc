"""Shared fixtures; helper functions live in pyimgano_testutils."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pyimgano_testutils import EXAMPLE_PLUGIN, install_with_pip, plugin_on_path


def pytest_configure(config: pytest.Config) -> None:
    """The suite (and every command it starts) caches listings and generated data in a
    folder of its own, not in the user's ~/.cache/pyimgano."""
    if "PYIMGANO_CACHE_DIR" not in os.environ:
        import tempfile

        os.environ["PYIMGANO_CACHE_DIR"] = tempfile.mkdtemp(prefix="pyimgano-test-cache-")


@pytest.fixture(scope="session")
def example_plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example third-party plugin, installed with pip into a private folder."""
    return install_with_pip(EXAMPLE_PLUGIN, tmp_path_factory.mktemp("example-site"))


@pytest.fixture
def example_plugin(example_plugin_site: Path):
    """Make the example plugin discoverable in this process for one test."""
    with plugin_on_path(example_plugin_site, modules=("pyimgano_example",)):
        yield example_plugin_site
