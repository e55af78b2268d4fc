"""Every numeric parameter of every built-in component and setting is bounded by its meaning,
and checked before any work starts (docs/reliability.md, "Round 3")."""

from __future__ import annotations

import time

import pytest
from pydantic import BaseModel, Field

import pyimgano
from pyimgano import InvalidParams
from pyimgano.benchmark.config import BenchmarkConfig, JobSpec
from pyimgano.bounds import VALIDATED_BOUND, Finite, unbounded_numbers
from pyimgano.pipeline.fewshot import FewShotSettings
from pyimgano.pipeline.settings import PipelineSettings
from pyimgano.plugins import KINDS, OWN_PLUGINS, get_registry
from pyimgano.service.settings import ServeSettings, WatchSettings
from pyimgano_testutils import run_cli


def _builtin_models() -> dict[str, type[BaseModel]]:
    models: dict[str, type[BaseModel]] = {
        "PipelineSettings": PipelineSettings, "BenchmarkConfig": BenchmarkConfig, "FewShotSettings": FewShotSettings,
        "ServeSettings": ServeSettings, "WatchSettings": WatchSettings, "JobSpec": JobSpec,
    }
    registry = get_registry()
    for kind in KINDS:
        for qualified, (spec, record) in registry.components(kind).items():
            if record.distribution in OWN_PLUGINS.values() and getattr(spec, "params", None) is not None:
                models[f"{kind} {qualified}"] = spec.params
    return models


def test_every_numeric_parameter_of_the_builtins_has_bounds():
    models = _builtin_models()
    assert any(name.startswith("detector faiss:") for name in models) and "postprocessor core:gaussian" in models
    unbounded = {name: fields for name, model in models.items() if (fields := unbounded_numbers(model))}
    assert unbounded == {}


def test_the_bounds_check_finds_what_is_unbounded():
    class Inner(BaseModel):
        size: int = Field(3, ge=1)

    class Model(BaseModel):
        low_only: float = Field(1.0, gt=0)
        both: int = Field(1, ge=0, le=9)
        finite: Finite = 0.0
        items: list[int] | None = None
        inner: Inner = Inner()
        choice: str | float = "auto"
        flag: bool = False
        by_validator: int = Field(8, ge=8, json_schema_extra={VALIDATED_BOUND: "a limit known at run time"})

    assert unbounded_numbers(Model) == ["low_only", "items[]", "inner.size", "choice"]


@pytest.mark.parametrize("sigma", [1e6, 513.0, float("inf"), float("nan"), 0.0])
def test_a_gaussian_sigma_beyond_any_map_is_refused_before_work(example_plugin, sigma):
    started = time.monotonic()
    with pytest.raises(InvalidParams, match="sigma"):
        pyimgano.Pipeline("example:mad", postprocess=[{"name": "gaussian", "sigma": sigma}])
    assert time.monotonic() - started < 5


def test_few_shot_search_values_are_bounded_as_the_steps_they_become():
    for search in ({"sigma": [2.0, 1e9]}, {"open_size": [3, 10**6]}, {"min_area": [16, 10**12]}):
        with pytest.raises(ValueError, match="less than or equal"):
            FewShotSettings(search=search)
    assert FewShotSettings(search={"sigma": [512.0], "open_size": [1025], "min_area": [100_000_000]})


@pytest.mark.parametrize("value", ["inf", "1e400", "-1", "nan", "604801"])
def test_a_job_timeout_out_of_range_is_one_line(value):
    result = run_cli("benchmark", "--detector", "faiss:knn", "--dataset", "synthetic", "--job-timeout", value)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: invalid benchmark settings: job_timeout: ") and result.stderr.count("\n") == 1


@pytest.mark.parametrize("seed", [-1, 2**32, 2**70])
def test_seeds_are_bounded(example_plugin, seed):
    with pytest.raises(InvalidParams, match="must be a whole number from 0 to 4294967295"):
        pyimgano.Pipeline("example:mad", seed=seed)
    with pytest.raises(ValueError, match="seed"):
        BenchmarkConfig(seed=seed)


def test_a_bounded_detector_parameter_is_refused_before_the_detector_is_built():
    with pytest.raises(InvalidParams, match=r"faiss:patchcore: sigma: Input should be less than or equal to 512"):
        pyimgano.create_detector("faiss:patchcore", sigma=1e6)
    with pytest.raises(InvalidParams, match=r"faiss:knn: seed: Input should be less than or equal to 4294967295"):
        pyimgano.create_detector("faiss:knn", seed=2**40)
