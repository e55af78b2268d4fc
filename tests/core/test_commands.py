"""Sub-commands come from plugins: lazy loading, conflicts, a missing plugin, hook arguments."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from types import SimpleNamespace

import pluggy
import pytest

from pyimgano import CommandSpec, DetectorSpec, PluginError, hookimpl, hookspecs, plugins
from pyimgano.cli import main
from pyimgano.plugins import Registry
from pyimgano_testutils import make_fake_distribution, run_cli

COMMAND_PLUGIN = """
from pyimgano import CommandSpec, hookimpl

@hookimpl
def pyimgano_register_commands():
    return [
        CommandSpec(name="hello", summary="say hello from {dist}", factory="{prefix}_cli"),
        CommandSpec(name="{prefix}-broken", summary="a command whose module fails", factory="{prefix}_broken:Command"),
    ]
"""

COMMAND_MODULE = """
from pyimgano.errors import PyimganoError

def add_arguments(parser):
    parser.add_argument("--name", default="world")

def run(args):
    if args.name == "nobody":
        raise PyimganoError("nobody to greet")
    print("hello " + args.name + " from {dist}")
    return 0
"""


def _command_site(site, prefix: str, dist: str, version: str = "1.0.0"):
    return make_fake_distribution(site, dist, version, {prefix: f"{prefix}_plugin"}, {
        f"{prefix}_plugin": COMMAND_PLUGIN.format(prefix=prefix, dist=dist),
        f"{prefix}_cli": COMMAND_MODULE.format(dist=dist),
        f"{prefix}_broken": "raise ImportError('needs libcamera.so')\n",
    })


def test_a_plugin_command_runs_with_its_own_options(tmp_path):
    site = _command_site(tmp_path / "site", "greet", "pyimgano-greet")
    result = run_cli("hello", "--name", "Ada", pythonpath=[site])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello Ada from pyimgano-greet\n"
    failed = run_cli("hello", "--name", "nobody", pythonpath=[site])
    assert (failed.returncode, failed.stderr) == (2, "error: nobody to greet\n")
    unknown_flag = run_cli("hello", "--nme", "x", pythonpath=[site])
    assert unknown_flag.returncode == 2 and "--nme" in unknown_flag.stderr


def test_help_and_listing_never_import_a_command_module(tmp_path):
    """The broken command's module raises on import, yet --help and list-plugins work."""
    site = _command_site(tmp_path / "site", "greet", "pyimgano-greet")
    result = run_cli("--help", pythonpath=[site], env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert "say hello from pyimgano-greet" in result.stdout and "greet-broken" in result.stdout
    listing = run_cli("list-plugins", "--json", pythonpath=[site])
    assert listing.returncode == 0, listing.stderr
    greet = next(p for p in json.loads(listing.stdout)["plugins"] if p["name"] == "greet")
    assert greet["status"] == "ok" and greet["commands"] == ["hello", "greet-broken"]
    table = run_cli("list-plugins", pythonpath=[site], env={"COLUMNS": "200"})
    assert "commands: hello, greet-broken" in table.stdout
    broken = run_cli("greet-broken", pythonpath=[site])
    assert broken.returncode == 2
    assert broken.stderr.count("\n") == 1, broken.stderr
    assert "'greet-broken'" in broken.stderr and "pyimgano-greet 1.0.0" in broken.stderr
    assert "needs libcamera.so" in broken.stderr


def test_two_plugins_with_one_command_name_is_an_error_naming_both(tmp_path):
    site = _command_site(tmp_path / "site", "greet", "pyimgano-greet", "1.0.0")
    _command_site(site, "welcome", "pyimgano-welcome", "2.5.0")
    result = run_cli("hello", pythonpath=[site])
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "command 'hello' is registered by 2 plugins" in result.stderr
    assert "plugin 'greet' (pyimgano-greet 1.0.0)" in result.stderr
    assert "plugin 'welcome' (pyimgano-welcome 2.5.0)" in result.stderr
    # everything else keeps working, and blocking one provider resolves the conflict
    assert run_cli("welcome-broken", "--help", pythonpath=[site]).returncode == 2
    assert run_cli("list-plugins", "--json", pythonpath=[site]).returncode == 0
    blocked = run_cli("hello", pythonpath=[site], env={"PYIMGANO_DISABLE_PLUGINS": "welcome"})
    assert blocked.returncode == 0 and blocked.stdout == "hello world from pyimgano-greet\n"


def test_a_core_command_name_taken_by_a_plugin_names_both(tmp_path):
    site = make_fake_distribution(tmp_path / "site", "pyimgano-fitter", "0.2.0", {"fitter": "fitter_mod"}, {
        "fitter_mod": """
            from pyimgano import CommandSpec, hookimpl

            @hookimpl
            def pyimgano_register_commands():
                return [CommandSpec(name="fit", summary="another fit", factory="fitter_mod")]
        """})
    result = run_cli("fit", "--help", pythonpath=[site])
    assert result.returncode == 2
    assert "plugin 'core' (pyimgano-core" in result.stderr and "plugin 'fitter' (pyimgano-fitter 0.2.0)" in result.stderr


def _core_only_registry() -> Registry:
    """What discovery finds when pyimgano-core is the only distribution installed."""
    return Registry().load([ep for ep in metadata.entry_points(group="pyimgano") if ep.name == "core"])


def test_datasets_without_its_distribution_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setattr(plugins, "_registry", _core_only_registry())
    assert main(["datasets", "download", "visa", "--root", "data"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "error: 'pyimgano datasets' needs the pyimgano-datasets distribution: pip install pyimgano-datasets\n"
    )
    assert main(["list-plugins", "--json"]) == 0  # the core's own commands are there
    assert [p["name"] for p in json.loads(capsys.readouterr().out)["plugins"]] == ["core"]


def test_datasets_with_its_plugin_blocked_or_broken_says_why():
    blocked = run_cli("datasets", env={"PYIMGANO_DISABLE_PLUGINS": "datasets"})
    assert blocked.returncode == 2
    assert blocked.stderr == ("error: 'pyimgano datasets' comes from pyimgano-datasets, whose plugin 'datasets' is "
                              "blocked: blocked by PYIMGANO_DISABLE_PLUGINS\n")
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.startswith('pyimgano_datasets'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from pyimgano.cli import main\n"
        "raise SystemExit(main(['datasets', 'check', 'mvtec', '--root', '.']))\n"
    )
    broken = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert broken.returncode == 2
    assert broken.stderr.startswith("error: 'pyimgano datasets' comes from pyimgano-datasets, whose plugin "
                                    "'datasets' is error: import of 'pyimgano_datasets.plugin' failed")
    assert broken.stderr.count("\n") == 1, broken.stderr


def test_core_plugin_blocked_says_so_instead_of_an_empty_command_list():
    result = run_cli("list-plugins", env={"PYIMGANO_DISABLE_PLUGINS": "core"})
    assert result.returncode == 2
    assert result.stderr.startswith("error: no command 'list-plugins': plugin 'core' (pyimgano-core")
    assert "blocked by PYIMGANO_DISABLE_PLUGINS" in result.stderr


@pytest.mark.parametrize("factory, problem", [
    ("pyimgano.errors", "pyimgano.errors has no add_arguments() or run()"),
    ("json:dumps", "json:dumps has no add_arguments() or run()"),
    ("no_such_module_xyz", "could not be loaded (no_such_module_xyz): ModuleNotFoundError"),
])
def test_a_command_factory_without_the_command_api_is_a_clear_error(factory, problem):
    registry = Registry()
    registry.register_module(SimpleNamespace(pyimgano_register_commands=hookimpl(
        lambda: [CommandSpec(name="odd", summary="odd", factory=factory)])), "odd")
    with pytest.raises(PluginError, match="command 'odd' from plugin 'odd'") as info:
        registry.load_command("odd")
    assert problem in str(info.value)


def test_command_spec_factory_and_name_are_validated():
    assert CommandSpec(name="x", summary="x", factory="pkg.mod").factory == "pkg.mod"
    assert CommandSpec(name="x", summary="x", factory="pkg.mod:obj").factory == "pkg.mod:obj"
    for bad in ("pkg mod", "pkg.mod:", ":obj", "pkg..mod"):
        with pytest.raises(ValueError, match="factory"):
            CommandSpec(name="x", summary="x", factory=bad)
    with pytest.raises(ValueError, match="lower-case"):
        CommandSpec(name="Hello", summary="x", factory="pkg.mod")
    # the component specs keep requiring module:attr
    with pytest.raises(ValueError, match="package.module:attr"):
        DetectorSpec(name="x", summary="x", factory="pkg.mod")


# -- hooks get the arguments they declare -------------------------------------------------
_spec_marker = pluggy.HookspecMarker(hookspecs.PROJECT_NAME)


@_spec_marker
def _grown_register_detectors(core_version):
    """pyimgano_register_detectors as it would read after growing an argument."""


def _detector(name: str) -> DetectorSpec:
    return DetectorSpec(name=name, summary=name, factory="pkg.mod:Detector")


def test_hook_implementations_take_the_spec_arguments_they_declare(monkeypatch):
    monkeypatch.setattr(hookspecs, "pyimgano_register_detectors", _grown_register_detectors)
    registry = Registry(hook_arguments={"core_version": "9.9"})
    seen = []

    def new_style(core_version):
        seen.append(core_version)
        return [_detector("new")]

    old = registry.register_module(SimpleNamespace(pyimgano_register_detectors=hookimpl(lambda: [_detector("old")])),
                                   "old")
    new = registry.register_module(SimpleNamespace(pyimgano_register_detectors=hookimpl(new_style)), "new")
    assert (old.status, old.names("detector")) == ("ok", ["old"])
    assert (new.status, new.names("detector")) == ("ok", ["new"])
    assert seen == ["9.9"]

    def unknown_argument(colour):
        return []

    bad = registry.register_module(SimpleNamespace(pyimgano_register_detectors=hookimpl(unknown_argument)), "bad")
    assert bad.status == "error" and "colour" in bad.error


def test_a_hookspec_argument_the_registry_does_not_offer_is_reported(monkeypatch):
    monkeypatch.setattr(hookspecs, "pyimgano_register_detectors", _grown_register_detectors)
    record = Registry().register_module(SimpleNamespace(pyimgano_register_detectors=hookimpl(lambda: [])), "old")
    assert record.status == "error"
    assert "pyimgano_register_detectors declares core_version" in record.error
