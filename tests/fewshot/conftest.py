from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmark"))  # the fake plugin's helpers
import benchtest


def make_two_kind_root(root: Path, n_defect: int = 6, n_good: int = 3, n_train: int = 10) -> Path:
    """The toy folders with the defects of each category split into two kinds: spot and crack."""
    benchtest.make_toy_root(root, n_train=n_train, n_good=n_good, n_defect=n_defect)
    for category in benchtest.TOY_CATEGORIES:
        base = root / category
        for path in sorted((base / "test" / "spot").glob("*.png"))[n_defect // 2:]:
            for folder, name in (("test", path.name), ("ground_truth", f"{path.stem}_mask.png")):
                target = base / folder / "crack" / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(base / folder / "spot" / name, target)
    return root


@pytest.fixture(scope="session")
def fs_plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return benchtest.install_fake_plugin(tmp_path_factory.mktemp("fewshot-benchtest-site"))


@pytest.fixture(scope="session")
def kinds_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_two_kind_root(tmp_path_factory.mktemp("fewshot-toy"))


@pytest.fixture
def plugin(fs_plugin_site: Path):
    with benchtest.plugin_on_path(fs_plugin_site):
        yield fs_plugin_site
