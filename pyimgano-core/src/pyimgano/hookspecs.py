"""Hook specifications of the ``pyimgano`` pluggy project.

A plugin is a module listed under the ``pyimgano`` entry-point group. It implements any of
the registration hooks below with the :data:`pyimgano.hookimpl` marker; each hook returns a
list of spec objects. The registry calls each implementation with the arguments it
declares, and only those (pluggy's opt-in arguments; none of these hooks takes any today),
so a spec can grow an argument without breaking the plugins written before it.

The registration module must stay light: it may import pydantic and pyimgano, never torch,
faiss or anomalib. Heavy code is named by the spec's ``factory`` string and imported on
first use. See ``docs/hooks.md`` for a runnable example of each hook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # annotations only: importing the hook marker does not import pydantic
    from pyimgano.specs import CommandSpec, DatasetSpec, DetectorSpec, MetricSpec, PostprocessorSpec

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


@hookspec
def pyimgano_register_commands() -> list[CommandSpec]:
    """Return the sub-commands this plugin adds to the ``pyimgano`` command line.

    Returns:
        A list of :class:`pyimgano.CommandSpec`. ``factory`` names a module
        (``"package.module"``) or object (``"package.module:attr"``) with
        ``add_arguments(parser)``, which adds the command's options to its
        :class:`argparse.ArgumentParser`, and ``run(args) -> int``, which runs it and returns
        the exit code. Only the chosen command's factory is imported; ``pyimgano --help``
        and ``list-plugins`` read ``name`` and ``summary`` alone. A name registered by two
        plugins is an error that names both when the command is run.
    """


HOOK_KINDS: dict[str, str] = {
    "pyimgano_register_detectors": "detector",
    "pyimgano_register_datasets": "dataset",
    "pyimgano_register_metrics": "metric",
    "pyimgano_register_postprocessors": "postprocessor",
    "pyimgano_register_commands": "command",
}
