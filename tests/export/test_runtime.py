"""The runtime detector core:exported on a hand-made graph: no torch, no plugin.

The graph (built with onnx.helper) scores an image by its mean value and maps it by its
channel mean, so every expected output is known exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pyimgano import ModelLoadError, load_detector
from pyimgano.cli import main
from pyimgano.errors import ExportError
from pyimgano.preprocess import Preprocess
from pyimgano.runtime.manifest import (
    EXPORT_FILE,
    ExportManifest,
    SourceInfo,
    content_digest,
    file_entry,
    write_manifest,
)
from pyimgano_testutils import optional

optional("onnxruntime")
onnx = optional("onnx")


def mean_graph(path: Path, size: int | None) -> None:
    """images (N, 3, H, W) -> score (N,) = mean, map (N, H, W) = channel mean."""
    from onnx import TensorProto, helper

    spatial = [size, size] if size else ["height", "width"]
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["images", "axes_all"], ["score"], keepdims=0),
            helper.make_node("ReduceMean", ["images", "axes_c"], ["map"], keepdims=0),
        ],
        "mean",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, *spatial])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"]),
         helper.make_tensor_value_info("map", TensorProto.FLOAT, ["batch", *spatial])],
        [helper.make_tensor("axes_all", TensorProto.INT64, [3], [1, 2, 3]),
         helper.make_tensor("axes_c", TensorProto.INT64, [1], [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, str(path))


def make_export(folder: Path, *, size: int | None = 32, resize: int = 32, threshold: float = 0.5,
                max_batch: int | None = None) -> Path:
    """An export folder as pyimgano export writes it: graph and manifest staged, then saved by the runtime."""
    from pyimgano.runtime.detector import ExportedDetector

    staging = folder.with_name(folder.name + "-staging")
    staging.mkdir(parents=True)
    mean_graph(staging / "model.onnx", size)
    manifest = ExportManifest(
        input={"name": "images", "size": None if size is None else (size, size), "min_size": 8},
        outputs={"score": "score", "map": "map"},
        geometry=Preprocess(resize=resize).model_dump(mode="json"),
        max_batch=max_batch,
        files={"model.onnx": file_entry(staging / "model.onnx")},
        source=SourceInfo(detector="test:mean", threshold=threshold),
    )
    write_manifest(staging, manifest)
    detector = ExportedDetector()
    detector._load_files(staging)
    detector.save(folder)
    return folder


def test_scores_maps_and_threshold_come_from_the_graph_and_the_manifest(tmp_path):
    folder = make_export(tmp_path / "m", size=None, max_batch=2)
    detector = load_detector(folder)
    assert detector.component == "core:exported" and detector.threshold_ == 0.5
    images = [np.full((40, 50, 3), v, dtype=np.uint8) for v in (0, 102, 255)] + [np.full((20, 20, 3), 51, np.uint8)]
    scores, maps = detector.score(images)
    np.testing.assert_allclose(scores, [0.0, 0.4, 1.0, 0.2], atol=1e-6)
    assert [m.shape for m in maps] == [(40, 50)] * 3 + [(20, 20)]  # each map at its image's size
    np.testing.assert_allclose(maps[1], 0.4, atol=1e-6)
    assert list(detector.predict(images)) == [0, 0, 1, 0]


def test_fit_opens_the_folder_named_by_path_and_trains_nothing(tmp_path):
    from pyimgano import create_detector

    folder = make_export(tmp_path / "m")
    detector = create_detector("exported", path=str(folder))
    image = np.full((32, 32, 3), 255, np.uint8)
    assert detector.decision_function([image])[0] == pytest.approx(1.0)  # opened on first use
    assert detector.fit([np.zeros((32, 32, 3), np.uint8)]) is detector
    assert detector.decision_function([image])[0] == pytest.approx(1.0)


def test_no_path_is_a_clear_error():
    from pyimgano import InvalidParams, create_detector

    with pytest.raises(InvalidParams, match="needs path=FOLDER"):
        create_detector("exported").fit([np.zeros((32, 32, 3), np.uint8)])


def test_a_path_that_is_not_an_export_is_refused_when_the_detector_is_made(tmp_path):
    from pyimgano import InvalidParams, create_detector

    with pytest.raises(InvalidParams, match=f"path: {tmp_path}: not a folder written by pyimgano export "
                                            r"\(no pyimgano-export.json\)$"):
        create_detector("exported", path=str(tmp_path))


def _cli_error(capsys, folder: Path, tmp_path: Path, image: Path) -> str:
    rc = main(["predict", "--model", str(folder), str(image), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    return err


@pytest.fixture
def image_file(tmp_path) -> Path:
    from PIL import Image

    path = tmp_path / "image.png"
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(path)
    return path


def test_a_modified_graph_is_refused_by_its_checksum(tmp_path, capsys, image_file):
    folder = make_export(tmp_path / "m")
    data = bytearray((folder / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "model.onnx").write_bytes(bytes(data))
    err = _cli_error(capsys, folder, tmp_path, image_file)
    assert "model.onnx: does not match its checksum in pyimgano-export.json (modified after export)" in err


def test_a_truncated_graph_is_refused(tmp_path, capsys, image_file):
    folder = make_export(tmp_path / "m")
    data = (folder / "model.onnx").read_bytes()
    (folder / "model.onnx").write_bytes(data[: len(data) // 3])
    err = _cli_error(capsys, folder, tmp_path, image_file)
    assert f"{len(data) // 3} of {len(data)} bytes: truncated after export" in err


def rewrite_manifest(folder: Path, manifest: dict) -> None:
    """Write an edited manifest with its own checksum renewed (the edit is what a test is about)."""
    manifest["content_sha256"] = content_digest(manifest)
    (folder / EXPORT_FILE).write_text(json.dumps(manifest))


def test_a_graph_that_cannot_load_names_the_file(tmp_path, capsys, image_file):
    folder = make_export(tmp_path / "m")
    (folder / "model.onnx").write_bytes(b"not a graph")
    manifest = json.loads((folder / EXPORT_FILE).read_text())
    manifest["files"]["model.onnx"] = file_entry(folder / "model.onnx").model_dump()
    rewrite_manifest(folder, manifest)
    err = _cli_error(capsys, folder, tmp_path, image_file)
    assert "model.onnx: onnxruntime cannot load the graph" in err


def test_a_manifest_from_a_newer_format_asks_for_an_upgrade(tmp_path, capsys, image_file):
    folder = make_export(tmp_path / "m")
    manifest = json.loads((folder / EXPORT_FILE).read_text())
    manifest["format"] = 2
    manifest["some_new_field"] = {"x": 1}
    (folder / EXPORT_FILE).write_text(json.dumps(manifest))
    err = _cli_error(capsys, folder, tmp_path, image_file)
    assert "export format 2 is newer than this pyimgano-core" in err and "pip install -U" in err


def test_a_geometry_that_does_not_fit_a_fixed_size_graph_is_refused(tmp_path, capsys, image_file):
    folder = make_export(tmp_path / "m", size=32, resize=32)
    manifest = json.loads((folder / EXPORT_FILE).read_text())
    manifest["geometry"]["resize"] = 48  # the policy was changed by hand
    rewrite_manifest(folder, manifest)
    err = _cli_error(capsys, folder, tmp_path, image_file)
    assert "model.onnx: the graph takes 32x32 images, but the manifest's geometry makes 48x48" in err


def test_an_image_below_the_graphs_minimum_is_one_line(tmp_path):
    folder = make_export(tmp_path / "m", size=None, resize=None)
    detector = load_detector(folder)
    with pytest.raises(ExportError, match=r"becomes 4x4 at the graph's input, below its minimum side of 8 pixels "
                                          r"\(this export refuses images with a side below 8 pixels; the source "
                                          r"detector scores them\)"):
        detector.score([np.zeros((4, 4, 3), np.uint8)])


@pytest.mark.parametrize("geometry, min_size, refused", [
    ({"resize": None}, 8, "images with a side below 8 pixels"),
    ({"resize": 32}, 8, None),  # every image becomes 32 x 32
    ({"resize": 4}, 8, "every image"),
    ({"resize": 256, "aspect": "keep", "multiple": 8}, 8, None),  # sides are rounded to at least 8
    ({"resize": 256, "aspect": "keep", "multiple": 8}, 32, "images more elongated than 83.5:1"),
])
def test_what_an_export_refuses_is_known_from_its_geometry(geometry, min_size, refused):
    from pyimgano.runtime.detector import refused_inputs

    said = refused_inputs(Preprocess(**geometry), min_size)
    assert (said is None) if refused is None else said.startswith(refused)
    if said and "elongated" in said:  # the rule is the one the runtime applies
        policy = Preprocess(**geometry)
        assert min(policy.output_shape((1000, 83_500))) >= min_size > min(policy.output_shape((1000, 83_700)))


def test_not_an_export_and_a_corrupt_manifest(tmp_path):
    from pyimgano.runtime.manifest import read_manifest

    with pytest.raises(ModelLoadError, match="not an exported pyimgano model"):
        read_manifest(tmp_path)
    (tmp_path / EXPORT_FILE).write_text("{")
    with pytest.raises(ModelLoadError, match="corrupt export manifest"):
        read_manifest(tmp_path)
    (tmp_path / EXPORT_FILE).write_text(json.dumps({"format": 1, "graph": "model.onnx"}))
    with pytest.raises(ModelLoadError, match="invalid manifest: input: Field required"):
        read_manifest(tmp_path)


def test_openvino_runs_the_same_graph(tmp_path):
    optional("openvino")
    folder = make_export(tmp_path / "m", size=None)
    from pyimgano import create_detector

    images = [np.full((40, 50, 3), 102, np.uint8), np.full((36, 36, 3), 255, np.uint8)]
    ort_scores, ort_maps = create_detector("exported", path=str(folder), engine="onnxruntime").score(images)
    ov_scores, ov_maps = create_detector("exported", path=str(folder), engine="openvino").score(images)
    np.testing.assert_allclose(ov_scores, ort_scores, atol=1e-6)
    for a, b in zip(ov_maps, ort_maps):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_export_capability_is_validated():
    from pydantic import ValidationError

    from pyimgano import DetectorCapabilities

    with pytest.raises(ValidationError, match="export_formats needs an exporter"):
        DetectorCapabilities(export_formats=("onnx",))
    with pytest.raises(ValidationError, match="are not among"):
        DetectorCapabilities(exporter="pkg.mod:export", export_formats=("tensorrt",))


BOUNDED_PREDICT = """
import resource, sys
limit = 3 * 1024**3  # a bounded address space: a 16384 x 16384 float input alone would need 3 GiB
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from pyimgano.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("resize", [16384, 100000])
def test_a_geometry_beyond_the_largest_network_input_is_refused_in_bounded_memory(tmp_path, image_file, resize):
    import subprocess
    import sys

    from pyimgano.runtime.manifest import MAX_GRAPH_SIDE

    folder = make_export(tmp_path / "m", size=None, resize=32)
    manifest = json.loads((folder / EXPORT_FILE).read_text())
    manifest["geometry"]["resize"] = resize  # checksum renewed: only the bound can stop it
    rewrite_manifest(folder, manifest)
    proc = subprocess.run([sys.executable, "-c", BOUNDED_PREDICT, "predict", "--model", str(folder), str(image_file),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (
        f"error: {folder / EXPORT_FILE}: invalid manifest: geometry: resize {resize}: sides must be whole numbers "
        f"between 1 and {MAX_GRAPH_SIDE} (the largest network input)")


@pytest.mark.parametrize("change, problem", [
    (lambda m: m.update(max_batch=10**9), "max_batch: Input should be less than or equal to 1024"),
    (lambda m: m["input"].update(min_size=0), "input.min_size: Input should be greater than or equal to 1"),
    (lambda m: m["input"].update(pixel_divisor=-1), "input.pixel_divisor: Input should be greater than 0"),
    (lambda m: m["geometry"].update(multiple=10**6), "geometry: multiple 1000000: must be a whole number"),
    (lambda m: m["files"]["model.onnx"].update(sha256="abc"), "files.model.onnx.sha256: String should match"),
])
def test_every_number_of_the_manifest_is_bounded(tmp_path, capsys, image_file, change, problem):
    folder = make_export(tmp_path / "m")
    manifest = json.loads((folder / EXPORT_FILE).read_text())
    change(manifest)
    rewrite_manifest(folder, manifest)
    assert problem in _cli_error(capsys, folder, tmp_path, image_file)


def test_an_edited_manifest_is_refused_by_its_own_checksum(tmp_path, capsys, image_file):
    folder = make_export(tmp_path / "m", size=None)
    manifest = json.loads((folder / EXPORT_FILE).read_text())
    assert manifest["content_sha256"] == content_digest(manifest)
    manifest["input"]["pixel_divisor"] = 1.0  # in bounds, but not what was exported
    (folder / EXPORT_FILE).write_text(json.dumps(manifest))
    err = _cli_error(capsys, folder, tmp_path, image_file)
    assert f"{folder / EXPORT_FILE}: does not match its own checksum (content_sha256): edited after export" in err


def test_an_oversized_manifest_is_refused_before_it_is_read(tmp_path, capsys, image_file):
    from pyimgano.runtime.manifest import MAX_MANIFEST_BYTES

    folder = make_export(tmp_path / "m")
    with open(folder / EXPORT_FILE, "r+b") as handle:
        handle.truncate(MAX_MANIFEST_BYTES + 1)
    assert "far more than an export manifest holds" in _cli_error(capsys, folder, tmp_path, image_file)
