"""The data set checks on pyimgano-datasets' loaders (real MVTec AD subset when ../shared exists)."""

from __future__ import annotations

import pytest

from pyimgano.plugins import Registry
from pyimgano.testing import check_dataset
from pyimgano_testutils import shared_path

AVAILABLE = set(Registry().discover().names("dataset"))


def _assert_all_pass(results):
    assert results and all(r.status == "passed" for r in results), [r for r in results if r.status != "passed"]


@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["datasets:mvtec", "datasets:folder"])
def test_loaders_on_the_mvtec_grid_subset(name):
    assert name in AVAILABLE, f"{name} is not registered (pyimgano-datasets failed to load)"
    _assert_all_pass(check_dataset(name, root=shared_path("data", "mvtec_ad_grid_subset"), category="grid"))


@pytest.mark.slow
def test_synthetic_dataset():
    assert "datasets:synthetic" in AVAILABLE, "datasets:synthetic is not registered (pyimgano-datasets failed to load)"
    _assert_all_pass(check_dataset("datasets:synthetic"))
