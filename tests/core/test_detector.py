"""The detector API through a third-party plugin: inputs, thresholds, save/load, errors."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

import pyimgano
from pyimgano import Detector
from pyimgano.errors import ImageLoadError, InvalidParams, ModelLoadError, NotFittedError
from pyimgano.images import load_image, load_images


def _normal(rng, n, shape=(48, 40)):
    base = np.linspace(80, 160, shape[1], dtype=np.float64)[None, :, None]
    return [np.clip(base + rng.normal(0, 4, (*shape, 3)), 0, 255).astype(np.uint8) for _ in range(n)]


def _defect(img):
    out = img.copy()
    out[10:22, 12:24] = 255
    return out


@pytest.fixture
def fitted(example_plugin):
    rng = np.random.default_rng(0)
    det = pyimgano.create_detector("example:mad", image_size=32, sigma=1.0)
    train = _normal(rng, 8)
    assert det.fit(train) is det
    return det, _normal(rng, 6)


def test_scores_maps_and_qualified_name(fitted):
    det, normal = fitted
    assert det.component == "example:mad" and det.plugin == "example"
    imgs = normal[:3] + [_defect(n) for n in normal[3:]]
    scores = det.decision_function(imgs)
    assert scores.shape == (6,) and scores.dtype == np.float64
    assert scores[3:].min() > scores[:3].max()
    maps = det.predict_anomaly_map(imgs)
    assert maps.shape == (6, 48, 40) and maps.dtype == np.float32
    one = det.get_anomaly_map(imgs[3])
    assert one.shape == (48, 40) and np.allclose(one, maps[3])


def test_threshold_strategies(fitted):
    det, normal = fitted
    with pytest.raises(NotFittedError, match="calibrate"):
        det.predict(normal)
    det.calibrate(normal, strategy={"strategy": "quantile", "q": 1.0})
    assert det.predict(normal).tolist() == [0] * 6
    bad = [_defect(n) for n in normal]
    assert det.predict(bad).tolist() == [1] * 6
    mixed = normal[:3] + bad[:3]
    thr = det.calibrate(mixed, [0, 0, 0, 1, 1, 1], strategy="f1")
    scores = det.decision_function(mixed)
    assert det.predict(mixed).tolist() == [0, 0, 0, 1, 1, 1]
    assert scores[:3].max() < thr < scores[3:].min()
    det.set_threshold(1e9)
    assert det.predict(bad).sum() == 0
    det.calibrate(normal, strategy=0.5)
    assert det.threshold_ == 0.5


def test_fit_with_calibration_sets_threshold(example_plugin):
    rng = np.random.default_rng(1)
    det = pyimgano.create_detector("mad", image_size=16)
    calibration = _normal(rng, 5)
    det.fit(_normal(rng, 5), calibration=calibration, threshold={"strategy": "quantile", "q": 0.5})
    scores = det.decision_function(calibration)
    assert det.threshold_ == pytest.approx(float(np.median(scores)))
    assert det.threshold_ < float(np.quantile(scores, 0.99))  # q was used, not the default


def test_unfitted_and_empty(example_plugin):
    det = pyimgano.create_detector("mad")
    with pytest.raises(NotFittedError, match="fit"):
        det.decision_function([np.zeros((8, 8, 3), np.uint8)])
    with pytest.raises(ValueError, match="empty"):
        det.fit([])
    with pytest.raises(ValueError, match="normal images only"):
        det.fit([np.zeros((8, 8, 3), np.uint8)], y=[1])


def test_image_inputs_of_every_kind(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    gray = rgb[:, :, 0]
    rgba = np.dstack([rgb, np.full((20, 30), 255, np.uint8)])
    sixteen = (gray.astype(np.uint16) * 257)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(gray).save(tmp_path / "gray.png")
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    Image.fromarray(sixteen).save(tmp_path / "g16.png")
    for source in [rgb, gray, rgba, gray[:, :, None], Image.fromarray(rgb), tmp_path / "rgb.png",
                   str(tmp_path / "gray.png"), tmp_path / "rgba.png", tmp_path / "g16.png", sixteen,
                   rgb.astype(np.float32) / 255.0]:
        out = load_image(source)
        assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    assert np.array_equal(load_image(tmp_path / "g16.png")[:, :, 0], gray)
    assert np.array_equal(load_image(rgba), rgb)
    batch = load_images(np.stack([rgb, rgb]))
    assert len(batch) == 2
    with pytest.raises(ImageLoadError, match="channels"):
        load_image(np.zeros((4, 4, 2), np.uint8))


def test_corrupt_and_truncated_files_name_the_file(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"this is not an image")
    for path in (truncated, garbage, tmp_path / "missing.png"):
        with pytest.raises(ImageLoadError, match=path.name):
            load_image(path)
    with pytest.raises(ImageLoadError, match=r"image \[1\]"):
        load_images([good, object()])


def test_save_load_round_trip_without_pickle(fitted, tmp_path):
    det, normal = fitted
    det.set_threshold(0.123)
    det.save(tmp_path / "model")
    config = json.loads((tmp_path / "model" / "pyimgano-model.json").read_text())
    assert config["detector"] == "example:mad" and config["plugin_version"] == "1.2.0"
    assert config["params"] == {"image_size": 32, "sigma": 1.0}
    loaded = pyimgano.load_detector(tmp_path / "model")
    assert np.array_equal(loaded.decision_function(normal), det.decision_function(normal))
    assert loaded.threshold_ == 0.123


def test_a_parameter_changed_after_fit_is_used_saved_and_loaded(fitted, tmp_path):
    det, normal = fitted
    imgs = normal[:3] + [_defect(n) for n in normal[3:]]
    smoothed = det.decision_function(imgs)
    det.sigma = 0
    assert det.sigma == 0.0 and det.get_params() == {"image_size": 32, "sigma": 0.0}
    assert repr(det) == "MeanAbsDiff(image_size=32, sigma=0.0)"
    sharp = det.decision_function(imgs)
    assert not np.allclose(smoothed, sharp)
    det.save(tmp_path / "model")
    assert json.loads((tmp_path / "model" / "pyimgano-model.json").read_text())["params"]["sigma"] == 0.0
    loaded = pyimgano.load_detector(tmp_path / "model")
    assert loaded.sigma == 0.0
    np.testing.assert_array_equal(loaded.decision_function(imgs), sharp)


def test_set_params_is_validated_and_returns_self(fitted):
    det, _ = fitted
    assert det.set_params(sigma=1.5, image_size=32) is det and det.sigma == 1.5
    assert det.set_params() is det
    with pytest.raises(InvalidParams, match=r"detector example:mad: sigma: Input should be greater than or equal to 0"):
        det.set_params(sigma=-1)
    with pytest.raises(InvalidParams, match=r"image_size: Input should be less than or equal to 1024"):
        det.image_size = 4096
    with pytest.raises(InvalidParams, match=r"sigmaa: unknown parameter \(did you mean 'sigma'\?\)"):
        det.set_params(sigmaa=1.0)
    with pytest.raises(ValueError):  # InvalidParams is a ValueError; nothing changed by the bad calls
        det.set_params(sigma=0.5, image_size=2)
    assert det.get_params() == {"image_size": 32, "sigma": 1.5}
    params = det.get_params()
    params["sigma"] = 9.0  # a copy
    assert det.sigma == 1.5


def test_params_model_gives_validation_attributes_and_signature(example_plugin):
    from pyimgano_example.detector import MeanAbsDiff

    with pytest.raises(InvalidParams, match=r"MeanAbsDiff: image_size: Input should be greater than or equal to 8"):
        MeanAbsDiff(image_size=2)
    det = MeanAbsDiff(image_size="48")
    assert det.image_size == 48 and det.config.image_size == 48 and "image_size" not in det.__dict__
    signature = inspect.signature(MeanAbsDiff)
    assert list(signature.parameters) == ["image_size", "sigma"]
    assert signature.parameters["sigma"].default == 2.0
    assert signature.parameters["sigma"].kind is inspect.Parameter.KEYWORD_ONLY


def test_a_parameter_that_would_hide_a_method_is_refused_at_class_definition():
    class Clash(BaseModel):
        model_config = ConfigDict(extra="forbid")
        predict: bool = True

    with pytest.raises(TypeError, match=r"parameter 'predict' of Clash would hide Detector.predict"):
        class _Bad(Detector):
            params_model = Clash


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    k: int = Field(3, ge=1)


class _OwnConfig(Detector):
    """Validates into ``self.config`` itself (the adapters' older habit): the base uses that config."""

    def __init__(self, **params):
        self.config = _Params.model_validate(params)
        super().__init__(**self.config.model_dump())


def test_detectors_without_a_params_model_keep_working():
    plain = Detector(a=1, b="x")
    assert plain.get_params() == {"a": 1, "b": "x"} and repr(plain) == "Detector(a=1, b='x')"
    assert plain.set_params(a=2) is plain and plain.get_params()["a"] == 2
    with pytest.raises(InvalidParams, match=r"unknown parameter\(s\) \['c'\]; valid parameters: a, b"):
        plain.set_params(c=1)
    own = _OwnConfig(k=4)
    assert own.get_params() == {"k": 4} and own.set_params(k=5) is own and own.config.k == 5
    with pytest.raises(InvalidParams, match="k: Input should be greater than or equal to 1"):
        own.set_params(k=0)


def test_load_errors(fitted, tmp_path):
    det, _ = fitted
    with pytest.raises(ModelLoadError, match="not a saved pyimgano model"):
        pyimgano.load_detector(tmp_path)
    model = det.save(tmp_path / "m")
    config = json.loads((model / "pyimgano-model.json").read_text())
    (model / "state.npz").write_bytes(b"corrupt")
    with pytest.raises(ModelLoadError, match="state.npz"):
        pyimgano.load_detector(model)
    for change, fragment in [({"plugin": "ghost", "detector": "ghost:x"}, "not installed"),
                             ({"plugin_version": "2.0.0"}, "incompatible")]:
        (model / "pyimgano-model.json").write_text(json.dumps({**config, **change}))
        with pytest.raises(ModelLoadError, match=fragment):
            pyimgano.load_detector(model)
    (model / "pyimgano-model.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="corrupt"):
        pyimgano.load_detector(model)


def test_state_arrays_bind_named_sizes_across_arrays_and_to_parameters():
    from pyimgano.modelfile import StateArray, state_problem

    expected = {"bank": StateArray("float32", ("rows", "width")), "norms": StateArray("float", ("rows",)),
                "grid": StateArray("int", (2,)), "index": StateArray("uint8", ("n",), required=False)}
    good = {"bank": np.zeros((5, 8), np.float32), "norms": np.zeros(5), "grid": np.array([2, 3])}
    assert state_problem(good, expected, {"width": 8}, "acme:x") is None
    assert state_problem(good, expected, {"width": 9}, "acme:x") == \
        "bank has shape (5, 8); acme:x expects (rows, width=9)"
    assert state_problem({**good, "norms": np.zeros(4)}, expected, {}, "acme:x") == \
        "norms has shape (4,); acme:x expects (rows=5,); rows as in bank"
    assert state_problem({**good, "bank": np.zeros((5, 8))}, expected, {}, "acme:x") == \
        "bank has dtype float64; acme:x expects float32"
    assert state_problem({**good, "bank": np.zeros((0, 8), np.float32)}, expected, {}, "acme:x") == \
        "bank has shape (0, 8); acme:x expects (rows, width)"
    assert state_problem({**good, "index": np.zeros(3, np.uint8)}, expected, {}, "acme:x") is None
    with pytest.raises(TypeError, match="sizes"):
        StateArray("float", (1.5,))
    with pytest.raises(TypeError):
        StateArray("no-such-dtype")


def test_a_fitted_state_unlike_the_declaration_is_not_saved(fitted, tmp_path):
    det, _ = fitted
    det.image_size = 16  # shapes the state: takes effect on the next fit
    with pytest.raises(pyimgano.ContractViolation, match=r"mean has shape \(32, 32, 3\); example:mad expects "
                                                         r"\(image_size=16, image_size=16, 3\); fit again after"):
        det.save(tmp_path / "m")
    assert not (tmp_path / "m").exists()
