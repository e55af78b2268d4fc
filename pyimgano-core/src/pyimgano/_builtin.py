"""The core's built-in plugin: metrics, post-processors, commands and the runtime detector of
exported models, registered like any other."""

from __future__ import annotations

from pyimgano.hookspecs import hookimpl
from pyimgano.metrics.params import AuproParams
from pyimgano.postprocess import params as pp
from pyimgano.runtime.params import ExportedParams
from pyimgano.specs import CommandSpec, DetectorCapabilities, DetectorSpec, MetricSpec, NoParams, PostprocessorSpec


@hookimpl
def pyimgano_register_detectors() -> list[DetectorSpec]:
    return [
        DetectorSpec(
            name="exported",
            summary="Runs a model written by pyimgano export with onnxruntime or OpenVINO (no torch; "
                    "pyimgano-core[onnx]); fit opens path= and trains nothing",
            factory="pyimgano.runtime.detector:ExportedDetector",
            params=ExportedParams,
            # fitted at export time: the kit, which fits on generated images, has no exported folder
            # to give it (its fitting checks are not applicable); tests/export checks it against its sources
            capabilities=DetectorCapabilities(pixel_maps=True, save_load=True, cpus=1, fits_on_images=False),
        )
    ]


@hookimpl
def pyimgano_register_metrics() -> list[MetricSpec]:
    # name, column title, headline, returns (value, threshold), summary; image level first
    image = [
        ("image_auroc", "img AUROC", True, False, "Area under the ROC curve of image scores"),
        ("image_ap", "img AP", False, False, "Average precision of image scores"),
        ("image_f1_max", "img F1", False, True, "Best F1 over all thresholds of image scores"),
    ]
    pixel = [
        ("pixel_auroc", "px AUROC", True, False, "Area under the ROC curve over all pixels"),
        ("pixel_ap", "px AP", False, False, "Average precision over all pixels"),
        ("pixel_f1_max", "px F1", False, True, "Best F1 over all thresholds over all pixels"),
    ]
    specs = [
        MetricSpec(name=name, summary=summary, factory=f"pyimgano.metrics:{name}", params=NoParams, level=level,
                   title=title, headline=headline, returns_threshold=returns_threshold)
        for level, rows in (("image", image), ("pixel", pixel))
        for name, title, headline, returns_threshold, summary in rows
    ]
    specs.append(
        MetricSpec(
            name="aupro",
            summary="Area under the per-region-overlap curve up to an FPR limit, normalised (MVTec AD)",
            factory="pyimgano.metrics:aupro",
            params=AuproParams,
            level="pixel",
            title="AUPRO@{fpr_limit}",
            headline=True,
        )
    )
    return specs


@hookimpl
def pyimgano_register_postprocessors() -> list[PostprocessorSpec]:
    return [
        PostprocessorSpec(name=row.name, summary=row.summary, factory=f"pyimgano.postprocess.steps:{row.class_name}",
                          params=row.params, fits_statistics=row.fits_statistics)
        for row in pp.BUILTIN_STEPS
    ]


@hookimpl
def pyimgano_register_commands() -> list[CommandSpec]:
    commands = [
        ("list-plugins", "list_plugins", "list installed plugins and what they register"),
        ("check-plugin", "check_plugin", "run the conformance checks against a plugin or component"),
        ("new-plugin", "new_plugin", "create a plugin distribution from the template"),
        ("benchmark", "benchmark", "benchmark detectors on data sets: metrics, tables, report.html"),
        ("fit", "fit", "train a detector on a folder of good images and save it"),
        ("predict", "predict", "score images with a saved model: CSV, heatmaps, masks"),
        ("export", "export", "export a saved model to ONNX or OpenVINO for the torch-free runtime"),
        ("serve", "serve", "keep a saved model loaded and score images over HTTP, with a review page"),
        ("watch", "watch", "score every image that appears in a folder, exactly once, into CSV and JSONL"),
    ]
    return [CommandSpec(name=name, summary=summary, factory=f"pyimgano.cli.{module}") for name, module, summary in commands]
