"""pyimgano export on anomalib adapters, through anomalib's own exporter (torch.export)."""

from __future__ import annotations

import numpy as np
import pytest

from pyimgano import load_detector
from pyimgano.export import check_images, compare
from pyimgano_testutils import optional

pytestmark = [pytest.mark.slow, pytest.mark.torch]
optional("onnxscript")
optional("onnxruntime")

LITE = {"backbone": "efficientnet_lite0"}
MODELS = {
    "patchcore": LITE,
    "padim": LITE,
    "stfpm": LITE,
    "fastflow": {"backbone": "resnet18", "flow_steps": 2},  # FastFlow takes ResNets only (random weights here)
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_anomalib_export_matches_the_adapter(name, tmp_path, images_dir):
    from pyimgano import create_detector
    from pyimgano.export import export_model

    detector = create_detector(f"anomalib:{name}", **MODELS[name], image_size=64, max_steps=2, batch_size=4)
    train = sorted((images_dir / "train").glob("*.png"))
    detector.fit(train[:6], calibration=train[6:])
    exported = export_model(detector.save(tmp_path / "source"), tmp_path / "exported")
    runtime = load_detector(exported)
    assert runtime.threshold_ == detector.threshold_
    result = compare(detector, runtime, check_images((64, 64)))
    assert result["max_score_rel_diff"] < 1e-4
    assert result["max_map_abs_diff"] < 1e-3 * result["map_scale"]
    files = sorted((images_dir / "test").glob("*.png"))
    np.testing.assert_allclose(runtime.decision_function(files), detector.decision_function(files), rtol=1e-4)


def test_models_without_the_capability_are_refused(tmp_path, images_dir):
    from pyimgano import ExportError, create_detector
    from pyimgano.export import export_model

    detector = create_detector("anomalib:dfm", **LITE, image_size=64, max_steps=2, batch_size=4)
    detector.fit(sorted((images_dir / "train").glob("*.png"))[:6])
    with pytest.raises(ExportError, match=r"detector anomalib:dfm cannot be exported; detectors that can: .*"
                                          r"anomalib:padim \(onnx, openvino\)"):
        export_model(detector.save(tmp_path / "source"), tmp_path / "exported")


def test_a_keep_model_exports_at_its_fitted_input(tmp_path):
    """aspect='keep': the graph takes the fitted (height, width), and the runtime resizes every image to it."""
    from pyimgano import create_detector
    from pyimgano.export import export_model

    rng = np.random.default_rng(0)
    train = [rng.integers(0, 256, (96, 192, 3), dtype=np.uint8) for _ in range(6)]
    detector = create_detector("anomalib:patchcore", **LITE, image_size=90, aspect="keep", max_steps=2, batch_size=4)
    detector.fit(train)
    assert detector.input_shape_ == (64, 128)
    exported = export_model(detector.save(tmp_path / "source"), tmp_path / "exported")
    runtime = load_detector(exported)
    assert runtime.manifest_.input.size == (64, 128) and runtime.geometry_.output_shape((500, 300)) == (64, 128)
    result = compare(detector, runtime, check_images((64, 128)))
    assert result["max_score_rel_diff"] < 1e-4
    assert result["max_map_abs_diff"] < 1e-3 * result["map_scale"]
