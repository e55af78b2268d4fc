"""The core's built-in plugin: metrics and post-processors, registered like any other."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from pyimgano.hookspecs import hookimpl
from pyimgano.specs import MetricSpec, NoParams


class AuproParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

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
