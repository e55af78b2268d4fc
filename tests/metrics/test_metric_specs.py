"""Metrics as data: what a MetricSpec declares, and compute_metrics driven by the specs alone."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import BaseModel, ValidationError

from pyimgano import MetricSpec
from pyimgano.benchmark.metric_set import compute_metrics, resolve_metrics
from pyimgano.metrics import aupro, image_auroc, image_f1_max, pixel_auroc, pixel_f1_max
from pyimgano.testing import check_metric


class LimitParams(BaseModel):
    limit: float = 0.25


def spec(**kwargs):
    fields = {"name": "m", "summary": "a metric", "factory": "pkg.mod:m", "level": "image", **kwargs}
    return MetricSpec(**fields)


def test_the_title_names_parameters_filled_with_their_defaults():
    assert spec(title="M@{limit}", params=LimitParams).display_title() == "M@0.25"
    assert spec(title="M@{limit}", params=LimitParams).display_title(LimitParams(limit=0.5)) == "M@0.5"
    assert spec().display_title() == "m"
    with pytest.raises(ValidationError, match=r"names fpr, not a parameter of LimitParams \(limit\)"):
        spec(title="M@{fpr}", params=LimitParams)
    with pytest.raises(ValidationError, match="not a valid format string"):
        spec(title="M@{limit", params=LimitParams)
    with pytest.raises(ValidationError, match="one non-empty line"):
        spec(title="two\nlines")


def test_the_core_metrics_declare_what_the_benchmark_needs():
    metrics = {m.key: m for m in resolve_metrics()}
    core = ["image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_ap", "pixel_f1_max", "aupro"]
    assert [k for k in metrics if k in core] == core
    assert metrics["aupro"].title == "AUPRO@0.3" and metrics["aupro"].params == {"fpr_limit": 0.3}
    assert {k for k, m in metrics.items() if m.spec.returns_threshold} >= {"image_f1_max", "pixel_f1_max"}
    assert {k for k, m in metrics.items() if m.spec.headline} >= {"image_auroc", "pixel_auroc", "aupro"}


def _data(seed=0):
    rng = np.random.default_rng(seed)
    masks = np.zeros((6, 16, 16), bool)
    for i in range(3):
        masks[i, 4 + i : 9 + i, 5:10] = True
    maps = rng.random(masks.shape).astype(np.float32) + masks * 0.6
    labels = masks.any(axis=(1, 2)).astype(int)
    scores = maps.max(axis=(1, 2))
    return labels, scores, list(masks), list(maps)


def test_compute_metrics_is_the_registered_functions_at_their_default_params():
    labels, scores, masks, maps = _data()
    notes = []
    values, thresholds = compute_metrics(labels, scores, masks, maps, notes=notes)
    assert notes == []
    assert values["image_auroc"] == image_auroc(labels, scores)
    assert values["pixel_auroc"] == pixel_auroc(masks, maps)
    assert values["aupro"] == aupro(masks, maps, fpr_limit=0.3)
    assert (values["image_f1_max"], thresholds["image_f1_max"]) == image_f1_max(labels, scores)
    assert (values["pixel_f1_max"], thresholds["pixel_f1_max"]) == pixel_f1_max(masks, maps)


def test_compute_metrics_without_maps_or_with_one_class_keeps_what_it_can():
    labels, scores, masks, maps = _data()
    values, _ = compute_metrics(labels, scores, masks, None)
    assert values["image_auroc"] is not None and values["pixel_auroc"] is None and values["aupro"] is None
    notes = []
    chosen = resolve_metrics(["image_auroc", "image_ap"])
    values, _ = compute_metrics(np.zeros(6, int), scores, None, None, chosen, notes)
    assert values == {"image_auroc": None, "image_ap": None}
    assert len(notes) == 2 and notes[0].startswith("image_auroc: ") and "single class" in notes[0]


def _pair_metric(labels, scores):
    return image_auroc(labels, scores), 0.5


def test_the_kit_holds_a_metric_to_its_declared_return_shape():
    def status(**kwargs):
        results = check_metric(_pair_metric, level="image", **kwargs)
        return {r.check: (r.status, r.message) for r in results}["check_metric_returns_number"]

    assert status(returns_threshold=True)[0] == "passed"
    state, message = status()
    assert state == "failed" and "declares returns_threshold=True in its MetricSpec" in message

    def single(labels, scores):
        return image_auroc(labels, scores)

    results = {r.check: r for r in check_metric(single, level="image", returns_threshold=True)}
    assert results["check_metric_returns_number"].status == "failed"
    assert "(value, threshold) pair" in results["check_metric_returns_number"].message


PERCENT_PLUGIN = """
from pyimgano import MetricSpec, hookimpl
from pyimgano.metrics import image_auroc

def percent_auroc(labels, scores):
    return 100.0 * image_auroc(labels, scores)

@hookimpl
def pyimgano_register_metrics():
    return [MetricSpec(name="percent_auroc", summary="AUROC in percent", level="image", value_range=(0, 100),
                       factory="percent_plugin:percent_auroc")]
"""


@pytest.fixture
def percent_plugin(tmp_path):
    from pyimgano_testutils import make_fake_distribution, plugin_on_path

    site = make_fake_distribution(tmp_path, "pyimgano-percent", "1.0.0", {"percent": "percent_plugin"},
                                  {"percent_plugin": PERCENT_PLUGIN})
    with plugin_on_path(site, modules=("percent_plugin",)):
        yield


def test_the_kit_checks_the_range_a_registered_metric_declares(percent_plugin):
    results = {r.check: r.status for r in check_metric("percent:percent_auroc")}
    assert results["check_metric_value_range"] == "passed"
    results = {r.check: r.status for r in check_metric("percent:percent_auroc", value_range=(0.0, 1.0))}
    assert results["check_metric_value_range"] == "failed"
