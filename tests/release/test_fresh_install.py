"""The install lines of the README, from the built wheels, each in a new virtual environment.

For each line a fresh environment gets ``pip install LINE`` with the five wheels of
``./dev.sh dist`` on ``--find-links`` and every other dependency from the package index as a
user's pip gets it (pip's configuration and cache are the user's; ``--no-compile`` only skips
writing .pyc files). Then ``pyimgano --version`` and ``pyimgano list-plugins --json`` must show
exactly the line's plugins, all ``ok``; the core-only lines must not hold torch; the
``[faiss,datasets]`` line runs the embedded default benchmark on one category at 128 px.

It downloads (torch alone is several GB unless pip has it cached), so it runs only with
``PYIMGANO_NETWORK_TESTS=1`` (``.ci/run`` sets it). ``PYIMGANO_RELEASE_REPORT=FILE`` writes
each line's installed size, distribution count and times as JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pyimgano_testutils import DISTRIBUTIONS, INSTALL_LINES, REPO_ROOT, clean_env, wheel_of

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("PYIMGANO_NETWORK_TESTS") != "1",
                       reason="installs from the package index: set PYIMGANO_NETWORK_TESTS=1"),
]
VERSION = (REPO_ROOT / "VERSION").read_text().strip()
HEAVY = ("torch", "torchvision", "timm", "faiss", "anomalib", "lightning")
PROBE = ("import importlib.util as u, json, pyimgano; from importlib import metadata; "
         "print(json.dumps({'heavy': [m for m in %r if u.find_spec(m)], 'file': pyimgano.__file__, "
         "'onnxruntime': u.find_spec('onnxruntime') is not None, "
         "'distributions': sorted({d.metadata['Name'] for d in metadata.distributions()})}))")


def _size(folder: Path) -> int:
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def _run(command: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(command)}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def _report(line: str, figures: dict) -> None:
    target = os.environ.get("PYIMGANO_RELEASE_REPORT")
    print(f"\n{line}: {json.dumps(figures, indent=1, ensure_ascii=False)}")
    if target:
        path = Path(target)
        data = json.loads(path.read_text()) if path.exists() else {}
        data[line] = figures
        path.write_text(json.dumps(data, indent=2))


@pytest.fixture
def venv(tmp_path):
    """A folder for the new environment, removed afterwards: one with torch holds about 6 GB."""
    folder = tmp_path / "venv"
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("line", INSTALL_LINES)
def test_an_install_line_works_from_the_wheels_in_a_fresh_environment(line, built_dists, venv, tmp_path):
    distribution, extras, plugins = INSTALL_LINES[line]
    plugins = set(plugins)
    torch_allowed = bool({"faiss", "anomalib"} & plugins)  # the core alone never brings torch
    env = {**clean_env(), "PYIMGANO_CACHE_DIR": str(tmp_path / "cache")}
    started = time.perf_counter()
    _run([sys.executable, "-m", "venv", str(venv)], env, 300)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    requirement = str(wheel_of(built_dists, distribution)) + (f"[{extras}]" if extras else "")
    # the project's distributions come from the wheels just built, whatever an index holds under
    # those names (pip applies this constraint on top of any from its configuration)
    pins = tmp_path / "release-pins.txt"
    pins.write_text("".join(f"{name}=={VERSION}\n" for name in DISTRIBUTIONS))
    _run([str(bindir / "python"), "-m", "pip", "install", "-q", "--no-compile", "--find-links", str(built_dists),
          "--constraint", str(pins), requirement], env, 2400)
    installed_s = time.perf_counter() - started

    probe = json.loads(_run([str(bindir / "python"), "-c", PROBE % (HEAVY,)], env, 300).stdout)
    assert Path(probe["file"]).is_relative_to(venv), "pyimgano must come from the wheel, not this checkout"
    if not torch_allowed:
        assert probe["heavy"] == [], f"{line} must not install {probe['heavy']}"
    assert probe["onnxruntime"] == (line == "pyimgano-core[onnx]")

    version = _run([str(bindir / "pyimgano"), "--version"], env, 300).stdout
    assert version.startswith(f"pyimgano {VERSION} ")
    assert {row.split()[0] for row in version.splitlines()[1:]} == plugins
    listing = _run([str(bindir / "pyimgano"), "list-plugins", "--json"], env, 300)
    rows = json.loads(listing.stdout)["plugins"]
    assert {row["name"] for row in rows} == plugins
    assert [row for row in rows if row["status"] != "ok"] == []
    assert {row["version"] for row in rows} == {VERSION}
    table = _run([str(bindir / "pyimgano"), "list-plugins"], {**env, "COLUMNS": "120"}, 300).stdout

    if line == "pyimgano":  # the plugin template is package data, read from the installed wheel
        _run([str(bindir / "pyimgano"), "new-plugin", "probe", "--out", str(tmp_path / "new")], env, 300)
        assert f">={VERSION.rsplit('.', 1)[0]}" in (tmp_path / "new" / "pyimgano-probe" / "pyproject.toml").read_text()
    benchmark_s = None
    if line == "pyimgano[faiss,datasets]":  # the embedded default benchmark, reduced to one category at 128 px
        out = tmp_path / "bench"
        started = time.perf_counter()
        _run([str(bindir / "pyimgano"), "benchmark", "--category", "brick", "--image-size", "128", "--overlays", "0",
              "--no-progress", "--out", str(out)], env, 1200)
        benchmark_s = round(time.perf_counter() - started, 1)
        runs = json.loads((out / "results.json").read_text())["runs"]
        assert [(r["detector"], r["status"]) for r in runs] == [("faiss:patchcore", "ok")]
        assert runs[0]["metrics"]["image_auroc"] > 0.8

    _report(line, {"install_s": round(installed_s, 1), "installed_mib": round(_size(venv) / 2**20, 1),
                   "distributions": len(probe["distributions"]), "benchmark_s": benchmark_s,
                   "version": version, "list_plugins": table})
