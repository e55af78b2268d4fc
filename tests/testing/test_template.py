"""``pyimgano new-plugin``: the generated distribution installs, is discovered and passes the kit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from pyimgano.testing import check_names
from pyimgano.testing.template import new_plugin, template_root, template_values
from pyimgano_testutils import REPO_ROOT, install_with_pip, run_cli


def test_template_values_and_bad_names(tmp_path):
    values = template_values("acme_vision")
    assert values["dist"] == "pyimgano-acme-vision" and values["package"] == "pyimgano_acme_vision"
    assert values["core_min"] == "0.1" and values["core_next"] == "0.2"
    for bad in ("Acme", "1acme", "acme-vision", "ac me", ""):
        with pytest.raises(ValueError, match="plugin name"):
            template_values(bad)
    project = new_plugin("acme", tmp_path)
    with pytest.raises(FileExistsError, match="not empty"):
        new_plugin("acme", tmp_path)
    text = "".join(p.read_text() for p in project.rglob("*") if p.is_file())
    assert "{{" not in text and "acme:zscore" in text


def test_new_plugin_installs_lists_and_passes_check_plugin(tmp_path):
    proc = run_cli("new-plugin", "acme", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    project = tmp_path / "pyimgano-acme"
    assert sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file()) == [
        "README.md", "pyproject.toml", "src/pyimgano_acme/__init__.py", "src/pyimgano_acme/detector.py",
        "src/pyimgano_acme/plugin.py", "tests/test_conformance.py",
    ]
    site = install_with_pip(project, tmp_path / "site")

    listed = run_cli("list-plugins", "--json", pythonpath=[site], env={"PYIMGANO_STRICT_PLUGINS": "1"})
    assert listed.returncode == 0, listed.stderr
    record = {p["name"]: p for p in json.loads(listed.stdout)["plugins"]}["acme"]
    assert record["status"] == "ok" and record["detectors"] == ["zscore"]
    assert (record["distribution"], record["version"]) == ("pyimgano-acme", "0.1.0")

    checked = run_cli("check-plugin", "acme", "--json", pythonpath=[site])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    summary = json.loads(checked.stdout)["summary"]
    # every check passes but check_out_of_fold, which the skeleton does not declare (capabilities.out_of_fold)
    assert summary == {"passed": summary["passed"], "not applicable": 1} and summary["passed"] >= 14

    # the generated project's own test runs the kit through pytest, one test per check
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    env.pop("PYIMGANO_DISABLE_PLUGINS", None)
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
                            str(project), str(project / "tests")], capture_output=True, text=True, env=env,
                           cwd=project, timeout=300)
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    # the generated test runs every check; check_out_of_fold is skipped (out_of_fold not declared)
    assert f"{len(check_names()) - 1} passed, 1 skipped" in tests.stdout


@pytest.mark.slow
def test_wheel_of_pyimgano_core_ships_the_template(tmp_path):
    source = tmp_path / "pyimgano-core"
    shutil.copytree(REPO_ROOT / "pyimgano-core", source,
                    ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-w", str(tmp_path / "dist"), str(source)],
                   check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("pyimgano_core-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"pyimgano/testing/templates/plugin/{p.relative_to(template_root()).as_posix()}"
                for p in template_root().rglob("*.tmpl")}
    assert len(expected) == 6 and expected <= names


def test_plugin_guide_documents_every_check_and_variable():
    from pyimgano.testing import DATASET_CHECKS, DETECTOR_CHECKS, METRIC_CHECKS, POSTPROCESSOR_CHECKS
    from pyimgano.testing.plugins import HEAVY_MODULES

    guide = (REPO_ROOT / "docs" / "plugins.md").read_text()
    checks = [c.name for group in (DETECTOR_CHECKS, DATASET_CHECKS, METRIC_CHECKS, POSTPROCESSOR_CHECKS)
              for c in group]
    checks += ["check_plugin_loads", "check_registration_module_is_light"]
    missing = [name for name in checks if f"`{name}`" not in guide]
    assert not missing, f"docs/plugins.md does not document {missing}"
    for word in ("PYIMGANO_STRICT_PLUGINS", "PYIMGANO_DISABLE_PLUGINS", "NameConflict", "check_params",
                 "pyimgano new-plugin", "## Versioning", "## Lazy imports", "## Naming", *HEAVY_MODULES):
        assert word in guide, word
