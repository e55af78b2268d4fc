"""pyimgano export on the faiss detectors: the runtime gives the source's scores, maps and labels."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pyimgano import load_detector
from pyimgano.cli import main
from pyimgano.export import check_images, compare
from pyimgano.pipeline import detector_traits
from pyimgano_testutils import optional

pytestmark = [pytest.mark.torch]
optional("onnxruntime")

SCORE_RTOL, MAP_ATOL = 1e-4, 1e-3


def _test_images(images_dir: Path) -> list[Path]:
    return sorted((images_dir / "test").glob("*.png"))


def test_patchcore_runtime_matches_the_source(patchcore_export, images_dir):
    source_dir, exported = patchcore_export
    source, runtime = load_detector(source_dir), load_detector(exported)
    assert runtime.component == "core:exported" and runtime.threshold_ == source.threshold_
    files = _test_images(images_dir)
    s_scores, s_maps = source.score(files)
    r_scores, r_maps = runtime.score(files)
    np.testing.assert_allclose(r_scores, s_scores, rtol=SCORE_RTOL)
    for a, b in zip(r_maps, s_maps):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=MAP_ATOL)
    assert list(runtime.predict(files)) == list(source.predict(files))
    manifest = json.loads((exported / "pyimgano-export.json").read_text())
    assert manifest["source"]["detector"] == "faiss:patchcore" and manifest["source"]["plugin_version"]
    assert manifest["check"]["max_score_rel_diff"] < SCORE_RTOL and manifest["max_batch"] >= 1
    # what the runtime refuses and the source scores is said at export time
    from pyimgano.preprocess import Preprocess
    from pyimgano.runtime.detector import refused_inputs

    refused = refused_inputs(Preprocess(**manifest["geometry"]), manifest["input"]["min_size"])
    assert refused is not None and any(f"the export refuses {refused}" in note for note in manifest["notes"])


def test_knn_runtime_matches_the_source(knn_export, images_dir):
    source_dir, exported = knn_export
    files = _test_images(images_dir)
    source, runtime = load_detector(source_dir), load_detector(exported)
    np.testing.assert_allclose(runtime.decision_function(files), source.decision_function(files), rtol=SCORE_RTOL)
    assert runtime.score(files)[1] is None
    # core:exported may have maps; this graph has none, and the instance, its traits and predict agree
    assert not runtime.supports_maps and not detector_traits(runtime).pixel_maps


@pytest.mark.slow
@pytest.mark.parametrize("params", [{"reweight": True, "target_dim": 48, "sigma": 2.0}, {"sigma": 0.0}])
def test_patchcore_options_export(tmp_path, images_dir, params):
    from pyimgano import create_detector
    from pyimgano.export import export_model

    small = {"backbone": "efficientnet_lite0", "image_size": 64, "progress": False}
    detector = create_detector("faiss:patchcore", **small, coreset_ratio=0.5, **params)
    detector.fit(sorted((images_dir / "train").glob("*.png")))
    exported = export_model(detector.save(tmp_path / "source"), tmp_path / "exported")
    result = compare(detector, load_detector(exported), check_images((64, 64)))
    assert result["max_score_rel_diff"] < SCORE_RTOL and result["max_map_abs_diff"] < MAP_ATOL * result["map_scale"]


@pytest.mark.slow
def test_the_default_exports_past_the_exact_search_switch(tmp_path, images_dir, monkeypatch):
    """index='auto' past its switch searches approximately; the graph searches exactly. The export
    compares the graph with exact search, records what the approximation changes, and succeeds; the
    context view (context=2 here, the default's on large inputs) is in the graph."""
    import pyimgano_faiss.search
    from pyimgano import create_detector
    from pyimgano.export import export_model

    monkeypatch.setattr(pyimgano_faiss.search, "AUTO_FLAT_EVALUATIONS", 64)  # every bank is "large"
    detector = create_detector("faiss:patchcore", backbone="efficientnet_lite0", image_size=128, context=2,
                               coreset_ratio=0.5, progress=False)
    detector.fit(sorted((images_dir / "train").glob("*.png")))
    assert detector.export_reference() is not detector  # approximate search in the source
    exported = export_model(detector.save(tmp_path / "source"), tmp_path / "exported")
    manifest = json.loads((exported / "pyimgano-export.json").read_text())
    assert "source_vs_reference" in manifest["check"] and any("approximate" in n for n in manifest["notes"])
    runtime = load_detector(exported)
    images = check_images((128, 128))
    result = compare(detector.export_reference(), runtime, images)
    assert result["max_score_rel_diff"] < SCORE_RTOL and result["max_map_abs_diff"] < MAP_ATOL * result["map_scale"]
    # image scores agree with the approximate source too (its largest distances are exact)
    np.testing.assert_allclose(runtime.decision_function(images), detector.decision_function(images), rtol=SCORE_RTOL)


def test_the_graph_takes_any_spatial_size(patchcore_export):
    """Dynamic spatial axes: a geometry that keeps the aspect ratio can run the same graph."""
    import onnxruntime as ort

    _, exported = patchcore_export
    session = ort.InferenceSession(str(exported / "model.onnx"), providers=["CPUExecutionProvider"])
    for shape in [(1, 3, 64, 64), (3, 3, 72, 100), (2, 3, 97, 65)]:
        score, amap = session.run(None, {"images": np.random.default_rng(0).random(shape, dtype=np.float32)})
        assert score.shape == (shape[0],) and amap.shape == (shape[0], *shape[2:])


def test_predict_on_the_export_writes_the_sources_predictions(patchcore_export, images_dir, tmp_path):
    source_dir, exported = patchcore_export
    for model, out in ((source_dir, "source"), (exported, "runtime")):
        assert main(["predict", "--model", str(model), str(images_dir / "test"), "--out", str(tmp_path / out)]) == 0
    rows = {}
    for out in ("source", "runtime"):
        with open(tmp_path / out / "predictions.csv", newline="") as handle:
            rows[out] = list(csv.DictReader(handle))
    for a, b in zip(rows["runtime"], rows["source"]):
        assert a["image"] == b["image"] and a["label"] == b["label"]
        assert float(a["score"]) == pytest.approx(float(b["score"]), rel=SCORE_RTOL)
        assert (tmp_path / "runtime" / a["mask"]).is_file() and (tmp_path / "runtime" / a["heatmap"]).is_file()


def test_benchmark_runs_the_exported_detector(patchcore_export, tmp_path):
    _, exported = patchcore_export
    out = tmp_path / "bench"
    rc = main(["benchmark", "--detector", "exported", "--set", f"path={exported}", "--dataset", "synthetic",
               "--category", "brick", "--image-size", "64", "--out", str(out), "--no-progress", "--in-process"])
    assert rc == 0
    (run,) = json.loads((out / "results.json").read_text())["runs"]
    assert run["detector"] == "core:exported" and run["status"] == "ok"
    assert 0.0 <= run["metrics"]["image_auroc"] <= 1.0 and run["metrics"]["pixel_auroc"] is not None


def test_a_detector_that_cannot_export_names_those_that_can(knn_export, tmp_path, capsys, monkeypatch):
    from pyimgano.plugins import Registry

    source, _ = knn_export
    resolve = Registry.resolve

    def without_exporter(self, kind, name):  # faiss:knn as a plugin that declares no exporter would register it
        spec, record = resolve(self, kind, name)
        if name == "faiss:knn":
            spec = spec.model_copy(update={"capabilities": spec.capabilities.model_copy(update={"exporter": None})})
        return spec, record

    monkeypatch.setattr(Registry, "resolve", without_exporter)
    rc = main(["export", "--model", str(source), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "detector faiss:knn cannot be exported; detectors that can: " in err
    assert "faiss:patchcore (onnx, openvino)" in err
    assert not (tmp_path / "out").exists()


def test_an_export_is_not_exported_again(patchcore_export, tmp_path, capsys):
    _, exported = patchcore_export
    rc = main(["export", "--model", str(exported), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == f"error: {exported}: already an export (written by pyimgano export); export the model it came from"
    assert not (tmp_path / "out").exists()


def test_an_out_that_is_a_file_or_a_folder_of_other_files_is_refused_before_exporting(patchcore_export, tmp_path,
                                                                                     capsys, monkeypatch):
    import pyimgano_faiss.export

    source, _ = patchcore_export
    monkeypatch.setattr(pyimgano_faiss.export, "export_patchcore", lambda *a, **k: pytest.fail("the graph was written"))
    afile = tmp_path / "notes.txt"
    afile.write_text("keep me")
    assert main(["export", "--model", str(source), "--out", str(afile)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {afile}: exists and is not a folder; choose another output path"
    other = tmp_path / "project"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(["export", "--model", str(source), "--out", str(other)]) == 2
    assert "(notes.txt) and is not a saved pyimgano model" in capsys.readouterr().err
    assert afile.read_text() == "keep me" and (other / "notes.txt").read_text() == "mine"


def test_export_list_and_json(capsys):
    assert main(["export", "--list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["faiss:patchcore"] == ["onnx", "openvino"]


@pytest.mark.slow
def test_openvino_export_matches_the_source(patchcore_export, images_dir, tmp_path):
    optional("openvino")
    source_dir, _ = patchcore_export
    assert main(["export", "--model", str(source_dir), "--format", "openvino", "--out", str(tmp_path / "ov")]) == 0
    assert {p.name for p in (tmp_path / "ov").iterdir()} >= {"model.xml", "model.bin", "pyimgano-export.json"}
    files = _test_images(images_dir)
    runtime, source = load_detector(tmp_path / "ov"), load_detector(source_dir)
    assert runtime._engine.name == "openvino"
    np.testing.assert_allclose(runtime.decision_function(files), source.decision_function(files), rtol=SCORE_RTOL)


def test_the_runtime_imports_no_torch(patchcore_export, images_dir):
    _, exported = patchcore_export
    code = (
        "import sys\n"
        "from pyimgano import load_detector\n"
        f"d = load_detector({str(exported)!r})\n"
        f"s = d.decision_function([{str(_test_images(images_dir)[0])!r}])\n"
        "heavy = sorted(m for m in ('torch', 'timm', 'faiss', 'anomalib', 'pyimgano_faiss.export') if m in sys.modules)\n"
        "print(heavy, float(s[0]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("[] ")


def test_a_pipeline_exports_as_the_same_pipeline_with_the_runtime(tmp_path, images_dir):
    """Post-processing and both thresholds carry over: labels, maps and masks as the source's."""
    import pyimgano
    from pyimgano.export import export_model

    small = {"backbone": "efficientnet_lite0", "image_size": 64, "progress": False, "coreset_ratio": 0.5}
    source = pyimgano.Pipeline("faiss:patchcore", params=small, pixel_threshold="quantile:0.99")
    train = sorted((images_dir / "train").glob("*.png"))
    source.fit(train[:6], val_images=train[6:])
    source.save(tmp_path / "source")
    exported = export_model(tmp_path / "source", tmp_path / "exported")
    runtime = pyimgano.load(exported)
    assert runtime.detector.component == "core:exported"
    assert (runtime.image_threshold_, runtime.pixel_threshold_) == (source.image_threshold_, source.pixel_threshold_)
    assert runtime.postprocessing.to_config(include_state=True) == source.postprocessing.to_config(include_state=True)
    files = _test_images(images_dir)
    a, b = source.predict(files), runtime.predict(files)
    assert list(a.labels) == list(b.labels)
    for x, y, mx, my in zip(a.maps, b.maps, a.masks, b.masks):
        np.testing.assert_allclose(y, x, atol=MAP_ATOL)
        assert int(np.sum(mx != my)) <= 2  # a pixel within float rounding of the threshold may flip
    check = json.loads((exported / "pyimgano-export.json").read_text())["check"]["pipeline"]
    assert check["label_mismatches"] == 0


def test_auto_size_and_kept_aspect_export_and_tiles_are_refused(tmp_path, images_dir):
    from pyimgano import create_detector
    from pyimgano.errors import ExportError
    from pyimgano.export import export_model

    small = {"backbone": "efficientnet_lite0", "progress": False, "coreset_ratio": 0.5}
    train = sorted((images_dir / "train").glob("*.png"))[:4]
    detector = create_detector("faiss:patchcore", **small).fit(train)  # image_size="auto", aspect="keep"
    exported = export_model(detector.save(tmp_path / "auto"), tmp_path / "auto-exported")
    oblong = check_images((48, 96))
    result = compare(detector, load_detector(exported), oblong)
    assert result["max_score_rel_diff"] < SCORE_RTOL and result["max_map_abs_diff"] < MAP_ATOL * result["map_scale"]
    tiled = create_detector("faiss:patchcore", **small, image_size="original", tile_size=32, tile_overlap=0)
    tiled.fit(train)
    with pytest.raises(ExportError, match="tile_size=32 cannot be exported"):
        export_model(tiled.save(tmp_path / "tiled"), tmp_path / "tiled-exported")
