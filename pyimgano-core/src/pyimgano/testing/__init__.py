"""The conformance kit for pyimgano plugins (in the spirit of scikit-learn's estimator checks).

Detectors::

    from pyimgano.testing import check_detector, parametrize_with_checks

    results = check_detector("myplugin:mydetector", known_failures={"check_maps_locate_defect": "maps are coarse"})

    @parametrize_with_checks(["myplugin:mydetector"])
    def test_conformance(component, check):
        check(component)

Data sets, metrics and post-processors: :func:`check_dataset`, :func:`check_metric`,
:func:`check_postprocessor`; a whole plugin: :func:`check_plugin`. Every check is a plain
function that raises :class:`CheckFailed` (an ``AssertionError``) naming itself.
"""

from __future__ import annotations

from pyimgano.testing._core import Check, CheckFailed, CheckResult
from pyimgano.testing.components import (
    DATASET_CHECKS,
    METRIC_CHECKS,
    POSTPROCESSOR_CHECKS,
    check_dataset,
    check_metric,
    check_postprocessor,
)
from pyimgano.testing.data import CheckImages, make_check_images
from pyimgano.testing.detectors import (
    DETECTOR_CHECKS,
    DetectorTarget,
    check_detector,
    check_names,
    detector_target,
    parametrize_with_checks,
    seed_everything,
)
from pyimgano.testing.plugins import check_plugin

__all__ = [
    "DATASET_CHECKS",
    "DETECTOR_CHECKS",
    "METRIC_CHECKS",
    "POSTPROCESSOR_CHECKS",
    "Check",
    "CheckFailed",
    "CheckImages",
    "CheckResult",
    "DetectorTarget",
    "check_dataset",
    "check_detector",
    "check_metric",
    "check_names",
    "check_plugin",
    "check_postprocessor",
    "detector_target",
    "make_check_images",
    "parametrize_with_checks",
    "seed_everything",
]
