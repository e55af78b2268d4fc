"""The core's built-in plugin: metrics, post-processors and commands, registered like any other."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from pyimgano.hookspecs import hookimpl
from pyimgano.postprocess import params as pp
from pyimgano.specs import CommandSpec, MetricSpec, NoParams, PostprocessorSpec


class AuproParams(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    fpr_limit: float = Field(0.3, gt=0.0, le=1.0, description="integrate the PRO curve up to this FPR")


@hookimpl
def pyimgano_register_metrics() -> list[MetricSpec]:
    image = [
        ("image_auroc", "Area under the ROC curve of image scores"),
        ("image_ap", "Average precision of image scores"),
        ("image_f1_max", "Best F1 over all thresholds of image scores (value, threshold)"),
    ]
    pixel = [
        ("pixel_auroc", "Area under the ROC curve over all pixels"),
        ("pixel_ap", "Average precision over all pixels"),
        ("pixel_f1_max", "Best F1 over all thresholds over all pixels (value, threshold)"),
    ]
    specs = [
        MetricSpec(name=n, summary=s, factory=f"pyimgano.metrics:{n}", params=NoParams, level="image")
        for n, s in image
    ]
    specs += [
        MetricSpec(name=n, summary=s, factory=f"pyimgano.metrics:{n}", params=NoParams, level="pixel")
        for n, s in pixel
    ]
    specs.append(
        MetricSpec(
            name="aupro",
            summary="Area under the per-region-overlap curve up to an FPR limit, normalised (MVTec AD)",
            factory="pyimgano.metrics:aupro",
            params=AuproParams,
            level="pixel",
        )
    )
    return specs


@hookimpl
def pyimgano_register_postprocessors() -> list[PostprocessorSpec]:
    steps = [
        ("minmax", "MinMax", pp.MinMaxParams, True,
         "Min-max normalisation by training/calibration maps (or per image)"),
        ("percentile", "Percentile", pp.PercentileParams, True,
         "Robust normalisation: low/high percentiles of training/calibration maps (or per image) to 0/1"),
        ("standardize", "Standardize", pp.StandardizeParams, True,
         "z-score by mean/std (or median/MAD) of training/calibration maps"),
        ("gaussian", "Gaussian", pp.GaussianParams, False, "Gaussian smoothing of each map"),
        ("open", "Open", pp.MorphologyParams, False, "Grey-level morphological opening"),
        ("close", "Close", pp.MorphologyParams, False, "Grey-level morphological closing"),
        ("remove_small", "RemoveSmall", pp.RemoveSmallParams, False,
         "Remove connected components smaller than an area"),
        ("threshold", "Threshold", pp.ThresholdParams, False, "Binary mask of scores above a value"),
    ]
    return [
        PostprocessorSpec(name=name, summary=summary, factory=f"pyimgano.postprocess.steps:{cls}",
                          params=params, fits_statistics=fits)
        for name, cls, params, fits, summary in steps
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
    ]
    return [CommandSpec(name=name, summary=summary, factory=f"pyimgano.cli.{module}") for name, module, summary in commands]
