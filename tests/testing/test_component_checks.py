"""Data set, metric and post-processor checks on good and deliberately broken components."""

from __future__ import annotations

import pytest
from kit_plugins import write_tiny_dataset

from pyimgano.testing import check_dataset, check_metric, check_plugin, check_postprocessor
from pyimgano.testing.components import DATASET_CHECKS


def _status(results):
    return {r.check: r.status for r in results}


def _failed(results):
    return {r.check: r.message for r in results if r.failed}


@pytest.fixture
def tiny_root(tmp_path):
    return write_tiny_dataset(tmp_path / "tiny")


def test_good_dataset_passes(kit_registry, tiny_root):
    results = check_dataset("kit:tiny", root=tiny_root)
    assert set(_status(results).values()) == {"passed"}, _failed(results)
    assert {r.component for r in results} == {"kit:tiny"}


def test_dataset_without_root_is_not_applicable_not_failed(kit_registry):
    results = check_dataset("kit:tiny")
    assert len(results) == len(DATASET_CHECKS)
    assert all(r.status == "not applicable" and "--root" in r.message for r in results)


@pytest.mark.parametrize(
    ("fault", "check", "words"),
    [
        ("counts", "check_dataset_counts_match_info", "info.counts says"),
        ("mask_size", "check_dataset_masks_align_with_images", "has shape (40, 44); the image is (40, 48)"),
        ("empty_mask", "check_dataset_masks_align_with_images", "is empty"),
        ("no_mask", "check_dataset_samples_satisfy_contract", "has no mask_path"),
        ("defect_in_train", "check_dataset_samples_satisfy_contract", "train must be normal only"),
        ("missing_file", "check_dataset_samples_satisfy_contract", "does not exist"),
    ],
)
def test_broken_dataset_is_caught(kit_registry, tiny_root, fault, check, words):
    failed = _failed(check_dataset("kit:tiny", root=tiny_root, options={"fault": fault}))
    assert check in failed, (fault, failed)
    assert failed[check].startswith(check + ":") and words in failed[check], failed[check]


def test_good_metrics_pass(kit_registry):
    for name in ("kit:image-auroc", "kit:pixel-auroc"):
        results = check_metric(name)
        assert set(_status(results).values()) == {"passed"}, _failed(results)


@pytest.mark.parametrize(
    ("metric", "check", "words"),
    [
        ("kit:returns-text", "check_metric_returns_number", "expected a float"),
        ("kit:percent-auroc", "check_metric_value_range", "outside [0.0, 1.0]"),
        ("kit:inverted-auroc", "check_metric_orders_predictions", "perfect predictions give 0.0"),
        ("kit:truncating-auroc", "check_metric_rejects_mismatched_inputs", "expected a ValueError"),
    ],
)
def test_broken_metric_is_caught(kit_registry, metric, check, words):
    failed = _failed(check_metric(metric))
    assert check in failed and words in failed[check], failed


def test_unbounded_metric_can_opt_out_of_the_range_check(kit_registry):
    status = _status(check_metric("kit:percent-auroc", value_range=None))
    assert status["check_metric_value_range"] == "not applicable"
    assert status["check_metric_orders_predictions"] == "passed"


def test_good_postprocessors_pass(kit_registry):
    for name in ("kit:minmax", "kit:train-stats"):
        results = check_postprocessor(name)
        assert set(_status(results).values()) == {"passed"}, _failed(results)


@pytest.mark.parametrize(
    ("step", "check", "words"),
    [
        ("kit:crops", "check_postprocessor_returns_maps", "expected the same shape"),
        ("kit:in-place", "check_postprocessor_leaves_input_alone", "modified in place"),
        ("kit:makes-nan", "check_postprocessor_returns_maps", "non-finite"),
        ("kit:inverts", "check_postprocessor_keeps_defect_highest", "is not above the background"),
    ],
)
def test_broken_postprocessor_is_caught(kit_registry, step, check, words):
    failed = _failed(check_postprocessor(step))
    assert check in failed and words in failed[check], failed


def test_check_plugin_covers_every_component(kit_registry, tiny_root):
    results = check_plugin("kit", root=tiny_root)
    components = {r.component for r in results}
    assert {"kit", "kit:tiny", "kit:image-auroc", "kit:minmax", "kit:crops"} <= components
    status = {(r.component, r.check): r.status for r in results}
    assert status[("kit", "check_plugin_loads")] == "passed"
    assert status[("kit:crops", "check_postprocessor_returns_maps")] == "failed"
    assert status[("kit:tiny", "check_dataset_counts_match_info")] == "passed"


def _core(kind):
    from pyimgano.plugins import Registry

    return [n for n in Registry().discover().names(kind) if n.startswith("core:")]


def _loadable(kind, name):
    """A core component that fails to load fails its test (it is never "not implemented yet")."""
    from pyimgano.plugins import get_registry

    get_registry().load_factory(kind, name)


@pytest.mark.parametrize("name", _core("metric"))
def test_core_metric_conforms(kit_registry, name):
    _loadable("metric", name)
    results = check_metric(name)
    assert not _failed(results), _failed(results)


@pytest.mark.parametrize("name", _core("postprocessor"))
def test_core_postprocessor_conforms(kit_registry, name):
    _loadable("postprocessor", name)
    results = check_postprocessor(name)
    assert not _failed(results), _failed(results)
