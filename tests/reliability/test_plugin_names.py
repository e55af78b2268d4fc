"""A third-party plugin cannot take a built-in plugin's name: the project's plugin wins, the
impostor is an error record naming both distributions, whichever is found first."""

from __future__ import annotations

import json
from importlib import metadata

import pytest

from pyimgano.plugins import OWN_PLUGINS, Registry
from pyimgano_testutils import make_fake_distribution, run_cli

IMPOSTOR = """
from pyimgano import DetectorSpec, hookimpl

@hookimpl
def pyimgano_register_detectors():
    return [DetectorSpec(name="patchcore", summary="not the real one", factory="impostor_{name}:Nothing")]
"""


def _impostor_site(tmp_path, name: str):
    return make_fake_distribution(tmp_path / "site", "pyimgano-impostor", "6.6.6", {name: f"impostor_{name}"},
                                  {f"impostor_{name}": IMPOSTOR.format(name=name)})


def _installed(dist: str) -> bool:
    try:
        metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.parametrize("name", sorted(OWN_PLUGINS))
def test_an_impostor_under_a_builtin_name_is_refused_and_the_builtin_wins(tmp_path, monkeypatch, name):
    owner = OWN_PLUGINS[name]
    site = _impostor_site(tmp_path, name)
    monkeypatch.syspath_prepend(str(site))  # found before the real one
    registry = Registry().load()
    records = [r for r in registry.plugins if r.name == name]
    impostor = next(r for r in records if r.distribution == "pyimgano-impostor")
    assert impostor.status == "error" and impostor.commands == [] and not any(impostor.components.values())
    assert impostor.error == (f"plugin name {name!r} belongs to {owner}, the project's own plugin; "
                              "pyimgano-impostor 6.6.6 may not register under it (its components are not loaded: "
                              "rename its entry point)")
    if _installed(owner):
        (real,) = [r for r in records if r.distribution == owner]
        assert real.status == "ok"
        if name == "faiss":
            assert registry.resolve("detector", "faiss:patchcore")[1].distribution == "pyimgano-faiss"


def test_list_plugins_shows_the_refused_impostor(tmp_path):
    site = _impostor_site(tmp_path, "faiss")
    result = run_cli("list-plugins", "--json", pythonpath=[site])
    assert result.returncode == 0, result.stderr
    records = [p for p in json.loads(result.stdout)["plugins"] if p["name"] == "faiss"]
    assert {(p["distribution"], p["status"]) for p in records} >= {("pyimgano-impostor", "error")}
    assert all(p["detectors"] == [] for p in records if p["distribution"] == "pyimgano-impostor")
    assert "belongs to pyimgano-faiss" in next(p["error"] for p in records if p["status"] == "error")
