"""Exit codes and messages that say what happened (docs/reliability.md, "Round 3"): a GPU the
machine lacks is a configuration error (2), a state file that is a link to a device says so,
a KeyboardInterrupt a plugin raises is named as the plugin's bug (4) while a real Ctrl-C
stays "interrupted" (130)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from reliability_helpers import save

import pyimgano
from pyimgano import InvalidParams, ModelLoadError
from pyimgano_testutils import run_cli


def _train_folder(root: Path, n: int = 3, side: int = 32) -> Path:
    for i in range(n):
        save(root / f"good_{i}.png", np.random.default_rng(i).integers(80, 170, (side, side, 3), dtype=np.uint8))
    return root


@pytest.mark.torch
def test_a_cuda_device_on_a_machine_without_one_is_a_configuration_error(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    detector = pyimgano.create_detector("faiss:knn", backbone="efficientnet_lite0", image_size=32, device="cuda",
                                        progress=False)
    with pytest.raises(InvalidParams, match=r"device='cuda': torch sees no CUDA GPU on this machine"):
        detector.fit([np.zeros((32, 32, 3), np.uint8)] * 2)
    train = _train_folder(tmp_path / "train")
    result = run_cli("fit", "--detector", "faiss:knn", "--set", "backbone=efficientnet_lite0", "--set", "device=cuda:1",
                     "--train", str(train), "--out", str(tmp_path / "model"))
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1] == ("error: device='cuda:1': torch sees no CUDA GPU on this machine; use "
                                              "device='cpu' or 'auto'")
    assert not (tmp_path / "model").exists()


def test_a_device_that_is_no_device_is_refused_with_the_parameters():
    with pytest.raises(InvalidParams, match=r"faiss:knn: device: String should match pattern"):
        pyimgano.create_detector("faiss:knn", device="tpu")


@pytest.fixture
def saved(example_plugin, tmp_path) -> Path:
    images = [np.random.default_rng(i).integers(90, 160, (24, 20, 3), dtype=np.uint8) for i in range(4)]
    return pyimgano.create_detector("example:mad", image_size=32, sigma=0.0).fit(images).save(tmp_path / "model")


@pytest.mark.parametrize(("target", "kind"), [("/dev/zero", "a character device"), (".", "a folder")])
def test_a_state_file_linked_to_a_device_or_folder_says_what_it_is(saved, target, kind):
    state = saved / "state.npz"
    state.unlink()
    state.symlink_to(target if target.startswith("/") else saved)
    with pytest.raises(ModelLoadError) as err:
        pyimgano.load_detector(saved)
    assert str(err.value) == (f"{state}: the model state file is {kind} (via the link to "
                              f"{target if target.startswith('/') else saved}), not a file")


def test_a_missing_state_file_is_still_missing(saved):
    (saved / "state.npz").unlink()
    with pytest.raises(ModelLoadError, match=r"state.npz: the model state file is missing$"):
        pyimgano.load_detector(saved)
    (saved / "state.npz").symlink_to(saved / "gone.npz")
    with pytest.raises(ModelLoadError, match=r"state.npz: the model state file is a broken link \(to .*gone.npz\)$"):
        pyimgano.load_detector(saved)


def _fit_crasher(site: Path, train: Path, out: Path, action: str, marker: Path | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("PYIMGANO_STRICT_PLUGINS", "PYIMGANO_DISABLE_PLUGINS")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    args = ["fit", "--detector", "hostile:crasher", "--set", f"action={action}", "--train", str(train),
            "--out", str(out)]
    if marker is not None:
        args += ["--set", f"marker={marker}"]
    return subprocess.Popen([sys.executable, "-m", "pyimgano", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_a_keyboard_interrupt_raised_by_a_plugin_is_named(hostile_site, tmp_path):
    train = _train_folder(tmp_path / "train")
    child = _fit_crasher(hostile_site, train, tmp_path / "model", "interrupt")
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == 4, stderr
    assert stderr.splitlines()[-1] == (
        "error: KeyboardInterrupt raised by plugin 'hostile' (pyimgano-hostile 0.1.0) in hostile_impl._fit without a "
        "Ctrl-C (unexpected: run with --debug or PYIMGANO_DEBUG=1 for the traceback)")


def test_a_real_ctrl_c_during_a_plugin_fit_is_interrupted(hostile_site, tmp_path):
    train = _train_folder(tmp_path / "train")
    marker = tmp_path / "marker"
    child = _fit_crasher(hostile_site, train, tmp_path / "model", "hang", marker)
    deadline = time.monotonic() + 120
    while not (marker.exists() and marker.read_text().endswith("hanging")):
        assert time.monotonic() < deadline and child.poll() is None, child.communicate()
        time.sleep(0.05)
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == 130 and stderr.splitlines()[-1] == "interrupted", stderr
