"""One release version for the five distributions, each plugin's supported core range checked at
discovery, and ``pyimgano --version``."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import pyimgano
from pyimgano.plugins import core_range_problem
from pyimgano_testutils import REPO_ROOT, make_fake_distribution, run_cli

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

VERSION = (REPO_ROOT / "VERSION").read_text().strip()
PLUGIN_FOLDERS = ("pyimgano-datasets", "pyimgano-faiss", "pyimgano-anomalib")
FOLDERS = ("pyimgano-core", *PLUGIN_FOLDERS)
# project metadata every pyproject states alike (the root's is the `pyimgano` distribution's)
SHARED_FIELDS = ("requires-python", "license", "license-files", "authors", "keywords", "classifiers", "urls")
PLUGIN_MODULE = "raise RuntimeError('this module must not be imported')\n"


def _project(folder: str) -> dict:
    return tomllib.loads((REPO_ROOT / folder / "pyproject.toml").read_text())


def _setup_arguments() -> dict:
    """What the root setup.py passes to setuptools (the `pyimgano` distribution's version and requirements)."""
    captured: dict = {}
    import setuptools

    original = setuptools.setup
    setuptools.setup = lambda **kwargs: captured.update(kwargs)
    try:
        runpy.run_path(str(REPO_ROOT / "setup.py"))
    finally:
        setuptools.setup = original
    return captured


@pytest.mark.parametrize("folder", FOLDERS)
def test_every_distribution_takes_its_version_from_the_one_version_file(folder):
    data = _project(folder)
    assert "version" not in data["project"] and "version" in data["project"]["dynamic"]
    version_file = REPO_ROOT / folder / data["tool"]["setuptools"]["dynamic"]["version"]["file"]
    assert version_file.resolve() == (REPO_ROOT / "VERSION").resolve()


def test_the_core_reports_the_release_version():
    assert pyimgano.__version__ == VERSION
    assert run_cli("--version").stdout.splitlines()[0].startswith(f"pyimgano {VERSION} ")


@pytest.mark.parametrize("folder", PLUGIN_FOLDERS)
def test_each_plugin_declares_a_core_range_that_admits_this_release(folder):
    requirements = [Requirement(r) for r in _project(folder)["project"]["dependencies"]]
    core = [r for r in requirements if r.name == "pyimgano-core"]
    assert len(core) == 1 and core[0].specifier, f"{folder} must state the pyimgano-core versions it supports"
    assert core[0].specifier.contains(VERSION), f"{folder}: pyimgano-core{core[0].specifier} excludes {VERSION}"


def test_the_plugin_template_pins_a_range_that_admits_this_release():
    from packaging.specifiers import SpecifierSet

    from pyimgano.testing.template import template_values

    values = template_values("probe")
    assert SpecifierSet(f">={values['core_min']},<{values['core_next']}").contains(VERSION)


def test_the_pyimgano_distribution_ties_the_release_together():
    arguments = _setup_arguments()
    assert arguments["version"] == VERSION
    assert arguments["install_requires"] == [f"pyimgano-core~={VERSION}"]
    extras = arguments["extras_require"]
    core_extras = set(_project("pyimgano-core")["project"]["optional-dependencies"])
    expected = {"datasets", "faiss", "anomalib", "all"} | core_extras
    assert set(extras) == expected, "the pyimgano distribution passes every pyimgano-core extra through"
    for name in core_extras:
        assert extras[name] == [f"pyimgano-core[{name}]~={VERSION}"]
    for name in ("datasets", "faiss", "anomalib"):
        assert extras[name] == [f"pyimgano-{name}~={VERSION}"]
    assert set(extras["all"]) == {r for name, reqs in extras.items() if name != "all" for r in reqs}
    # every requirement admits exactly the release and its patch releases
    for requirement in map(Requirement, [*arguments["install_requires"], *extras["all"]]):
        assert requirement.specifier.contains(VERSION) and not requirement.specifier.contains("0.999.0")


@pytest.mark.parametrize("folder", FOLDERS)
def test_project_metadata_is_complete_and_the_same_everywhere(folder):
    root = _project(".")["project"]
    project = _project(folder)["project"]
    for name in SHARED_FIELDS:
        assert project.get(name) == root.get(name), f"{folder}/pyproject.toml: {name} differs from the root's"
    assert root["license"] == "Apache-2.0" and (REPO_ROOT / folder / "LICENSE").resolve() == REPO_ROOT / "LICENSE"
    assert {"Homepage", "Repository", "Changelog"} <= set(root["urls"])
    assert root["requires-python"] == ">=3.10"
    python_classifiers = {c.rsplit(" ", 1)[-1] for c in root["classifiers"] if c.startswith("Programming Language :: Python :: 3.")}
    assert "3.10" in python_classifiers


# -- a plugin whose core range excludes the running core --------------------------------------


def _plugin_site(tmp_path: Path, name: str, version: str, requires: tuple[str, ...]) -> Path:
    dist = f"pyimgano-{name}"
    return make_fake_distribution(tmp_path / name, dist, version, {name: f"{name}_plugin"},
                                  {f"{name}_plugin": PLUGIN_MODULE}, requires=requires)


def test_a_plugin_for_an_older_core_is_an_error_naming_both_versions_and_the_fix(tmp_path):
    site = _plugin_site(tmp_path, "legacy", "0.0.3", ("pyimgano-core>=0.0.1,<0.1", "numpy"))
    result = run_cli("list-plugins", "--json", pythonpath=[site], env={"PYIMGANO_NO_PLUGIN_CACHE": "1"})
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)["plugins"]}
    legacy = rows.pop("legacy")
    assert legacy["status"] == "error" and legacy["version"] == "0.0.3"
    assert legacy["error"] == (f"pyimgano-legacy 0.0.3 supports pyimgano-core>=0.0.1,<0.1, but pyimgano-core {VERSION} "
                               "is installed; its components are not loaded: pip install -U pyimgano-legacy")
    assert "must not be imported" not in legacy["error"]  # refused before its module is imported
    assert all(row["status"] == "ok" for row in rows.values()) and "core" in rows  # the rest works
    # --version says the same, on the plugin's line
    version = run_cli("--version", pythonpath=[site], env={"PYIMGANO_NO_PLUGIN_CACHE": "1"})
    line = next(line for line in version.stdout.splitlines() if line.split()[:1] == ["legacy"])
    assert "error: pyimgano-legacy 0.0.3 supports pyimgano-core>=0.0.1,<0.1" in line


def test_a_plugin_for_a_newer_core_names_the_core_upgrade(tmp_path):
    site = _plugin_site(tmp_path, "future", "3.0.0", ("pyimgano-core>=2.0,<3",))
    result = run_cli("list-plugins", "--json", pythonpath=[site], env={"PYIMGANO_NO_PLUGIN_CACHE": "1"})
    future = next(row for row in json.loads(result.stdout)["plugins"] if row["name"] == "future")
    assert future["status"] == "error"
    assert future["error"].endswith("pip install -U 'pyimgano-core>=2.0,<3'")
    assert f"pyimgano-core {VERSION} is installed" in future["error"]


def test_strict_mode_fails_on_a_core_range_mismatch(tmp_path):
    site = _plugin_site(tmp_path, "legacy", "0.0.3", ("pyimgano-core<0.1",))
    result = run_cli("list-plugins", pythonpath=[site], env={"PYIMGANO_STRICT_PLUGINS": "1"})
    assert result.returncode == 1 and "pyimgano-legacy 0.0.3 supports pyimgano-core<0.1" in result.stderr


def test_a_core_requirement_of_an_extra_only_or_no_range_is_not_checked(tmp_path):
    site = _plugin_site(tmp_path, "loose", "1.0.0", ("pyimgano-core[onnx]>=99; extra == 'deploy'", "pyimgano-core"))
    dist = next(d for d in metadata.distributions(path=[str(site)]) if d.name == "pyimgano-loose")
    assert core_range_problem(dist) is None


def test_an_editable_core_of_another_version_beside_an_installed_plugin_is_detected():
    """A checkout whose VERSION moved on (an editable core) beside the plugin wheels of the last release."""
    dist = metadata.distribution("pyimgano-faiss")
    assert core_range_problem(dist) is None
    problem = core_range_problem(dist, core_version="9.0.0")
    assert problem is not None and problem.startswith(f"pyimgano-faiss {dist.version} supports pyimgano-core>=")
    assert "pyimgano-core 9.0.0 is installed" in problem and problem.endswith("pip install -U pyimgano-faiss")


def test_version_lists_every_plugin_with_its_distribution():
    result = run_cli("--version")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    for plugin, folder in {"core": "pyimgano-core", "datasets": "pyimgano-datasets", "faiss": "pyimgano-faiss",
                           "anomalib": "pyimgano-anomalib"}.items():
        assert rows[plugin][:2] == [folder, metadata.version(folder)]


def test_the_project_plugins_beside_a_core_of_the_next_minor_version_are_errors_and_the_core_works():
    """An editable core whose VERSION moved to the next minor release, beside the plugins installed
    here: every plugin is refused in one line, the core's own commands and components still load."""
    major, minor = (int(part) for part in VERSION.split(".")[:2])
    newer = f"{major}.{minor + 1}.0"
    code = ("import json, sys, pyimgano; pyimgano.__version__ = sys.argv[1]; "
            "from pyimgano.cli import main; sys.exit(main(['list-plugins', '--json']))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYIMGANO_")}
    env["PYIMGANO_NO_PLUGIN_CACHE"] = "1"
    result = subprocess.run([sys.executable, "-c", code, newer], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)["plugins"]}
    assert rows.pop("core")["status"] == "ok"
    assert set(rows) >= {"datasets", "faiss", "anomalib"}
    for name in ("datasets", "faiss", "anomalib"):
        dist = f"pyimgano-{name}"
        assert rows[name]["status"] == "error"
        assert rows[name]["error"] == (f"{dist} {metadata.version(dist)} supports pyimgano-core>={major}.{minor},"
                                       f"<{major}.{minor + 1}, but pyimgano-core {newer} is installed; its components "
                                       f"are not loaded: pip install -U {dist}")
