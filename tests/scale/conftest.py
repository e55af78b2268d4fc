"""Fixtures of the Ray tests: one local Ray cluster per module, a plugin, a tiny data set."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from pyimgano_testutils import make_fake_distribution, optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "benchmark"))  # the benchmark tests' toy data set helper

from benchtest import make_toy_root, plugin_on_path  # noqa: E402


@pytest.fixture(scope="session")
def scale_plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``scaletest`` plugin (crashy, hungry, gpu) installed into a private folder."""
    site = tmp_path_factory.mktemp("scaletest-site")
    make_fake_distribution(site, "pyimgano-scaletest", "0.1.0", {"scaletest": "scaletest_plugin"}, {})
    for name in ("scaletest_plugin.py", "scaletest_impl.py"):
        shutil.copy(HERE / "scaleplugin" / name, site / name)
    return site


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_toy_root(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def plugins(example_plugin_site: Path, scale_plugin_site: Path):
    """example:mad and scaletest:* discoverable here (Ray workers get them from PYTHONPATH)."""
    with plugin_on_path(example_plugin_site, scale_plugin_site):
        yield


@pytest.fixture(scope="module")
def ray_cluster(example_plugin_site: Path, scale_plugin_site: Path):
    """A private local Ray cluster with 2 CPUs whose workers can import the test plugins."""
    ray = optional("ray")
    if ray.is_initialized():
        ray.shutdown()
    path = os.pathsep.join([str(example_plugin_site), str(scale_plugin_site), os.environ.get("PYTHONPATH", "")])
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path.rstrip(os.pathsep)}})
    yield ray
    ray.shutdown()
