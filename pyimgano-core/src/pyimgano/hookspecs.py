"""Hook specifications of the ``pyimgano`` pluggy project.

A plugin is a module listed under the ``pyimgano`` entry-point group. It implements any of
the four registration hooks below with the :data:`pyimgano.hookimpl` marker; each hook
returns a list of spec objects. Implementations may accept fewer arguments than the spec
(none of these hooks takes any today), so the specs can grow without breaking plugins.

The registration module must stay light: it may import pydantic and pyimgano, never torch,
faiss or anomalib. Heavy code is named by the spec's ``factory`` string and imported on
first use. See ``docs/hooks.md`` for a runnable example of each hook.
"""

from __future__ import annotations

import pluggy

from pyimgano.specs import DatasetSpec, DetectorSpec, MetricSpec, PostprocessorSpec

PROJECT_NAME = "pyimgano"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def pyimgano_register_detectors() -> list[DetectorSpec]:
    """Return the detectors this plugin provides.

    Returns:
        A list of :class:`pyimgano.DetectorSpec`. ``factory`` must name a class (or
        callable) that accepts the params model's fields as keyword arguments and returns
        an object with the detector API (``fit``, ``decision_function``, ``predict``,
        ``predict_anomaly_map``); subclassing :class:`pyimgano.Detector` gives all of it.
    """


@hookspec
def pyimgano_register_datasets() -> list[DatasetSpec]:
    """Return the data sets this plugin provides.

    Returns:
        A list of :class:`pyimgano.DatasetSpec`. ``factory`` is called as
        ``factory(root=..., category=..., **params)`` and returns an object with ``.info``
        (:class:`pyimgano.DatasetInfo`), ``.train`` and ``.test`` (sequences of
        :class:`pyimgano.DatasetSample`) and ``.load(sample)`` returning
        ``(image, mask_or_None)`` arrays.
    """


@hookspec
def pyimgano_register_metrics() -> list[MetricSpec]:
    """Return the metrics this plugin provides.

    Returns:
        A list of :class:`pyimgano.MetricSpec`. ``factory`` names a function called as
        ``f(ground_truth, predictions, **params)``: image-level metrics take 0/1 labels and
        scores, pixel-level ones N x H x W masks and maps. It returns a float (or a tuple
        whose first item is the value).
    """


@hookspec
def pyimgano_register_postprocessors() -> list[PostprocessorSpec]:
    """Return the anomaly-map post-processing steps this plugin provides.

    Returns:
        A list of :class:`pyimgano.PostprocessorSpec`. ``factory(**params)`` returns an
        object with ``__call__(maps) -> maps`` on N x H x W float arrays (and ``fit(maps)``
        when the spec says ``fits_statistics``).
    """


HOOK_KINDS: dict[str, str] = {
    "pyimgano_register_detectors": "detector",
    "pyimgano_register_datasets": "dataset",
    "pyimgano_register_metrics": "metric",
    "pyimgano_register_postprocessors": "postprocessor",
}
