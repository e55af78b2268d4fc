"""Every wrapped anomalib model: fit on a few 64x64 images with a tiny step budget,
valid raw scores and maps, nothing written to the working directory, save/load round trip."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import pyimgano
from pyimgano_anomalib.plugin import MAP_MODELS, MODEL_NAMES

pytestmark = [pytest.mark.torch, pytest.mark.anomalib]

# Seconds of fit at the smoke budget on a shared 2-core machine: > ~10 s is marked slow.
SLOW = {"draem", "dsr", "efficient_ad", "csflow", "supersimplenet", "uflow", "uninet", "glass", "cflow", "fre"}
# Memory-bank models on the bundled ImageNet backbone: the white blobs must rank first.
PRETRAINED_MEMORY_BANK = {"patchcore", "padim", "dfm", "dfkde"}


def smoke_params(name: str, weight_files: dict) -> dict:
    spec, _ = pyimgano.get_registry().resolve("detector", f"anomalib:{name}")
    params = dict(spec.capabilities.check_params)
    if name == "efficient_ad":  # the file loading path, with a random stand-in of the right shape
        params.update(teacher_weights=str(weight_files["teacher"]), pre_trained=True)
    if name == "dsr":
        params.update(vq_weights=str(weight_files["vq"]), pre_trained=True)
    return params


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in MODEL_NAMES]
)
def test_smoke_fit_score_save_load(name, tiny, weight_files, tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    det = pyimgano.create_detector(f"anomalib:{name}", **smoke_params(name, weight_files))
    det.fit(tiny.train)
    assert det.fit_info_["steps"] <= 2 * 64  # the budget cut anomalib's epochs
    scores, maps = det.score(tiny.test)

    assert scores.shape == (len(tiny.test),) and np.isfinite(scores).all()
    if name in MAP_MODELS:
        assert maps.shape == (len(tiny.test), 64, 64) and maps.dtype == np.float32
        assert np.isfinite(maps).all() and maps.max() > maps.min()
    else:
        assert maps is None
        with pytest.raises(NotImplementedError):
            det.predict_anomaly_map(tiny.test[:1])
    if name in PRETRAINED_MEMORY_BANK:
        assert roc_auc_score(tiny.labels, scores) == 1.0
    assert list(cwd.iterdir()) == [], "fit wrote into the working directory"

    det.save(tmp_path / "model")
    assert not list((tmp_path / "model").glob("*.pkl")) and (tmp_path / "model" / "anomalib-model.safetensors").is_file()
    loaded = pyimgano.load_detector(tmp_path / "model")
    again, again_maps = loaded.score(tiny.test)
    np.testing.assert_allclose(again, scores, rtol=1e-4, atol=1e-5)
    if maps is not None:
        np.testing.assert_allclose(again_maps, maps, rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def padim(tiny):
    return pyimgano.create_detector("anomalib:padim", image_size=64, batch_size=4).fit(tiny.train)


def test_maps_follow_each_input_size(tiny, padim):
    det = padim
    small, wide = tiny.test[0][:48, :40], np.concatenate([tiny.test[3], tiny.test[3]], axis=1)
    maps = det.predict_anomaly_map([small, wide])
    assert [m.shape for m in maps] == [(48, 40), (64, 128)]
    single = det.get_anomaly_map(tiny.test[3])
    assert single.shape == (64, 64)


def test_same_seed_same_scores(tiny):
    """Weights initialisation, batch order and augmentations all follow ``seed``."""
    params = {"image_size": 64, "batch_size": 2, "max_steps": 3, "seed": 3}
    first = pyimgano.create_detector("anomalib:stfpm", **params).fit(tiny.train).decision_function(tiny.test)
    second = pyimgano.create_detector("anomalib:stfpm", **params).fit(tiny.train).decision_function(tiny.test)
    other = pyimgano.create_detector("anomalib:stfpm", **{**params, "seed": 4}).fit(tiny.train).decision_function(tiny.test)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)


def test_scores_are_raw_not_normalised(tiny, padim):
    """pred_score straight from the torch model: PaDiM's score is a Mahalanobis distance,
    not a min-max normalised value in [0, 1] (the post-processor is off)."""
    import torch

    det = padim
    scores = det.decision_function(tiny.test)
    assert det.module_.post_processor is None
    module = det.module_
    from pyimgano_anomalib.training import to_tensor

    batch = module.pre_processor.transform(torch.stack([to_tensor(img, (64, 64)) for img in tiny.test]))
    with torch.no_grad():
        direct = module.model(batch).pred_score.numpy().ravel()
    np.testing.assert_allclose(scores, direct, rtol=1e-6)
    assert scores.max() > 1.0


def test_time_limit_stops_training(tiny):
    det = pyimgano.create_detector("anomalib:stfpm", image_size=64, batch_size=2, max_epochs=10_000, time_limit_s=2)
    det.fit(tiny.train)
    assert det.fit_info_["fit_s"] < 60 and det.fit_info_["epochs"] < 10_000


def test_set_params_after_fit_takes_effect_at_the_next_fit(tiny, tmp_path):
    """A parameter that shapes the network (PaDiM's n_features) changed on a fitted detector:
    get_params and save show it, the saved module is the one that was trained."""
    det = pyimgano.create_detector("anomalib:padim", image_size=64, batch_size=4).fit(tiny.train)
    scores = det.decision_function(tiny.test)
    assert det.set_params(n_features=50) is det and det.get_params()["n_features"] == 50
    det.save(tmp_path / "model")
    loaded = pyimgano.load_detector(tmp_path / "model")
    assert loaded.get_params()["n_features"] == 50 and loaded.n_features == 50
    np.testing.assert_allclose(loaded.decision_function(tiny.test), scores, rtol=1e-5)
    assert det.fit(tiny.train).module_.model.n_features == 50


def test_a_saved_weights_file_name_stays_inside_the_model_folder(tiny, weight_files, tmp_path):
    """The weights file is named in the saved state: a tampered name may not read outside the folder."""
    det = pyimgano.create_detector("anomalib:padim", **smoke_params("padim", weight_files)).fit(tiny.train)
    det.save(tmp_path / "model")
    (tmp_path / "secret.safetensors").write_bytes(b"not for the model")
    state_path = tmp_path / "model" / "state.npz"
    with np.load(state_path) as data:
        state = {k: data[k] for k in data.files}
    for name in ("../secret.safetensors", "/etc/passwd"):
        np.savez(state_path, **{**state, "anomalib_state_in": np.array([name])})
        with pytest.raises(pyimgano.ModelLoadError, match="points outside"):
            pyimgano.load_detector(tmp_path / "model")
