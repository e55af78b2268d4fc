"""One plugin cannot take the others down (docs/reliability.md, "Round 3").

A third-party plugin under a project plugin's name is refused while the project's plugin
keeps loading its saved models; a plugin that prints at import never reaches the command's
standard output, on the first run after an install too; a plugin that hangs at import, or
ends the interpreter, is named and skipped by a discovery child with a time bound, and the
command goes on without it.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

import pyimgano
from pyimgano.plugins import Registry
from pyimgano_testutils import make_fake_distribution, plugin_on_path, run_cli

IMPOSTOR = """
from pyimgano import DetectorSpec, hookimpl

@hookimpl
def pyimgano_register_detectors():
    return [DetectorSpec(name="knn", summary="not the real one", factory="impostor_faiss:Nothing")]
"""

NOISY = """
import os, sys
print("hello from the noisy plugin")
sys.stdout.flush()
os.write(1, b"and from its C code\\n")
from pyimgano import DetectorSpec, hookimpl

@hookimpl
def pyimgano_register_detectors():
    print("registering")
    return [DetectorSpec(name="quiet", summary="a plugin that talks", factory="noisy_plugin:Nothing")]
"""

HANGING = """
import time
time.sleep(3600)
"""

CRASHING = """
import os, signal
os.kill(os.getpid(), signal.SIGSEGV)
"""

LINGERING = """
import threading, time
threading.Thread(target=time.sleep, args=(3600,)).start()  # not a daemon: it would keep a process alive
from pyimgano import DetectorSpec, hookimpl

@hookimpl
def pyimgano_register_detectors():
    return [DetectorSpec(name="lingers", summary="starts a thread", factory="lingering_plugin:Nothing")]
"""

# A plugin with a command that asks the real registry: the command that follows discovery.
ASKING = """
from pyimgano import CommandSpec, hookimpl

@hookimpl
def pyimgano_register_commands():
    return [CommandSpec(name="ask-registry", summary="print the plugins", factory="asking_plugin")]

def add_arguments(parser):
    pass

def run(args):
    from pyimgano.plugins import get_registry

    for record in get_registry().plugins:
        print(record.name, record.status)
    return 0
"""


def _site(tmp_path, name: str, source: str):
    module = f"{name}_plugin"
    return make_fake_distribution(tmp_path / "site", f"pyimgano-{name}", "1.0.0", {name: module}, {module: source})


def _rows(stdout: str) -> dict[str, dict]:
    return {p["name"]: p for p in json.loads(stdout)["plugins"] if p["distribution"] != "pyimgano-impostor"}


@pytest.mark.torch
def test_a_saved_faiss_model_loads_beside_a_refused_impostor(tmp_path):
    images = [np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8) for i in range(3)]
    detector = pyimgano.create_detector("faiss:knn", backbone="efficientnet_lite0", image_size=64, progress=False)
    model = detector.fit(images).save(tmp_path / "knn")
    site = make_fake_distribution(tmp_path / "site", "pyimgano-impostor", "6.6.6", {"faiss": "impostor_faiss"},
                                  {"impostor_faiss": IMPOSTOR})
    with plugin_on_path(site, modules=("impostor_",)):
        loaded = pyimgano.load_detector(model)
        assert np.array_equal(loaded.decision_function(images), detector.decision_function(images))
        registry = pyimgano.plugins.get_registry()
        assert registry.plugin("faiss").distribution == "pyimgano-faiss"
    result = run_cli("list-plugins", "--json", pythonpath=[site])
    refused = [p for p in json.loads(result.stdout)["plugins"] if p["distribution"] == "pyimgano-impostor"]
    assert refused[0]["status"] == "error" and "belongs to pyimgano-faiss" in refused[0]["error"]


def test_a_model_of_a_refused_name_names_the_provider(tmp_path):
    site = make_fake_distribution(tmp_path / "site", "pyimgano-impostor", "6.6.6", {"faiss": "impostor_faiss"},
                                  {"impostor_faiss": IMPOSTOR})
    registry = Registry()
    registry.load([ep for ep in _entry_points(site) if ep.name == "faiss"])
    assert registry.plugin("faiss").status == "error"  # only the impostor: its record, with its distribution
    with pytest.raises(pyimgano.ComponentNotFound, match=r"plugin 'faiss' \(pyimgano-impostor 6.6.6\) is error"):
        registry.resolve("detector", "faiss:knn")


def _entry_points(site):
    from importlib import metadata

    return [ep for dist in metadata.distributions(path=[str(site)]) for ep in dist.entry_points
            if ep.group == "pyimgano"]


def test_a_plugin_printing_at_import_never_reaches_stdout(tmp_path, capsys):
    site = _site(tmp_path, "noisy", NOISY)
    with plugin_on_path(site, modules=("noisy_",)):
        Registry().load()
    out = capsys.readouterr()
    assert out.out == "" and "hello from the noisy plugin" in out.err
    cache = {"PYIMGANO_CACHE_DIR": str(tmp_path / "cache")}
    first = run_cli("list-plugins", "--json", pythonpath=[site], env=cache)  # the first run after the install
    assert first.returncode == 0, first.stderr
    assert _rows(first.stdout)["noisy"]["detectors"] == ["quiet"]  # stdout is the JSON alone
    assert "hello from the noisy plugin" in first.stderr and "and from its C code" in first.stderr
    again = run_cli("list-plugins", "--json", pythonpath=[site], env=cache)
    assert again.returncode == 0 and json.loads(again.stdout) == json.loads(first.stdout)


def test_a_plugin_hanging_at_import_is_named_and_skipped(tmp_path):
    site = _site(tmp_path, "hanging", HANGING)
    _site(tmp_path, "asking", ASKING)
    env = {"PYIMGANO_PLUGIN_TIMEOUT": "3", "PYIMGANO_CACHE_DIR": str(tmp_path / "cache")}
    started = time.monotonic()
    result = run_cli("list-plugins", "--json", pythonpath=[site], env=env, timeout=90)
    assert result.returncode == 0, result.stderr
    hanging = _rows(result.stdout)["hanging"]
    assert hanging["status"] == "error"
    assert hanging["error"] == ("import of 'hanging_plugin' did not finish within 3 s (PYIMGANO_PLUGIN_TIMEOUT); "
                                "skipped: fix it, or block it with PYIMGANO_DISABLE_PLUGINS=hanging")
    assert _rows(result.stdout)["asking"]["status"] == "ok"
    assert result.stderr.startswith("warning: plugin 'hanging' (pyimgano-hanging 1.0.0): import of 'hanging_plugin' "
                                    "did not finish within 3 s")
    # the command that follows asks its own registry, which does not import the plugin again
    result = run_cli("ask-registry", pythonpath=[site], env=env, timeout=90)
    assert result.returncode == 0, result.stderr
    assert "hanging error" in result.stdout.splitlines() and "asking ok" in result.stdout.splitlines()
    assert time.monotonic() - started < 60


def test_a_plugin_ending_the_interpreter_at_import_is_named_and_skipped(tmp_path):
    site = _site(tmp_path, "crashing", CRASHING)
    result = run_cli("list-plugins", "--json", pythonpath=[site], env={"PYIMGANO_CACHE_DIR": str(tmp_path / "c")})
    assert result.returncode == 0, result.stderr
    crashing = _rows(result.stdout)["crashing"]
    assert crashing["status"] == "error"
    assert crashing["error"].startswith("import of 'crashing_plugin' ended the discovery process (killed by SIGSEGV)")
    assert _rows(result.stdout)["core"]["status"] == "ok"


def test_a_plugin_leaving_a_thread_behind_does_not_hold_the_listing(tmp_path):
    site = _site(tmp_path, "lingering", LINGERING)
    started = time.monotonic()
    result = run_cli("list-plugins", "--json", pythonpath=[site], env={"PYIMGANO_CACHE_DIR": str(tmp_path / "c")},
                     timeout=90)
    assert result.returncode == 0, result.stderr
    assert _rows(result.stdout)["lingering"]["detectors"] == ["lingers"]
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("value", ["-1", "nan", "soon", "1e400"])
def test_the_plugin_timeout_is_checked(value):
    result = run_cli("list-plugins", env={"PYIMGANO_PLUGIN_TIMEOUT": value,
                                          "PYIMGANO_NO_PLUGIN_CACHE": "1"})
    assert result.returncode == 2
    assert result.stderr == (f"error: PYIMGANO_PLUGIN_TIMEOUT={value!r}: expected seconds from 0 (no child process) "
                             "to 3600\n")
