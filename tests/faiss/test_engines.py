"""The backbone on OpenVINO in process (``engine``, pyimgano_faiss.engines): same results as torch."""

from __future__ import annotations

import numpy as np
import pytest

from pyimgano.errors import InvalidParams

OFFLINE = {"backbone": "efficientnet_lite0", "progress": False}


def test_openvino_and_torch_give_the_same_scores_and_maps(small_category):
    import pyimgano

    pytest.importorskip("openvino")
    train, test = small_category[0], small_category[1][:4]
    results = {}
    for engine in ("torch", "openvino"):
        det = pyimgano.create_detector("faiss:patchcore", **OFFLINE, image_size=96, coreset_ratio=0.2, engine=engine)
        det.fit(train)
        results[engine] = (det.memory_bank_, *det.score(test))
    bank_t, scores_t, maps_t = results["torch"]
    bank_o, scores_o, maps_o = results["openvino"]
    # float32 rounding of two implementations of the same network: far below any score difference that matters
    np.testing.assert_allclose(bank_o, bank_t, rtol=1e-3, atol=1e-3 * np.abs(bank_t).max())
    np.testing.assert_allclose(scores_o, scores_t, rtol=1e-4)
    np.testing.assert_allclose(maps_o, maps_t, rtol=1e-4, atol=1e-4 * np.abs(maps_t).max())


def test_auto_picks_openvino_for_float32_on_the_cpu_only(monkeypatch):
    from pyimgano_faiss import engines

    monkeypatch.setattr(engines, "openvino_installed", lambda: True)
    assert engines.resolve_engine("auto", "cpu", "float32") == "openvino"
    assert engines.resolve_engine("auto", "cpu", "bfloat16") == "torch"
    assert engines.resolve_engine("auto", "cuda", "float32") == "torch"
    assert engines.resolve_engine("torch", "cpu", "float32") == "torch"
    monkeypatch.setattr(engines, "openvino_installed", lambda: False)
    assert engines.resolve_engine("auto", "cpu", "float32") == "torch"


def test_openvino_asked_for_where_it_cannot_run_is_one_clear_line(monkeypatch):
    from pyimgano_faiss import engines
    from pyimgano_faiss.errors import BackboneError

    monkeypatch.setattr(engines, "openvino_installed", lambda: False)
    with pytest.raises(BackboneError, match=r"needs the openvino package: pip install openvino"):
        engines.resolve_engine("openvino", "cpu", "float32")
    monkeypatch.setattr(engines, "openvino_installed", lambda: True)
    with pytest.raises(BackboneError, match=r"engine='openvino' runs float32 on the CPU.*precision='bfloat16'"):
        engines.resolve_engine("openvino", "cpu", "bfloat16")


def test_an_unknown_engine_is_refused_before_work():
    import pyimgano

    with pytest.raises(InvalidParams, match="engine"):
        pyimgano.create_detector("faiss:patchcore", **OFFLINE, engine="tensorrt")


def test_the_compiled_backbone_is_built_once_per_process(small_category, monkeypatch):
    import pyimgano
    from pyimgano_faiss import engines

    pytest.importorskip("openvino")
    built = []
    original = engines.OpenVinoBackbone.__init__

    def counting(self, *args, **kwargs):
        built.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(engines.OpenVinoBackbone, "__init__", counting)
    engines._compiled.cache_clear()
    train = small_category[0][:3]
    for _ in range(2):
        det = pyimgano.create_detector("faiss:patchcore", **OFFLINE, image_size=64, coreset_ratio=0.5, engine="openvino")
        det.fit(train)
        det.score(train[:1])
    assert len(built) == 1


def test_openvino_needs_no_onnx_package(monkeypatch):
    """A user's `pip install pyimgano[faiss]` has openvino but not onnx: the engine must not need it."""
    import sys

    import torch

    from pyimgano_faiss import engines
    from pyimgano_faiss.backbones import build_backbone

    pytest.importorskip("openvino")
    monkeypatch.setitem(sys.modules, "onnx", None)  # importing onnx now fails
    backbone = build_backbone("efficientnet_lite0")
    compiled = engines.OpenVinoBackbone(backbone, 1)
    x = torch.rand(2, 3, 64, 96)
    with torch.inference_mode():
        expected = backbone(x)
    for got, want in zip(compiled(x), expected):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-4 * float(want.abs().max()))


def test_openvino_takes_channels_last_and_plain_batches_alike():
    """The compiled graph's input is N x H x W x 3: the detector's channels-last batches go in as
    they are, any other layout is reordered first; both give the torch backbone's stage maps."""
    pytest.importorskip("openvino")
    import torch

    from pyimgano_faiss.backbones import build_backbone, images_to_tensor
    from pyimgano_faiss.engines import OpenVinoBackbone

    backbone = build_backbone("efficientnet_lite0")
    engine = OpenVinoBackbone(backbone, 1)
    rng = np.random.default_rng(0)
    batch = images_to_tensor([rng.random((64, 96, 3), dtype=np.float32) * 255 for _ in range(2)])
    assert batch.permute(0, 2, 3, 1).is_contiguous()  # channels-last: no copy on the way in
    plain = batch.contiguous()
    assert not plain.permute(0, 2, 3, 1).is_contiguous()
    with torch.inference_mode():
        expected = [f.numpy() for f in backbone(plain)]
    for x in (batch, plain):
        got = engine(x)
        assert [tuple(f.shape) for f in got] == [e.shape for e in expected]
        for f, e in zip(got, expected):
            np.testing.assert_allclose(f.numpy(), e, rtol=1e-3, atol=1e-3 * np.abs(e).max())
    np.testing.assert_array_equal(engine(batch)[-1].numpy(), engine(plain)[-1].numpy())
