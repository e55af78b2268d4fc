"""The benchmark runner: detectors x data sets x categories, metrics, reports.

The pieces, one module each:

- :mod:`~pyimgano.benchmark.config`: what to run (:class:`BenchmarkConfig`, ``--set`` parsing,
  ``bench.toml``) and its expansion into :class:`JobSpec` objects;
- :mod:`~pyimgano.benchmark.job`: :func:`run_job`, one (detector, data set, category) from
  build to metrics, a plain function of a serialisable spec (the executor seam); each job
  fits an inspection pipeline (:class:`pyimgano.Pipeline`) on the train split;
- :mod:`~pyimgano.benchmark.deployed`: figures at the calibrated thresholds, and the curves;
- :mod:`~pyimgano.benchmark.executors`: where jobs run (in this process or a process pool);
- :mod:`~pyimgano.benchmark.results`: the ``results.json`` schema and the output folder;
- :mod:`~pyimgano.benchmark.tables`, :mod:`~pyimgano.benchmark.overlays`,
  :mod:`~pyimgano.benchmark.figures`, :mod:`~pyimgano.benchmark.report`: CSV, Markdown,
  terminal table, JPEG overlays, matplotlib pictures, HTML;
- :mod:`~pyimgano.benchmark.runner`: :func:`run_benchmark`, which ties them together.
"""

from __future__ import annotations

from pyimgano._lazy import lazy_exports

_LAZY = {
    "BenchmarkConfig": "pyimgano.benchmark.config",
    "DatasetEntry": "pyimgano.benchmark.config",
    "DetectorEntry": "pyimgano.benchmark.config",
    "JobSpec": "pyimgano.benchmark.config",
    "default_config": "pyimgano.benchmark.config",
    "run_job": "pyimgano.benchmark.job",
    "LocalExecutor": "pyimgano.benchmark.executors",
    "RunResult": "pyimgano.benchmark.results",
    "ResultStore": "pyimgano.benchmark.results",
    "run_benchmark": "pyimgano.benchmark.runner",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports("pyimgano.benchmark", _LAZY, globals())
