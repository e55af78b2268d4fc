"""Export a saved detector for the torch-free runtime (``pyimgano export``).

A detector's spec says whether it can be exported: ``capabilities.exporter`` names the
plugin function that writes the fitted detector as an ONNX graph and returns a
:class:`~pyimgano.runtime.manifest.GraphSpec`; ``capabilities.export_formats`` lists the
formats (``onnx``; ``openvino``, the OpenVINO IR converted from that graph). This module
runs the exporter, converts the graph when asked, writes the manifest (with every file's
checksum, the source detector and its threshold), then scores two generated check images with
the source and the runtime and refuses an export whose outputs differ. The folder is written
as the source was: an inspection pipeline (:mod:`pyimgano.pipeline`) becomes the same pipeline
with the runtime detector in place of the source's (its fitted post-processing and both
thresholds unchanged), a plain detector folder the runtime detector alone, so
:func:`pyimgano.load` and ``pyimgano predict`` open it like the source. It appears only when
all of it succeeded.
"""

from __future__ import annotations

import importlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pyimgano.errors import ExportError, validation_problems

SCORE_RTOL = 1e-4
"""Largest relative difference of an image score, runtime vs source, that an export passes."""
MAP_ATOL = 1e-3
"""Largest absolute difference of a map value, per unit of the source map's largest magnitude (at least 1)."""


def exportable_detectors() -> dict[str, tuple[str, ...]]:
    """Registered detectors that can be exported, with their formats."""
    from pyimgano.plugins import get_registry

    registry = get_registry(strict=False)
    out = {}
    for name, (spec, _) in sorted(registry.components("detector").items()):
        if spec.capabilities.exporter and spec.capabilities.export_formats:
            out[name] = tuple(spec.capabilities.export_formats)
    return out


def _describe_exportable() -> str:
    found = exportable_detectors()
    if not found:
        return "no installed detector can be exported"
    return "detectors that can: " + ", ".join(f"{name} ({', '.join(fmts)})" for name, fmts in found.items())


def check_images(size: tuple[int, int]) -> list[np.ndarray]:
    """Two seeded RGB test images, smooth structure plus noise, larger than ``size`` (one not square): maps
    are only enlarged, where every detector's map resize agrees with :func:`pyimgano.preprocess.resize_map`."""
    rng = np.random.default_rng(0)
    height, width = size
    images = []
    for h, w in ((height * 5 // 4, width * 5 // 4), (height * 11 // 10, width * 13 // 10)):
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        base = 127 + 60 * np.sin(xx / 7.0)[..., None] * np.cos(yy / 11.0)[..., None] * np.array([1.0, 0.7, 0.4])
        spot = 80 * np.exp(-(((yy - h * 0.3) ** 2) + (xx - w * 0.6) ** 2) / (2 * (0.05 * h) ** 2))[..., None]
        noise = rng.normal(0, 12, (h, w, 3))
        images.append(np.clip(base + spot + noise, 0, 255).astype(np.uint8))
    return images


def compare(source: Any, runtime: Any, images: list[np.ndarray]) -> dict[str, Any]:
    """Largest score (relative) and map (absolute, scaled) differences, runtime vs source."""
    src_scores, src_maps = source.score(images)
    rt_scores, rt_maps = runtime.score(images)
    scale = np.maximum(np.abs(src_scores), 1e-12)
    result: dict[str, Any] = {
        "images": [list(img.shape[:2]) for img in images],
        "max_score_rel_diff": float(np.max(np.abs(rt_scores - src_scores) / scale)),
        "max_map_abs_diff": None,
        "map_scale": None,
    }
    if src_maps is not None and rt_maps is not None:
        diffs = [float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(rt_maps, src_maps)]
        result["max_map_abs_diff"] = max(diffs)
        result["map_scale"] = max(1.0, max(float(np.max(np.abs(m))) for m in src_maps))
    return result


def export_model(
    model_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    format: str = "onnx",
    check: bool = True,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Export the model saved in ``model_dir`` (a pipeline or a plain detector folder) to
    ``out_dir``, which is replaced only when the export is complete and checked."""
    import tempfile

    from pyimgano import __version__
    from pyimgano.detector import check_model_output, load_detector
    from pyimgano.pipeline import PIPELINE_FILE
    from pyimgano.pipeline import load as load_pipeline
    from pyimgano.plugins import get_registry
    from pyimgano.runtime.manifest import ExportManifest, SourceInfo, file_entry, write_manifest

    say = log or (lambda _message: None)
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if out_dir.resolve() == model_dir.resolve():
        raise ExportError(f"{out_dir}: the export would replace the model it exports; choose another --out")
    check_model_output(out_dir)  # the save at the end would refuse it: say so before exporting
    pipeline = load_pipeline(model_dir) if (model_dir / PIPELINE_FILE).is_file() else None
    detector = pipeline.detector if pipeline is not None else load_detector(model_dir)
    name = detector.component
    spec, record = get_registry().resolve("detector", name)
    caps = spec.capabilities
    if name == "core:exported":
        raise ExportError(f"{model_dir}: already an export (written by pyimgano export); export the model it came from")
    if not caps.exporter or not caps.export_formats:
        raise ExportError(f"detector {name} cannot be exported; {_describe_exportable()}")
    if format not in caps.export_formats:
        raise ExportError(f"detector {name} exports to {', '.join(caps.export_formats)}, not {format!r}")
    module_name, _, attr = caps.exporter.partition(":")
    try:
        exporter = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ExportError(f"detector {name}: exporter {caps.exporter} cannot be imported ({exc})") from None
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.graph-", dir=out_dir.parent))
    try:
        say(f"writing the graph of {name}")
        graph = _graph_spec(caps.exporter, exporter(detector, staging))
        refused = _refused_note(graph)
        if refused:
            graph.notes.append(refused)
        if format == "openvino":
            say("converting the graph to OpenVINO IR")
            graph = _to_openvino(staging, graph)
        files = {graph.graph: file_entry(staging / graph.graph)}
        if format == "openvino":
            weights = Path(graph.graph).with_suffix(".bin").name
            files[weights] = file_entry(staging / weights)
        manifest = ExportManifest(
            **graph.model_dump(),
            export_format=format,
            files=files,
            source=SourceInfo(
                detector=name,
                plugin=record.name,
                plugin_version=record.version,
                params=_jsonable(detector),
                threshold=detector.threshold_,
            ),
        )
        manifest.exported_with.setdefault("pyimgano", __version__)
        write_manifest(staging, manifest)
        runtime = _runtime_for(staging, format)
        exported = None if pipeline is None else _runtime_pipeline(pipeline, runtime)
        if check:
            say("comparing the runtime with the source on two check images")
            manifest.check = _check(name, detector, runtime, graph, pipeline, exported)
            write_manifest(staging, manifest)
        # the folder is written whole, as the source was: the runtime detector (its files
        # copied from the staging folder) and, for a pipeline, its post-processing and thresholds
        (exported or runtime).save(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def _runtime_pipeline(pipeline: Any, runtime: Any) -> Any:
    """The source pipeline with the runtime in place of its detector: the same fitted
    post-processing and thresholds."""
    import copy
    import dataclasses

    exported = copy.copy(pipeline)
    exported.detector = runtime
    exported.traits = dataclasses.replace(pipeline.traits, name=runtime.component)
    return exported


def _refused_note(graph: Any) -> str | None:
    """What the runtime will refuse that the source scores, said at export time (a manifest note)."""
    from pyimgano.preprocess import Preprocess
    from pyimgano.runtime.detector import refused_inputs

    refused = refused_inputs(Preprocess.model_validate(graph.geometry), graph.input.min_size)
    return None if refused is None else (f"the export refuses {refused}, which the source detector scores; "
                                         "predict with the source model for those")


def _graph_spec(exporter: str, returned: Any) -> Any:
    from pydantic import ValidationError

    from pyimgano.runtime.manifest import GraphSpec

    try:
        return GraphSpec.model_validate(returned)
    except ValidationError as exc:
        raise ExportError(f"exporter {exporter} returned an invalid graph description: "
                          f"{validation_problems(exc)}") from None


def _jsonable(detector: Any) -> dict[str, Any]:
    from pyimgano.detector import _jsonable_params

    return _jsonable_params(detector)


def _runtime_for(directory: Path, format: str) -> Any:
    from pyimgano.factories import create_detector

    runtime = create_detector("core:exported", engine="openvino" if format == "openvino" else "onnxruntime")
    runtime._load_files(directory)
    return runtime


def _check(name: str, detector: Any, runtime: Any, graph: Any, pipeline: Any = None,
           exported: Any = None) -> dict[str, Any]:
    from pyimgano.preprocess import Preprocess

    geometry = Preprocess.model_validate(graph.geometry)
    size = geometry.output_shape((256, 256)) if geometry.resize is not None else (256, 256)
    images = check_images(size)
    reference = detector.export_reference()
    result = compare(reference, runtime, images)
    if reference is not detector:
        # what the source's own approximation changes on the same images (not the export's doing)
        approx = compare(reference, detector, images)
        result["source_vs_reference"] = {key: approx[key] for key in ("max_score_rel_diff", "max_map_abs_diff")}
    problems = []
    if result["max_score_rel_diff"] > SCORE_RTOL:
        problems.append(f"scores differ by {result['max_score_rel_diff']:.2e} relative (tolerance {SCORE_RTOL:g})")
    if result["max_map_abs_diff"] is not None and result["max_map_abs_diff"] > MAP_ATOL * result["map_scale"]:
        problems.append(f"maps differ by {result['max_map_abs_diff']:.2e} "
                        f"(tolerance {MAP_ATOL:g} x {result['map_scale']:.3g})")
    if problems:
        raise ExportError(f"the export of {name} does not reproduce the source detector: {'; '.join(problems)}; "
                          "nothing written (--no-check writes it anyway)")
    if pipeline is not None:
        result["pipeline"] = compare_pipelines(pipeline, exported, images)
    return result


def compare_pipelines(source: Any, exported: Any, images: list[np.ndarray]) -> dict[str, Any]:
    """Post-processed maps, labels and mask pixels of two pipelines on the same images."""
    a, b = source.predict(images), exported.predict(images)
    out: dict[str, Any] = {"label_mismatches": None, "max_postprocessed_map_abs_diff": None,
                           "mask_pixel_mismatches": None}
    if a.labels is not None and b.labels is not None:
        out["label_mismatches"] = int(np.sum(np.asarray(a.labels) != np.asarray(b.labels)))
    if a.maps is not None and b.maps is not None:
        out["max_postprocessed_map_abs_diff"] = max(float(np.max(np.abs(x - y))) for x, y in zip(a.maps, b.maps))
    if a.masks is not None and b.masks is not None:
        out["mask_pixel_mismatches"] = int(sum(np.sum(x != y) for x, y in zip(a.masks, b.masks)))
    return out


def _to_openvino(directory: Path, graph: Any) -> Any:
    try:
        import openvino as ov
    except ImportError:
        raise ExportError("--format openvino needs the openvino package: pip install openvino") from None
    source = directory / graph.graph
    target = source.with_suffix(".xml")
    try:
        model = ov.convert_model(str(source))
        ov.save_model(model, str(target), compress_to_fp16=False)  # f32 weights: parity with the source
    except Exception as exc:  # noqa: BLE001
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(f"{source}: OpenVINO cannot convert the graph: {first}") from None
    source.unlink()
    data = graph.model_dump()
    data["graph"] = target.name
    data["exported_with"] = {**graph.exported_with, "openvino": ov.__version__}
    return type(graph).model_validate(data)
