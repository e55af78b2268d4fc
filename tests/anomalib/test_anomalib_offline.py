"""Offline weights: the bundled EfficientNet-Lite0, local files, and clear errors for
everything that anomalib would download."""

from __future__ import annotations

import time

import numpy as np
import pytest

import pyimgano
from pyimgano.errors import WeightsError
from pyimgano_anomalib.errors import MissingOfflineFile

pytestmark = [pytest.mark.torch, pytest.mark.anomalib]


def test_bundled_lite0_weights_classify_the_cat():
    """The 296 tensors load in order into timm's tf_efficientnet_lite0 (skimage's chelsea:
    ImageNet class 285, Egyptian cat)."""
    import timm
    import torch
    from skimage.data import chelsea

    from pyimgano import torchkit as w

    arch = w.OFFLINE_BACKBONES[w.OFFLINE_BACKBONE].arch
    model = timm.create_model(arch, pretrained=False).eval()
    w.load_weights(model, arch, w.read_state_dict(w.offline_weights_file()), "bundled")
    img = torch.from_numpy(chelsea()).permute(2, 0, 1).float()[None] / 255.0
    img = torch.nn.functional.interpolate(img, size=(224, 224), mode="bilinear", antialias=True)
    img = (img - 0.5) / 0.5  # tf_efficientnet_lite0's normalisation
    with torch.no_grad():
        assert int(model(img).argmax()) == 285


def test_patchcore_backbone_gets_the_bundled_weights():
    from pyimgano import torchkit as w

    det = pyimgano.create_detector("anomalib:patchcore", image_size=64)
    module = det._build("load")
    extractor = module.model.feature_extractor.feature_extractor
    reference = w.read_state_dict(w.offline_weights_file())
    assert module.model.feature_extractor.backbone == "tf_efficientnet_lite0"
    first = next(iter(reference.values()))
    np.testing.assert_array_equal(extractor.state_dict()["conv_stem.weight"].numpy(), first.numpy())
    random = det._build("random").model.feature_extractor.feature_extractor
    assert not np.array_equal(random.state_dict()["conv_stem.weight"].numpy(), first.numpy())


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_larger_lite_backbones_get_their_packaged_weights_and_lite_layers(name):
    from pyimgano import torchkit as w

    det = pyimgano.create_detector("anomalib:patchcore", image_size=64, backbone=name)
    module = det._build("load")
    extractor = module.model.feature_extractor
    assert extractor.backbone == w.OFFLINE_BACKBONES[name].arch and list(extractor.layers) == ["blocks.2", "blocks.4"]
    first = next(iter(w.read_state_dict(w.offline_weights_file(name)).values()))
    np.testing.assert_array_equal(extractor.feature_extractor.state_dict()["conv_stem.weight"].numpy(), first.numpy())


def test_hub_backbone_without_cache_fails_at_once_naming_the_options():
    det = pyimgano.create_detector("anomalib:padim", backbone="resnet18", image_size=64)
    start = time.perf_counter()
    with pytest.raises(MissingOfflineFile, match="resnet18.*weights=FILE.*efficientnet_lite0.*pre_trained=False"):
        det._build("load")
    assert time.perf_counter() - start < 120  # a guard against a hang or a download attempt


def test_local_weights_file_for_a_timm_backbone(weight_files, tmp_path):
    """A torchvision ResNet-18 state dict has timm's resnet18 names: it loads as weights=FILE."""
    import torch

    det = pyimgano.create_detector("anomalib:padim", backbone="resnet18", weights=str(weight_files["resnet18"]))
    module = det._build("load")
    saved = torch.load(weight_files["resnet18"], weights_only=True)
    got = module.model.feature_extractor.feature_extractor.state_dict()
    assert torch.equal(got["conv1.weight"], saved["conv1.weight"])
    bad = tmp_path / "bad.pth"
    torch.save({"x": torch.zeros(3)}, bad)
    with pytest.raises(WeightsError, match="does not fit backbone 'resnet18'"):
        pyimgano.create_detector("anomalib:padim", backbone="resnet18", weights=str(bad))._build("load")
    with pytest.raises(WeightsError, match="does not exist"):
        pyimgano.create_detector("anomalib:padim", backbone="resnet18", weights=str(tmp_path / "no.pth"))._build("load")


def test_torchvision_backbone_from_local_file_or_clear_error(weight_files):
    import torch

    det = pyimgano.create_detector("anomalib:cfa", backbone="resnet18", weights=str(weight_files["resnet18"]))
    module = det._build("load")
    saved = torch.load(weight_files["resnet18"], weights_only=True)
    assert torch.equal(module.model.feature_extractor.conv1.weight, saved["conv1.weight"])
    with pytest.raises(MissingOfflineFile, match="resnet18-f37072fd.pth.*torch cache.*weights=FILE"):
        pyimgano.create_detector("anomalib:cfa", backbone="resnet18")._build("load")


def test_efficient_ad_needs_teacher_and_imagenette_or_no_penalty(tiny, weight_files, tmp_path):
    missing = tmp_path / "nothing.pth"
    det = pyimgano.create_detector("anomalib:efficient_ad", teacher_weights=str(missing), imagenet_penalty=False)
    with pytest.raises(MissingOfflineFile, match="pretrained_teacher_small.pth.*teacher_weights=FILE"):
        det.fit(tiny.train)
    det = pyimgano.create_detector("anomalib:efficient_ad", teacher_weights=str(weight_files["teacher"]))
    with pytest.raises(MissingOfflineFile, match="imagenette2.tgz.*imagenet_dir=FOLDER.*imagenet_penalty=False"):
        det.fit(tiny.train)


def test_draem_and_dsr_name_their_files(tiny, tmp_path):
    with pytest.raises(MissingOfflineFile, match="dtd-r1.0.1.tar.gz.*dtd_dir=FOLDER.*textures=False"):
        pyimgano.create_detector("anomalib:draem").fit(tiny.train)
    with pytest.raises(MissingOfflineFile, match="vq_model_pretrained_128_4096.pckl.*vq_weights=FILE"):
        pyimgano.create_detector("anomalib:dsr", vq_weights=str(tmp_path / "none.pckl")).fit(tiny.train)


def test_offline_files_name_a_real_parameter_of_their_model():
    from pyimgano_anomalib.catalog import ENTRIES
    from pyimgano_anomalib.offline import FILES, offline_files

    assert {f.model for f in FILES} >= {"efficient_ad", "dsr", "draem", "cfa", "csflow"}
    for f in FILES:
        param = f.parameter.split("=", 1)[0]
        assert param in ENTRIES[f.model].params.model_fields, f"{f.model}: {f.parameter} is not a parameter"
        assert f in ENTRIES[f.model].files
        assert f.source.startswith("https://")
    rows = offline_files("efficient_ad")
    assert [r["key"] for r in rows] == ["teacher", "imagenette"]
    assert rows[0]["place"].endswith("efficientad_pretrained_weights")


def test_offline_files_command_prints_each_file(capsys):
    import argparse
    import json

    from pyimgano_anomalib import cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert cli.run(parser.parse_args(["dsr"])) == 0
    text = capsys.readouterr().out
    assert "vq_model_pretrained_128_4096.pckl" in text and "vq_weights=FILE" in text and "efficient_ad" not in text
    assert cli.run(parser.parse_args(["--json"])) == 0
    assert {r["model"] for r in json.loads(capsys.readouterr().out)} >= {"cfa", "csflow", "draem"}


@pytest.mark.parametrize(
    "name, params, match",
    [
        ("draem", {}, "dtd-r1.0.1.tar.gz.*dtd_dir=FOLDER.*textures=False"),
        ("dsr", {"vq_weights": "/nonexistent/vq.pckl"}, "vq_model_pretrained_128_4096.pckl.*vq_weights=FILE"),
        ("efficient_ad", {"teacher_weights": "/nonexistent/t.pth", "image_size": 256},
         "pretrained_teacher_small.pth.*teacher_weights=FILE"),
        ("cfa", {"backbone": "resnet18"}, "resnet18-f37072fd.pth.*weights=FILE"),
        ("csflow", {"image_size": 128}, "efficientnet_b5_lukemelas-1a07897c.pth.*weights=FILE"),
        ("glass", {"anomaly_source_path": "/nonexistent/dtd"}, "dtd-r1.0.1.tar.gz.*anomaly_source_path=FOLDER"),
    ],
)
def test_missing_file_is_a_clear_error_within_seconds(tiny, name, params, match):
    det = pyimgano.create_detector(f"anomalib:{name}", **{"image_size": 64, **params})
    start = time.perf_counter()
    with pytest.raises(MissingOfflineFile, match=match):
        det.fit(tiny.train)
    assert time.perf_counter() - start < 120  # a guard against a hang or a download attempt


def test_anomalib_files_is_a_pyimgano_command(capsys):
    """The plugin registers ``pyimgano anomalib-files`` through pyimgano_register_commands."""
    from pyimgano.cli import main

    assert main(["anomalib-files", "csflow"]) == 0
    out = capsys.readouterr().out
    assert "efficientnet_b5_lukemelas-1a07897c.pth" in out and "weights=FILE" in out
