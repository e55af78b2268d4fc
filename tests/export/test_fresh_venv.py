"""The runtime installs and runs where torch is absent: a fresh virtual environment holding
pyimgano-core[onnx] and its dependencies alone, in which ``pyimgano predict`` scores an export.

By default nothing is downloaded: pyimgano-core is built into a wheel from this checkout and
installed with ``pip --no-index``; its dependencies (those pyimgano-core[onnx] declares, and
theirs) are linked from the distributions installed here, and nothing else. With
``PYIMGANO_NETWORK_TESTS=1`` a second case lets pip fetch the dependencies from the package index,
as a user's ``pip install 'pyimgano-core[onnx]'`` does.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest

from pyimgano_testutils import REPO_ROOT, clean_env

pytestmark = [pytest.mark.slow, pytest.mark.torch]
CORE = REPO_ROOT / "pyimgano-core"
FORBIDDEN = ("torch", "torchvision", "timm", "faiss", "anomalib", "pyimgano_faiss", "pyimgano_anomalib")
NETWORK = os.environ.get("PYIMGANO_NETWORK_TESTS") == "1"


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _runtime_requirements() -> list[str]:
    """What ``pip install 'pyimgano-core[onnx]'`` asks for, read from this checkout's pyproject.toml."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    project = tomllib.loads((CORE / "pyproject.toml").read_text())["project"]
    return list(project["dependencies"]) + list(project["optional-dependencies"]["onnx"])


def _closure(requirements: list[str]) -> list[metadata.Distribution]:
    """The installed distributions that ``requirements`` need (markers evaluated for this interpreter);
    a requirement that is not installed here skips the test."""
    from packaging.requirements import Requirement

    found: dict[str, metadata.Distribution] = {}
    todo = [(Requirement(r), set()) for r in requirements]
    while todo:
        req, extras = todo.pop()
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in (extras or {""})):
            continue
        key = _key(req.name)
        if key in found:
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            pytest.skip(f"{req.name} (needed by pyimgano-core[onnx]) is not installed here")
        found[key] = dist
        todo += [(Requirement(r), set(req.extras)) for r in dist.requires or []]
    return list(found.values())


def _link_distributions(dists: list[metadata.Distribution], site: Path) -> None:
    """Make each distribution importable in ``site`` by linking its top-level entries (packages,
    modules, shared-library folders, its .dist-info), never a whole site-packages."""
    for dist in dists:
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            target = Path(dist.locate_file(top))
            if top != "__pycache__" and target.exists() and not (site / top).exists():
                (site / top).symlink_to(target, target_is_directory=target.is_dir())


def _fresh_venv(tmp_path: Path, from_index: bool) -> Path:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=clean_env(), timeout=300)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / "python"
    if from_index:
        install = [str(python), "-m", "pip", "install", "-q", f"{CORE}[onnx]"]
    else:
        wheels = tmp_path / "wheels"
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index", "--no-build-isolation",
                        "-w", str(wheels), str(CORE)], check=True, capture_output=True, env=clean_env(), timeout=600)
        site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                   capture_output=True, text=True, check=True).stdout.strip())
        _link_distributions(_closure(_runtime_requirements()), site)
        install = [str(python), "-m", "pip", "install", "-q", "--no-index", "--no-deps", str(next(wheels.glob("*.whl")))]
    result = subprocess.run(install, capture_output=True, text=True, env=clean_env(), timeout=1200)
    assert result.returncode == 0, result.stderr
    return bindir


@pytest.mark.parametrize("from_index", [
    False,
    pytest.param(True, marks=pytest.mark.skipif(not NETWORK, reason="downloads from the package index: "
                                                "set PYIMGANO_NETWORK_TESTS=1")),
], ids=["offline", "package-index"])
def test_predict_in_a_fresh_environment_without_torch(patchcore_export, images_dir, tmp_path, from_index):
    if sysconfig.get_platform().startswith("win") and not from_index:
        pytest.skip("symbolic links need privileges on Windows")
    source_dir, exported = patchcore_export
    bindir = _fresh_venv(tmp_path, from_index)
    probe = subprocess.run(
        [str(bindir / "python"), "-c", "import importlib.util as u, pyimgano; "
         f"print([m for m in {FORBIDDEN!r} if u.find_spec(m)], u.find_spec('onnxruntime') is not None, "
         "pyimgano.__file__)"],
        capture_output=True, text=True, env=clean_env(), check=True,
    )
    missing, has_ort, where = probe.stdout.split()
    assert (missing, has_ort) == ("[]", "True")
    assert Path(where).is_relative_to(bindir.parent)  # the installed copy, not this checkout
    out = tmp_path / "predictions"
    run = subprocess.run([str(bindir / "pyimgano"), "predict", "--model", str(exported), str(images_dir / "test"),
                          "--out", str(out)], capture_output=True, text=True, env=clean_env(), timeout=600)
    assert run.returncode == 0, run.stderr
    from pyimgano import load_detector

    source = load_detector(source_dir)
    with open(out / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    files = [Path(r["image"]) for r in rows]
    expected = source.decision_function(files)
    assert len(rows) == 6
    for row, score in zip(rows, expected):
        assert float(row["score"]) == pytest.approx(float(score), rel=1e-4)
        assert int(row["label"]) == int(score > source.threshold_)
