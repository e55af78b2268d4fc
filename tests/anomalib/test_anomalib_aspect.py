"""aspect="keep": one network input (height, width) in the training images' aspect ratio,
fixed at fit by the project's resize rule, saved with the model; maps at each image's size;
models that cannot take a non-square input refuse it when created."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import pyimgano
from pyimgano.preprocess import Preprocess

pytestmark = [pytest.mark.torch, pytest.mark.anomalib]

WIDE = (64, 128)  # the `wide` set's images, 1:2
PARAMS = {"image_size": 64, "batch_size": 4, "max_steps": 2}


@pytest.fixture(scope="module")
def kept(wide):
    return pyimgano.create_detector("anomalib:patchcore", **PARAMS, aspect="keep").fit(wide.train)


def test_keep_fixes_the_rules_input_and_maps_come_back_at_each_images_size(wide, kept):
    test, labels = wide.test, wide.labels
    assert kept.input_shape_ == Preprocess(resize=64, aspect="keep", multiple=32).resized_shape(WIDE) == (32, 96)
    assert kept.fit_info_["input_shape"] == (32, 96)
    assert tuple(kept.module_.pre_processor.transform.transforms[0].size) == (32, 96)  # anomalib's own resize
    scores, maps = kept.score(test)
    assert roc_auc_score(labels, scores) == 1.0
    assert maps.shape == (len(test), *WIDE) and np.isfinite(maps).all()
    other = [test[3][:50, :70], np.concatenate([test[3], test[3]], axis=0)]  # any other shape is resized to 32x96
    assert [m.shape for m in kept.predict_anomaly_map(other)] == [(50, 70), (128, 128)]


def test_keep_survives_save_and_load(wide, kept, tmp_path):
    test = wide.test
    scores, maps = kept.score(test)
    kept.save(tmp_path / "model")
    loaded = pyimgano.load_detector(tmp_path / "model")
    assert loaded.input_shape_ == (32, 96) and loaded.aspect == "keep"
    again, again_maps = loaded.score(test)
    np.testing.assert_allclose(again, scores, rtol=1e-5)
    np.testing.assert_allclose(again_maps, maps, rtol=1e-4, atol=1e-5)


def test_a_keep_module_is_built_only_once_fit_fixed_its_input():
    with pytest.raises(pyimgano.NotFittedError, match="with aspect='keep' the network input is fixed at fit"):
        pyimgano.create_detector("anomalib:patchcore", aspect="keep")._build("load")


def test_the_default_stays_anomalibs_square_input(wide, tmp_path):
    train, test = wide.train, wide.test
    det = pyimgano.create_detector("anomalib:patchcore", **PARAMS)
    assert det.aspect == "stretch"
    det.fit(train)
    assert det.input_shape_ == (64, 64)
    scores = det.decision_function(test)
    det.save(tmp_path / "model")
    # a model saved before the input shape was recorded: square at its image_size
    state_path = tmp_path / "model" / "state.npz"
    with np.load(state_path) as data:
        state = {k: data[k] for k in data.files if k != "anomalib_input_shape"}
    np.savez(state_path, **state)
    loaded = pyimgano.load_detector(tmp_path / "model")
    assert loaded.input_shape_ == (64, 64)
    np.testing.assert_allclose(loaded.decision_function(test), scores, rtol=1e-5)
    np.savez(state_path, **state, anomalib_input_shape=np.array([0, 64]))
    with pytest.raises(pyimgano.ModelLoadError, match=r"anomalib:patchcore: saved network input 0x64"):
        pyimgano.load_detector(tmp_path / "model")


@pytest.mark.parametrize("name, why", [
    ("uflow", "U-Flow's pre-processor resizes every input to 448 x 448"),
    ("cfa", "CFA resizes its deeper feature maps to a square"),
    ("ganomaly", "GANomaly's encoder"),
])
def test_square_only_models_refuse_keep_when_created(name, why):
    with pytest.raises(pyimgano.InvalidParams) as info:
        pyimgano.create_detector(f"anomalib:{name}", aspect="keep")
    message = str(info.value)
    assert "\n" not in message and f"anomalib:{name}" in message and "aspect: 'keep' is not available" in message
    assert why in message
    det = pyimgano.create_detector(f"anomalib:{name}")
    with pytest.raises(pyimgano.InvalidParams, match="'keep' is not available"):
        det.set_params(aspect="keep")
    assert det.aspect == "stretch"


def test_a_kept_input_below_the_models_minimum_side_is_refused_before_training():
    """EfficientAD needs each side at least 256 px: 256 x 384 images at image_size=256 would make 224 x 320."""
    det = pyimgano.create_detector("anomalib:efficient_ad", aspect="keep", max_steps=1, imagenet_penalty=False,
                                   pre_trained=False)
    images = [np.zeros((256, 384, 3), np.uint8)] * 2
    with pytest.raises(pyimgano.InvalidParams, match=r"224x320 network input for 256x384 training images, but the "
                                                     r"model needs each side at least 256 px; image_size=294"):
        det.fit(images)
    assert det.module_ is None


def test_csflow_keeps_sides_a_multiple_of_128():
    from pyimgano_anomalib.adapter import fitted_input_shape

    det = pyimgano.create_detector("anomalib:csflow", image_size=181, aspect="keep")
    assert fitted_input_shape(det.config, (200, 300)) == (128, 256)
    with pytest.raises(pyimgano.InvalidParams, match="image_size 192 must be a multiple of 128"):
        pyimgano.create_detector("anomalib:csflow", image_size=192)
