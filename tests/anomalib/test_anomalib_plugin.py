"""Registration (light, no heavy imports), parameters and bad input of the anomalib plugin."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import pyimgano
from pyimgano.errors import ComponentNotFound, InvalidParams
from pyimgano_anomalib.plugin import MAP_MODELS, MODEL_NAMES

REQUIRED = {"patchcore", "padim", "efficient_ad", "fastflow", "stfpm", "reverse_distillation", "dfm", "dfkde",
            "cflow", "draem"}


def test_every_model_is_registered_with_params_and_capabilities():
    assert REQUIRED <= set(MODEL_NAMES)
    registry = pyimgano.get_registry()
    assert registry.plugin("anomalib").status == "ok"
    for name in MODEL_NAMES:
        spec, record = registry.resolve("detector", f"anomalib:{name}")
        assert record.distribution == "pyimgano-anomalib"
        fields = spec.params.model_fields
        assert {"max_epochs", "max_steps", "time_limit_s", "seed", "image_size"} <= set(fields)
        assert spec.capabilities.pixel_maps == (name in MAP_MODELS)
        assert spec.capabilities.min_train_images == 2
        spec.params.model_validate(spec.capabilities.check_params)
    caps = {n: registry.resolve("detector", f"anomalib:{n}")[0].capabilities for n in MODEL_NAMES}
    assert not caps["patchcore"].needs_training_epochs and caps["fastflow"].needs_training_epochs


def test_listing_plugins_imports_no_heavy_module():
    code = (
        "import json, sys, pyimgano\n"
        "names = pyimgano.list_detectors()\n"
        "heavy = sorted(m for m in ('torch', 'anomalib', 'lightning', 'timm') if m in sys.modules)\n"
        "print(json.dumps({'names': names, 'heavy': heavy}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    assert {f"anomalib:{n}" for n in MODEL_NAMES} <= set(result["names"])


def test_unknown_model_name():
    with pytest.raises(ComponentNotFound, match="anomalib:patchcorex"):
        pyimgano.create_detector("anomalib:patchcorex")


@pytest.mark.parametrize(
    "name, params, field",
    [
        ("patchcore", {"coreset_sampling_ratio": 0.0}, "coreset_sampling_ratio"),
        ("patchcore", {"num_neighbours": 3}, "num_neighbours"),
        ("fastflow", {"backbone": "vit_huge"}, "backbone"),
        ("efficient_ad", {"batch_size": 4}, "batch_size"),
        ("draem", {"beta_min": 0.9, "beta_max": 0.2}, "beta_min"),
        ("dfm", {"score_type": "l2"}, "score_type"),
        ("stfpm", {"max_steps": 0}, "max_steps"),
    ],
)
def test_invalid_hyper_parameter(name, params, field):
    with pytest.raises(InvalidParams, match=field):
        pyimgano.create_detector(f"anomalib:{name}", **params)


def test_direct_construction_validates_too():
    from pyimgano_anomalib.passthrough import PadimDetector

    with pytest.raises(InvalidParams, match="image_size"):
        PadimDetector(image_size=8)


@pytest.mark.torch
def test_mixed_training_sizes_and_one_image_are_clear_errors(tiny):
    det = pyimgano.create_detector("anomalib:padim", image_size=64)
    with pytest.raises(ValueError, match="share one size.*64x64"):
        det.fit([tiny.train[0], tiny.train[1][:32]])
    with pytest.raises(ValueError, match="at least 2 normal images, got 1"):
        det.fit(tiny.train[:1])
    with pytest.raises(pyimgano.NotFittedError):
        det.decision_function(tiny.test)


@pytest.mark.torch
def test_single_layer_models_reject_two_layers(tiny):
    det = pyimgano.create_detector("anomalib:dfm", layers=["blocks.2", "blocks.4"], image_size=64)
    with pytest.raises(InvalidParams, match="exactly one layer"):
        det.fit(tiny.train)


def test_fit_rejects_abnormal_labels(tiny):
    det = pyimgano.create_detector("anomalib:padim")
    with pytest.raises(ValueError, match="normal images only"):
        det.fit(tiny.train, y=np.ones(len(tiny.train)))


@pytest.mark.torch
def test_dfkde_needs_as_many_images_as_pca_components(tiny):
    det = pyimgano.create_detector("anomalib:dfkde", image_size=64)
    with pytest.raises(ValueError, match="n_pca_components=16.*at least 16 images, got 6"):
        det.fit(tiny.train)
