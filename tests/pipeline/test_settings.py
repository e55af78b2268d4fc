"""One source for every pipeline setting: PipelineSettings' fields give the defaults, bounds and
help texts of Pipeline(...), bench.toml, benchmark jobs and the fit/benchmark options."""

from __future__ import annotations

import argparse

import pytest

import pyimgano
from pyimgano.benchmark.config import BenchmarkConfig, DatasetEntry, DetectorEntry, JobSpec, expand_jobs
from pyimgano.cli import benchmark as benchmark_cli
from pyimgano.cli import fit as fit_cli
from pyimgano.errors import InvalidParams
from pyimgano.pipeline.settings import PipelineOverrides, PipelineSettings, ResolvedSettings
from pyimgano.thresholds import DEFAULT_IMAGE_THRESHOLD, make_strategy


def _help(module) -> str:
    parser = argparse.ArgumentParser(prog="x")
    module.add_arguments(parser)
    return " ".join(parser.format_help().split())


@pytest.mark.parametrize("module", [fit_cli, benchmark_cli], ids=["fit", "benchmark"])
def test_every_setting_is_an_option_with_the_fields_default_and_description(module, monkeypatch):
    monkeypatch.setenv("COLUMNS", "10000")  # one line per option: no word broken at a hyphen
    text = _help(module)
    for name, field in PipelineSettings.model_fields.items():
        option = "--" + name.replace("_", "-")
        assert option in text, option
        assert " ".join(field.description.split()) in text
        assert f"(default: {field.default})" in text


def test_a_detector_entry_and_a_job_carry_the_same_settings():
    assert set(PipelineOverrides.model_fields) == set(PipelineSettings.model_fields)
    assert set(PipelineSettings.model_fields) <= set(DetectorEntry.model_fields)
    assert set(PipelineSettings.model_fields) <= set(BenchmarkConfig.model_fields)
    assert set(ResolvedSettings.model_fields) == set(PipelineSettings.model_fields)
    assert set(ResolvedSettings.model_fields) <= set(JobSpec.model_fields)
    assert all(DetectorEntry(name="x").model_dump()[name] is None for name in PipelineSettings.model_fields)
    job = JobSpec(detector="a:b", params={}, dataset="c:d", dataset_label="d", category="e")
    assert job.val_fraction == PipelineSettings.default("val_fraction")
    assert job.image_threshold == make_strategy(PipelineSettings.default("image_threshold")).to_dict()


def test_bad_settings_are_one_line_naming_the_setting_and_its_value():
    with pytest.raises(InvalidParams, match=r"^val_fraction 1.5: Input should be less than 1$"):
        PipelineSettings.of(val_fraction=1.5)
    with pytest.raises(InvalidParams, match=rf"^image_threshold None: give a strategy, e.g. '{DEFAULT_IMAGE_THRESHOLD}'$"):
        PipelineSettings.of(image_threshold=None)
    with pytest.raises(InvalidParams, match=r"^calibration 'loo': .*expected one of auto, holdout, oof, kfold"):
        PipelineSettings.of(calibration="loo")
    assert PipelineSettings.of(calibration=" KFold:3 ").calibration == "kfold:3"
    with pytest.raises(InvalidParams, match=r"^threshold 0.5: unknown parameter \(did you mean"):
        PipelineSettings.of(threshold=0.5)
    assert PipelineSettings.of(pixel_threshold="None").pixel_threshold is None  # 'none': no masks


def test_the_pipeline_takes_settings_and_fields_on_top(plugin):
    settings = PipelineSettings(image_threshold="fixed:0.5", val_fraction=0.3)
    pipe = pyimgano.Pipeline("benchtest:mean", settings, val_fraction=0.2)
    assert pipe.image_threshold.spec() == "fixed:0.5" and pipe.val_fraction == 0.2
    assert settings.val_fraction == 0.3  # the caller's settings are not changed


def test_bench_toml_entries_override_the_benchmarks_settings(plugin, toy, tmp_path):
    config = BenchmarkConfig(
        detectors=[DetectorEntry(name="benchtest:mean"), DetectorEntry(name="benchtest:mean", params={"sigma": 1.0},
                                                                        val_fraction=0.3, pixel_threshold="none")],
        datasets=[DatasetEntry(name="toy", root=str(toy), categories=["alpha"])], out=str(tmp_path),
        val_fraction=0.2, image_threshold="quantile:0.9")
    shared, own = expand_jobs(config)
    assert (shared.val_fraction, own.val_fraction) == (0.2, 0.3)
    assert shared.image_threshold == own.image_threshold == {"strategy": "quantile", "q": 0.9}
    assert shared.pixel_threshold is not None and own.pixel_threshold is None
    with pytest.raises(ValueError, match="a benchmark calibrates on held-out training images"):
        BenchmarkConfig(val_fraction=0)
