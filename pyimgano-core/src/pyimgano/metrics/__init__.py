"""Image- and pixel-level anomaly detection metrics, ground truth first (scikit-learn style).

Image level: ``image_auroc(labels, scores)``, ``image_ap``, ``image_f1_max`` (value,
threshold). Pixel level: ``pixel_auroc(masks, maps)``, ``pixel_ap``, ``pixel_f1_max``
(value, threshold) and ``aupro(masks, maps, fpr_limit=...)`` (default in
:mod:`pyimgano.metrics.params`); ``pixel_metrics`` computes all pixel metrics at once.
Invalid input raises :class:`pyimgano.MetricError`; a metric that is undefined for its
input (e.g. a single class) raises too, unless the caller passes ``nan_on_undefined=True``
(NaN and an :class:`UndefinedMetricWarning`). See docs/metrics.md. The functions load on
first access, so importing the params models stays light.
"""

from __future__ import annotations

from pyimgano._lazy import lazy_exports

_LAZY = {
    "UndefinedMetricWarning": "pyimgano.metrics._inputs",
    "aupro": "pyimgano.metrics.pro",
    "image_ap": "pyimgano.metrics.image",
    "image_auroc": "pyimgano.metrics.image",
    "image_f1_max": "pyimgano.metrics.image",
    "pixel_ap": "pyimgano.metrics.pixel",
    "pixel_auroc": "pyimgano.metrics.pixel",
    "pixel_f1_max": "pyimgano.metrics.pixel",
    "pixel_metrics": "pyimgano.metrics.pixel",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports("pyimgano.metrics", _LAZY, globals())
