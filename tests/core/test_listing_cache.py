"""The saved plugin listing: same output as discovery, never stale, never hides a broken plugin.

Each run is a fresh interpreter (``python -c`` calling ``pyimgano.cli.main``) with a private
cache folder and a fake third-party distribution on its path. Files are dated ten seconds
back before a run that should save the listing: one changed within two seconds of
discovery is never trusted by its timestamp, so nothing would be saved.
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

from pyimgano_testutils import make_fake_distribution

PLUGIN = """
from pyimgano import CommandSpec, DetectorSpec, hookimpl

@hookimpl
def pyimgano_register_detectors():
    return [DetectorSpec(name="{detector}", summary="a cached detector", factory="cached_plugin:Nothing")]

@hookimpl
def pyimgano_register_commands():
    return [CommandSpec(name="cached-hello", summary="say hello", factory="cached_plugin")]

def add_arguments(parser):
    parser.add_argument("--who", default="world")

def run(args):
    from pyimgano.plugins import get_registry

    print("hello " + args.who + ":", ", ".join(get_registry().names("detector")))
    return 0
"""

SECOND = """
from pyimgano import DetectorSpec, hookimpl

@hookimpl
def pyimgano_register_detectors():
    return [DetectorSpec(name="gamma", summary="another detector", factory="second_plugin:Nothing")]
"""

# Runs the command line in-process and reports whether the listing it used was the saved
# one, and which of the modules listing must not need were imported by the end.
RUNNER = """
import json, sys
from pyimgano.cli import main
from pyimgano.cli import current_listing
from_cache = current_listing().from_cache  # main() uses this same listing
try:
    code = main(sys.argv[1:])
except SystemExit as exc:  # --help
    code = exc.code
sys.stdout.flush()
report = {
    "from_cache": from_cache,
    "imported": sorted(m for m in sys.modules if m.split(".")[0] in {"pydantic", "pluggy", "cached_plugin",
        "pyimgano_faiss", "pyimgano_datasets", "pyimgano_anomalib"} or m in {"pyimgano._builtin", "pyimgano.specs",
        "pyimgano.plugins", "importlib.metadata"}),
}
print("REPORT " + json.dumps(report), file=sys.stderr)
raise SystemExit(code)
"""


class Env:
    """A site folder with one fake plugin, a working folder and a cache folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.site = root / "site"
        self.cwd = root / "cwd"
        self.cache = root / "cache"
        self.cwd.mkdir(parents=True)
        self.write_plugin("alpha")
        make_fake_distribution(self.site, "pyimgano-cached", "1.0.0", {"cached": "cached_plugin"}, {})

    def write_plugin(self, detector: str) -> None:
        self.site.mkdir(parents=True, exist_ok=True)
        (self.site / "cached_plugin.py").write_text(PLUGIN.format(detector=detector))

    def settle(self) -> None:
        """Date every file and folder of the test ten seconds back."""
        past = time.time() - 10
        for folder, dirs, files in os.walk(self.root):
            for name in dirs + files:
                os.utime(os.path.join(folder, name), (past, past))
        os.utime(self.root, (past, past))

    def saved(self) -> list[Path]:
        return sorted((self.cache / "plugins").glob("listing-*.json"))

    def run(self, *args: str, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, dict]:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("PYIMGANO_")}
        full_env.update({
            "PYTHONPATH": os.pathsep.join([str(self.site), os.environ.get("PYTHONPATH", "")]),
            "PYTHONDONTWRITEBYTECODE": "1",  # no __pycache__ folder appears in the site between runs
            "PYIMGANO_CACHE_DIR": str(self.cache),
            "COLUMNS": "200",
        })
        full_env.update(env or {})
        result = subprocess.run([sys.executable, "-c", RUNNER, *args], cwd=self.cwd, env=full_env,
                                capture_output=True, text=True, timeout=120)
        lines = result.stderr.splitlines()
        assert lines and lines[-1].startswith("REPORT "), result.stderr
        return result, json.loads(lines[-1][len("REPORT "):])

    def listing(self, env: dict[str, str] | None = None) -> tuple[str, dict]:
        result, report = self.run("list-plugins", "--json", env=env)
        assert result.returncode == 0, result.stderr
        return result.stdout, report

    def cold(self, env: dict[str, str] | None = None) -> str:
        """``list-plugins --json`` with the cache off: what discovery finds now."""
        stdout, report = self.listing({**(env or {}), "PYIMGANO_NO_PLUGIN_CACHE": "1"})
        assert not report["from_cache"]
        return stdout

    def warm(self, env: dict[str, str] | None = None) -> str:
        """Save the listing (settled files), then read it back; returns the saved output."""
        self.settle()
        first, _ = self.listing(env)
        second, report = self.listing(env)
        assert report["from_cache"], "the second run did not read the saved listing"
        assert second == first
        return second


def _plugins(stdout: str) -> dict[str, dict]:
    return {p["name"]: p for p in json.loads(stdout)["plugins"]}


@pytest.fixture
def env(tmp_path) -> Env:
    return Env(tmp_path)


def test_saved_listing_prints_what_discovery_prints_and_imports_no_plugin(env):
    cold = env.cold()
    assert _plugins(cold)["cached"]["detectors"] == ["alpha"]
    first, report = env.listing()
    assert not report["from_cache"] and first == cold  # saving does not change the output
    assert env.saved() == [], "files changed within two seconds must not be saved"
    assert env.warm() == cold  # byte for byte
    _, report = env.listing()
    assert report == {"from_cache": True, "imported": []}  # no pydantic, pluggy, metadata or plugin module

    table_cold, _ = env.run("list-plugins", env={"PYIMGANO_NO_PLUGIN_CACHE": "1"})
    table_warm, report = env.run("list-plugins")
    assert report["from_cache"] and table_warm.stdout == table_cold.stdout and "cached-hello" in table_warm.stdout

    help_cold, _ = env.run("--help", env={"PYIMGANO_NO_PLUGIN_CACHE": "1"})
    help_warm, report = env.run("--help")
    assert report == {"from_cache": True, "imported": []}
    assert help_warm.returncode == 0 and help_warm.stdout == help_cold.stdout and "say hello" in help_warm.stdout


def test_a_command_runs_from_the_saved_listing_and_components_use_real_discovery(env):
    env.warm()
    result, report = env.run("cached-hello", "--who", "tests")
    assert result.returncode == 0, result.stderr
    assert report["from_cache"]  # dispatched from the saved listing...
    assert "pyimgano.plugins" in report["imported"]  # ...while the command itself asked the real registry
    assert result.stdout.startswith("hello tests: ") and "cached:alpha" in result.stdout


def _edit_module(env: Env) -> dict:
    env.write_plugin("beta")
    return {"check": lambda p: p["cached"]["detectors"] == ["beta"]}


def _bump_version(env: Env) -> dict:
    metadata = env.site / "pyimgano_cached-1.0.0.dist-info" / "METADATA"
    metadata.write_text(metadata.read_text().replace("1.0.0", "1.0.1"))  # same size, same folder name
    return {"check": lambda p: p["cached"]["version"] == "1.0.1"}


def _add_entry_point(env: Env) -> dict:
    make_fake_distribution(env.site, "pyimgano-second", "3.0.0", {"second": "second_plugin"}, {"second_plugin": SECOND})
    return {"check": lambda p: p["second"]["detectors"] == ["gamma"]}


def _remove_entry_point(env: Env) -> dict:
    shutil.rmtree(env.site / "pyimgano_cached-1.0.0.dist-info")
    return {"check": lambda p: "cached" not in p}


def _edit_entry_points_in_place(env: Env) -> dict:
    entry_points = env.site / "pyimgano_cached-1.0.0.dist-info" / "entry_points.txt"
    entry_points.write_text(entry_points.read_text().replace("cached =", "cachex ="))
    return {"check": lambda p: "cachex" in p and "cached" not in p}


def _disable_plugin(env: Env) -> dict:
    return {"env": {"PYIMGANO_DISABLE_PLUGINS": "cached"}, "check": lambda p: p["cached"]["status"] == "blocked"}


@pytest.mark.parametrize("change", [_edit_module, _bump_version, _add_entry_point, _remove_entry_point,
                                    _edit_entry_points_in_place, _disable_plugin])
def test_a_change_discovery_depends_on_invalidates_the_saved_listing(env, change):
    before = env.warm()
    changed = change(env)
    after, report = env.listing(changed.get("env"))
    assert not report["from_cache"]
    assert after != before and changed["check"](_plugins(after)), after
    assert after == env.cold(changed.get("env"))
    assert env.warm(changed.get("env")) == after  # and the new state is saved in turn


def test_a_broken_plugin_is_never_served_from_the_cache(env):
    plugin = env.site / "cached_plugin.py"
    plugin.write_text("import cached_dependency\n" + plugin.read_text())
    for _ in range(2):
        env.settle()
        stdout, report = env.listing()
        assert not report["from_cache"] and _plugins(stdout)["cached"]["status"] == "error"
    assert env.saved() == []

    (env.site / "cached_dependency.py").write_text("VALUE = 1\n")  # installing the dependency fixes it at once
    stdout, report = env.listing()
    assert _plugins(stdout)["cached"]["status"] == "ok"
    assert _plugins(env.warm())["cached"]["status"] == "ok"

    (env.site / "cached_dependency.py").unlink()  # and removing it breaks it at once
    stdout, report = env.listing()
    assert not report["from_cache"] and _plugins(stdout)["cached"]["status"] == "error"
    assert "No module named 'cached_dependency'" in _plugins(stdout)["cached"]["error"]


def test_the_cache_can_be_turned_off(env):
    env.settle()
    for _ in range(2):
        _, report = env.listing({"PYIMGANO_NO_PLUGIN_CACHE": "1"})
        assert not report["from_cache"]
    assert not env.cache.exists()


def test_a_cache_folder_that_cannot_be_written_is_no_error(env):
    blocker = env.root / "not-a-folder"
    blocker.write_text("a file where the cache folder would be\n")
    expected = env.cold()
    env.settle()
    for _ in range(2):
        stdout, report = env.listing({"PYIMGANO_CACHE_DIR": str(blocker / "cache")})
        assert stdout == expected and not report["from_cache"]


def test_a_damaged_saved_listing_is_rediscovered(env):
    expected = env.warm()
    for saved in env.saved():
        saved.write_text('{"environment": ')
    stdout, report = env.listing()
    assert stdout == expected and not report["from_cache"]
