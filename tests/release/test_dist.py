"""``./dev.sh dist``: an sdist and a wheel per distribution, passing ``twine check``; wheels hold the code
and the package data it reads at run time, never tests or data sets; every sdist builds its wheel again."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path, PurePosixPath

import pytest

from pyimgano_testutils import DISTRIBUTIONS, REPO_ROOT, clean_env, wheel_of

pytestmark = pytest.mark.slow
VERSION = (REPO_ROOT / "VERSION").read_text().strip()
PACKAGES = {"pyimgano": [], "pyimgano-core": ["pyimgano"], "pyimgano-datasets": ["pyimgano_datasets"],
            "pyimgano-faiss": ["pyimgano_faiss"], "pyimgano-anomalib": ["pyimgano_anomalib"]}
DATA_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".npy", ".npz", ".zip", ".tar", ".gz", ".onnx",
                 ".pt", ".pth", ".safetensors", ".ckpt"}


def _names(wheel: Path) -> list[PurePosixPath]:
    with zipfile.ZipFile(wheel) as archive:
        return [PurePosixPath(name) for name in archive.namelist()]


def _metadata(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(archive.read(name).decode())


def test_five_sdists_and_five_wheels_of_one_version(built_dists):
    names = sorted(p.name for p in built_dists.iterdir())
    expected = sorted([f"{d.replace('-', '_')}-{VERSION}.tar.gz" for d in DISTRIBUTIONS]
                      + [f"{d.replace('-', '_')}-{VERSION}-py3-none-any.whl" for d in DISTRIBUTIONS])
    assert names == expected


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_a_wheel_holds_its_packages_and_no_tests_or_data(built_dists, distribution):
    names = _names(wheel_of(built_dists, distribution))
    dist_info = f"{distribution.replace('-', '_')}-{VERSION}.dist-info"
    assert {n.parts[0] for n in names} == {dist_info, *PACKAGES[distribution]}
    code = [n for n in names if n.suffix != ".tmpl"]  # the plugin template's files (its own tests too) are data
    assert not [n for n in code if "tests" in n.parts or n.name.startswith("test_") or n.name == "conftest.py"]
    assert not [n for n in names if n.suffix.lower() in DATA_SUFFIXES]
    assert PurePosixPath(dist_info, "licenses", "LICENSE") in names
    meta = _metadata(wheel_of(built_dists, distribution))
    assert meta["Version"] == VERSION and meta["License-Expression"] == "Apache-2.0"
    assert meta["Requires-Python"] == ">=3.10" and meta.get_all("Project-URL")
    assert meta.get_payload().lstrip().startswith("# ")  # the README is the long description


def test_the_core_wheel_carries_the_package_data_its_code_reads(built_dists):
    names = set(_names(wheel_of(built_dists, "pyimgano-core")))
    package = REPO_ROOT / "pyimgano-core" / "src"
    data = {PurePosixPath(p.relative_to(package).as_posix()) for p in (package / "pyimgano").rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts}
    assert PurePosixPath("pyimgano/VERSION") in data
    assert PurePosixPath("pyimgano/testing/templates/plugin/pyproject.toml.tmpl") in data
    assert data <= names, f"package data missing from the wheel: {sorted(data - names)}"
    with zipfile.ZipFile(wheel_of(built_dists, "pyimgano-core")) as archive:
        assert archive.read("pyimgano/VERSION").decode().strip() == VERSION  # a file, not a link


def test_the_pyimgano_distribution_is_the_install_line(built_dists):
    meta = _metadata(wheel_of(built_dists, "pyimgano"))
    requires = meta.get_all("Requires-Dist")
    assert f"pyimgano-core~={VERSION}" in requires
    assert f'pyimgano-faiss~={VERSION}; extra == "faiss"' in requires
    assert f'pyimgano-anomalib~={VERSION}; extra == "anomalib"' in requires
    assert set(meta.get_all("Provides-Extra")) == {"faiss", "anomalib", "datasets", "onnx", "openvino", "ray",
                                                   "report", "serve", "all"}
    with tarfile.open(built_dists / f"pyimgano-{VERSION}.tar.gz") as sdist:
        top = {PurePosixPath(m).relative_to(f"pyimgano-{VERSION}").parts[:1] for m in sdist.getnames()}
    assert {parts[0] for parts in top if parts} == {  # its own files: the four others have sdists of their own
        "CHANGELOG.md", "LICENSE", "MANIFEST.in", "PKG-INFO", "README.md", "VERSION", "pyproject.toml", "setup.cfg",
        "setup.py", "pyimgano.egg-info"}


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_an_sdist_builds_its_wheel_again(built_dists, distribution, tmp_path):
    sdist = built_dists / f"{distribution.replace('-', '_')}-{VERSION}.tar.gz"
    with tarfile.open(sdist) as archive:
        links = [m.name for m in archive.getmembers() if m.issym() or m.islnk()]
    assert not links, f"{sdist.name} holds links that only resolve in the repository: {links}"
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                             "-w", str(tmp_path), str(sdist)], capture_output=True, text=True, env=clean_env(),
                            timeout=600)
    assert result.returncode == 0, result.stderr
    rebuilt = wheel_of(tmp_path, distribution)
    assert sorted(map(str, _names(rebuilt))) == sorted(map(str, _names(wheel_of(built_dists, distribution))))
