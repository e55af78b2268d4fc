"""Plugin discovery: built-in and third-party plugins, broken plugins, conflicts, env vars."""

from __future__ import annotations

import json
from importlib import metadata

import pytest

import pyimgano
from pyimgano.errors import ComponentNotFound, NameConflict, PluginError
from pyimgano.plugins import Registry, reset_registry
from pyimgano_testutils import make_fake_distribution, run_cli

OWN_PLUGINS = {"core": "pyimgano-core", "datasets": "pyimgano-datasets", "faiss": "pyimgano-faiss",
               "anomalib": "pyimgano-anomalib"}


def _installed(plugins: dict[str, str]) -> dict[str, str]:
    """The entries whose distribution is installed (a user may have the core alone)."""
    found = {}
    for name, dist in plugins.items():
        try:
            metadata.distribution(dist)
        except metadata.PackageNotFoundError:
            continue
        found[name] = dist
    return found


INSTALLED_OWN_PLUGINS = _installed(OWN_PLUGINS)

GOOD_PLUGIN = """
from pyimgano import DetectorSpec, hookimpl

@hookimpl
def pyimgano_register_detectors():
    return [DetectorSpec(name="{name}", summary="a {name} detector", factory="pyimgano_example.detector:MeanAbsDiff")]
"""


def _listing(*pythonpath, env=None) -> dict:
    result = run_cli("list-plugins", "--json", pythonpath=list(pythonpath), env=env)
    assert result.returncode == 0, result.stderr
    return {p["name"]: p for p in json.loads(result.stdout)["plugins"]}


def test_installed_own_plugins_are_listed_ok():
    plugins = _listing()
    for name, dist in INSTALLED_OWN_PLUGINS.items():
        assert plugins[name]["status"] == "ok", plugins[name]
        assert plugins[name]["distribution"] == dist
        assert plugins[name]["version"]
        assert set(plugins[name]) == {"name", "distribution", "version", "status", "error", "detectors",
                                      "datasets", "metrics", "postprocessors", "commands"}
    assert "aupro" in plugins["core"]["metrics"]
    assert plugins["core"]["commands"] == ["list-plugins", "check-plugin", "new-plugin", "benchmark", "fit",
                                           "predict", "export", "serve", "watch"]
    if "datasets" in plugins:
        assert plugins["datasets"]["commands"] == ["datasets"]


def test_third_party_plugin_is_discovered(example_plugin_site):
    plugins = _listing(example_plugin_site)
    assert plugins["example"]["status"] == "ok"
    assert plugins["example"]["distribution"] == "pyimgano-example"
    assert plugins["example"]["version"] == "1.2.0"
    assert plugins["example"]["detectors"] == ["mad"]


@pytest.fixture
def broken_site(tmp_path):
    site = tmp_path / "site"
    make_fake_distribution(site, "broken-import", "0.3.0", {"broken_import": "broken_import_mod"},
                           {"broken_import_mod": "raise ImportError('needs libfoo.so')\n"})
    make_fake_distribution(site, "garbage-plugin", "2.0.0", {"garbage": "garbage_mod"}, {"garbage_mod": """
        from pyimgano import hookimpl

        @hookimpl
        def pyimgano_register_detectors():
            return ["not a spec", 42]
    """})
    make_fake_distribution(site, "raising-plugin", "1.0.0", {"raising": "raising_mod"}, {"raising_mod": """
        from pyimgano import hookimpl

        @hookimpl
        def pyimgano_register_metrics():
            raise RuntimeError("boom in hook")
    """})
    make_fake_distribution(site, "misspelt-plugin", "1.0.0", {"misspelt": "misspelt_mod"}, {"misspelt_mod": """
        from pyimgano import hookimpl

        @hookimpl
        def pyimgano_register_detector():
            return []
    """})
    make_fake_distribution(site, "bad-spec", "1.0.0", {"badspec": "badspec_mod"}, {"badspec_mod": """
        from pyimgano import hookimpl

        @hookimpl
        def pyimgano_register_detectors():
            return [{"name": "Bad Name", "summary": "x", "factory": "not a factory"}]
    """})
    return site


def test_broken_plugins_are_recorded_and_the_rest_keep_working(broken_site, example_plugin_site):
    plugins = _listing(broken_site, example_plugin_site)
    assert plugins["broken_import"]["status"] == "error"
    assert "needs libfoo.so" in plugins["broken_import"]["error"]
    assert plugins["broken_import"]["distribution"] == "broken-import"
    assert plugins["broken_import"]["version"] == "0.3.0"
    assert plugins["garbage"]["status"] == "error"
    assert "expected DetectorSpec" in plugins["garbage"]["error"]
    assert plugins["raising"]["status"] == "error" and "boom in hook" in plugins["raising"]["error"]
    assert plugins["misspelt"]["status"] == "error"
    assert "pyimgano_register_detector" in plugins["misspelt"]["error"]
    assert plugins["badspec"]["status"] == "error" and "name" in plugins["badspec"]["error"]
    # everything else still works
    assert plugins["example"]["status"] == "ok"
    for name in INSTALLED_OWN_PLUGINS:
        assert plugins[name]["status"] == "ok"


def test_broken_plugin_table_output_exits_zero(broken_site):
    result = run_cli("list-plugins", pythonpath=[broken_site])
    assert result.returncode == 0, result.stderr
    assert "needs libfoo.so" in result.stdout
    assert "error" in result.stdout


def test_strict_mode_turns_plugin_errors_into_failure(broken_site):
    result = run_cli("list-plugins", "--json", pythonpath=[broken_site], env={"PYIMGANO_STRICT_PLUGINS": "1"})
    assert result.returncode == 1
    assert "broken_import" in result.stderr and "PYIMGANO_STRICT_PLUGINS" in result.stderr
    ok = run_cli("list-plugins", "--json", env={"PYIMGANO_STRICT_PLUGINS": "1"})
    assert ok.returncode == 0, ok.stderr


def test_strict_mode_raises_in_python(broken_site, monkeypatch):
    monkeypatch.syspath_prepend(str(broken_site))
    monkeypatch.setenv("PYIMGANO_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="broken_import"):
        Registry().discover()


def test_disable_named_plugins_and_all(tmp_path, example_plugin_site):
    site = tmp_path / "site"
    for name in ("alpha", "beta"):
        make_fake_distribution(site, f"pyimgano-{name}", "1.0.0", {name: f"{name}_mod"},
                               {f"{name}_mod": GOOD_PLUGIN.format(name=name)})
    plugins = _listing(example_plugin_site, site, env={"PYIMGANO_DISABLE_PLUGINS": "example, alpha"})
    assert plugins["example"]["status"] == "blocked"
    assert plugins["alpha"]["status"] == "blocked" and plugins["alpha"]["detectors"] == []
    assert plugins["beta"]["status"] == "ok" and plugins["beta"]["detectors"] == ["beta"]
    plugins = _listing(example_plugin_site, env={"PYIMGANO_DISABLE_PLUGINS": "all"})
    assert plugins["core"]["status"] == "ok"
    assert {n for n, p in plugins.items() if p["status"] == "blocked"} == set(plugins) - {"core"}


def test_name_conflict_names_both_providers(tmp_path, example_plugin_site, monkeypatch):
    site = make_fake_distribution(tmp_path / "site", "pyimgano-other", "3.1.4", {"other": "other_mod"},
                                  {"other_mod": GOOD_PLUGIN.format(name="mad")})
    monkeypatch.syspath_prepend(str(example_plugin_site))
    monkeypatch.syspath_prepend(str(site))
    registry = Registry().discover()
    with pytest.raises(NameConflict) as info:
        registry.resolve("detector", "mad")
    message = str(info.value)
    assert "pyimgano-example 1.2.0" in message and "pyimgano-other 3.1.4" in message
    assert "example:mad" in message and "other:mad" in message
    # qualified names keep working
    spec, record = registry.resolve("detector", "other:mad")
    assert record.distribution == "pyimgano-other"
    assert registry.resolve("detector", "example:mad")[1].version == "1.2.0"


def test_duplicate_entry_point_name_is_an_error_not_silently_skipped(tmp_path, example_plugin_site, monkeypatch):
    site = make_fake_distribution(tmp_path / "site", "pyimgano-impostor", "0.0.1", {"example": "impostor_mod"},
                                  {"impostor_mod": GOOD_PLUGIN.format(name="impostor")})
    monkeypatch.syspath_prepend(str(example_plugin_site))
    monkeypatch.syspath_prepend(str(site))
    registry = Registry().discover()
    records = [p for p in registry.plugins if p.name == "example"]
    assert len(records) == 2
    statuses = sorted(r.status for r in records)
    assert statuses == ["error", "ok"]
    failed = next(r for r in records if r.status == "error")
    assert "already used by" in failed.error


def test_unknown_component_lists_what_exists():
    registry = Registry().discover()
    with pytest.raises(ComponentNotFound, match="aupro"):
        registry.resolve("metric", "no_such_metric")
    with pytest.raises(ComponentNotFound, match="no plugin 'nosuch' is installed"):
        registry.resolve("detector", "nosuch:thing")


def test_create_detector_validates_params_before_importing_factory(tmp_path, monkeypatch):
    site = make_fake_distribution(tmp_path / "site", "lazy-plugin", "1.0.0", {"lazy": "lazy_mod"}, {"lazy_mod": """
        from pydantic import BaseModel
        from pyimgano import DetectorSpec, hookimpl

        class Params(BaseModel):
            model_config = {"extra": "forbid"}
            k: int = 3

        @hookimpl
        def pyimgano_register_detectors():
            return [DetectorSpec(name="lazy", summary="lazy", factory="lazy_heavy_mod:Thing", params=Params)]
    """, "lazy_heavy_mod": "raise ImportError('heavy module imported')\n"})
    monkeypatch.syspath_prepend(str(site))
    reset_registry()
    try:
        with pytest.raises(pyimgano.InvalidParams, match=r"lazy:lazy.*k"):
            pyimgano.create_detector("lazy", k="not-a-number")
        with pytest.raises(pyimgano.InvalidParams, match=r"kk: unknown parameter \(did you mean 'k'\?\); valid parameters: k"):
            pyimgano.create_detector("lazy", kk=2)
        with pytest.raises(PluginError, match=r"lazy:lazy.*lazy-plugin.*heavy module imported"):
            pyimgano.create_detector("lazy", k=2)
    finally:
        reset_registry()


@pytest.mark.parametrize("argv", [["list-plugins", "--json"], ["--help"]])
def test_listing_does_not_import_heavy_libraries_and_is_fast(argv):
    """Neither torch and friends nor any other command's module is imported."""
    code = (
        "import contextlib, io, sys\n"
        "from pyimgano.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        f"    main({argv!r})\n"
        "heavy = [m for m in ('torch', 'faiss', 'anomalib', 'lightning', 'timm') if m in sys.modules]\n"
        "shared = {'pyimgano.cli.options', 'pyimgano.cli.inputs'}  # what every command uses, no command\n"
        "commands = sorted(m for m in sys.modules if (m.startswith('pyimgano.cli.') and m not in shared)\n"
        "                  or m.endswith('_datasets.cli'))\n"
        "print('HEAVY', heavy, 'COMMANDS', commands, file=sys.stderr)\n"
    )
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = "['pyimgano.cli.list_plugins']" if argv[0] == "list-plugins" else "[]"
    assert f"HEAVY [] COMMANDS {loaded}" in result.stderr, result.stderr
    # how fast: benchmarks/bench_startup.py measures it against `python -c "import pydantic"`


def test_import_pyimgano_loads_neither_pydantic_nor_pluggy():
    """The plugin authors' names (hookimpl, the specs) load them on first use."""
    code = (
        "import sys\n"
        "import pyimgano\n"
        "print('AT IMPORT', sorted({m.split('.')[0] for m in sys.modules} & {'pydantic', 'pluggy'}))\n"
        "from pyimgano import DetectorSpec, hookimpl\n"
        "print('ON USE', sorted({m.split('.')[0] for m in sys.modules} & {'pydantic', 'pluggy'}), DetectorSpec.__name__)\n"
    )
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["AT IMPORT []", "ON USE ['pluggy', 'pydantic'] DetectorSpec"]


def test_listing_builds_no_params_validator():
    """Params models build their pydantic schema on first use, not when plugins are listed."""
    code = (
        "import contextlib, io\n"
        "from pyimgano.cli import main\n"
        "from pyimgano.plugins import KINDS, get_registry\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['list-plugins', '--json'])\n"
        "registry = get_registry()\n"
        "specs = [(q, s) for kind in KINDS for q, (s, _) in registry.components(kind).items()]\n"
        "print('BUILT', sorted(q for q, s in specs if s.params.__pydantic_complete__))\n"
        "s = registry.resolve('metric', 'aupro')[0]\n"
        "s.params.model_validate({})\n"
        "print('AFTER USE', s.params.__pydantic_complete__, len(specs))\n"
    )
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "BUILT []" in result.stdout, result.stdout
    assert "AFTER USE True" in result.stdout


def test_a_union_typed_parameter_gets_one_problem_naming_every_accepted_form():
    from typing import Literal

    from pydantic import BaseModel, ValidationError

    from pyimgano.errors import validation_problems

    class Params(BaseModel):
        ratio: float | Literal["auto"] = "auto"
        size: int | Literal["auto", "original"] = "auto"

    with pytest.raises(ValidationError) as info:
        Params(ratio="x", size="big")
    text = validation_problems(info.value, Params)
    assert text.count("ratio:") == 1 and text.count("size:") == 1 and "\n" not in text
    assert "ratio: Input should be a valid number" in text and "or 'auto'" in text
    assert text.endswith("or 'auto' or 'original'")

    # a parameter that is a nested model keeps one problem per sub-field
    class Inner(BaseModel):
        a: int = 1
        b: int = 2

    class Nested(BaseModel):
        inner: Inner = Inner()

    with pytest.raises(ValidationError) as info:
        Nested(inner={"a": "x", "b": "y"})
    text = validation_problems(info.value, Nested)
    assert "inner.a: Input should be a valid integer" in text and "inner.b: Input should be a valid integer" in text
