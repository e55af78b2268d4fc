"""The release's distributions, built once per test session by ``./dev.sh dist``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pyimgano_testutils import DISTRIBUTIONS, REPO_ROOT, clean_env


@pytest.fixture(scope="session")
def built_dists(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``./dev.sh dist DIR`` with this test run's virtual environment: the sdists and wheels of the
    five distributions, checked by ``twine check``."""
    out = tmp_path_factory.mktemp("dist")
    env = {**clean_env(), "PYIMGANO_VENV": sys.prefix}
    result = subprocess.run(["bash", str(REPO_ROOT / "dev.sh"), "dist", str(out)], capture_output=True, text=True,
                            env=env, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("PASSED") == 2 * len(DISTRIBUTIONS), result.stdout  # twine check, one per file
    return out

