"""Image- and pixel-level anomaly detection metrics, ground truth first (scikit-learn style).

Image level: ``image_auroc(labels, scores)``, ``image_ap``, ``image_f1_max`` (value,
threshold). Pixel level: ``pixel_auroc(masks, maps)``, ``pixel_ap``, ``pixel_f1_max``
(value, threshold) and ``aupro(masks, maps, fpr_limit=0.3)``; ``pixel_metrics`` computes
all pixel metrics at once. Invalid input raises :class:`pyimgano.MetricError`; a metric
that is undefined for its input (e.g. a single class) raises too, unless the caller passes
``nan_on_undefined=True`` (NaN and an :class:`UndefinedMetricWarning`). See docs/metrics.md.
"""

from __future__ import annotations

from pyimgano.metrics._inputs import UndefinedMetricWarning
from pyimgano.metrics.image import image_ap, image_auroc, image_f1_max
from pyimgano.metrics.pixel import pixel_ap, pixel_auroc, pixel_f1_max, pixel_metrics
from pyimgano.metrics.pro import aupro

__all__ = [
    "UndefinedMetricWarning",
    "aupro",
    "image_ap",
    "image_auroc",
    "image_f1_max",
    "pixel_ap",
    "pixel_auroc",
    "pixel_f1_max",
    "pixel_metrics",
]
