"""The synthetic set: determinism, exact masks, cache behaviour, API shape."""

from __future__ import annotations

import numpy as np
import pytest

import pyimgano
from pyimgano import DatasetError, InvalidParams
from pyimgano_datasets.synthetic import DEFECT_KINDS, MANIFEST, TEXTURES, SyntheticConfig, render_sample

SMALL = dict(image_size=48, n_train=3, n_test_good=2, n_test_defect=4)


@pytest.fixture
def small(tmp_path):
    return pyimgano.load_dataset("synthetic", category="brick", cache_dir=tmp_path / "cache", **SMALL)


@pytest.mark.parametrize("category", list(TEXTURES))
@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_masks_are_exactly_the_changed_pixels(category, kind):
    config = SyntheticConfig(image_size=96)
    for index in range(2):
        image, mask, clean = render_sample(config, category, "test", index, kind, with_clean=True)
        assert mask.dtype == bool and mask.shape == image.shape[:2]
        assert 10 < mask.sum() < 0.3 * mask.size, f"{kind} mask covers {mask.sum()} pixels"
        changed = np.any(image != clean, axis=2)
        assert not changed[~mask].any(), "pixels outside the mask were modified"
        assert changed[mask].mean() > 0.5, "most mask pixels must differ from the clean image"
        diff = np.abs(image.astype(int) - clean.astype(int)).max(axis=2)
        assert diff[mask].mean() > 8, f"{kind} defect is too faint to see"


def test_generation_is_deterministic_and_seeded():
    config = SyntheticConfig(image_size=40)
    a = render_sample(config, "grass", "test", 1, "scratch")
    b = render_sample(config, "grass", "test", 1, "scratch")
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    other = render_sample(SyntheticConfig(image_size=40, seed=1), "grass", "test", 1, "scratch")
    assert not np.array_equal(a[0], other[0])
    # good images are distinct views, not copies
    train = [render_sample(config, "grass", "train", i)[0] for i in range(3)]
    assert not np.array_equal(train[0], train[1]) and not np.array_equal(train[1], train[2])


def test_disk_and_memory_sets_hold_the_same_pixels(tmp_path, small):
    memory = pyimgano.load_dataset("synthetic", category="brick", in_memory=True, **SMALL)
    assert [s.defect_type for s in small.test] == [s.defect_type for s in memory.test]
    for disk_sample, mem_sample in zip(small.test, memory.test):
        (img_d, mask_d), (img_m, mask_m) = small.load(disk_sample), memory.load(mem_sample)
        assert np.array_equal(img_d, img_m) and np.array_equal(mask_d, mask_m)
    assert not (tmp_path / "cache").joinpath("<memory>").exists()


def test_layout_counts_and_loading(small):
    info = small.info
    assert info.categories == ["brick"] and info.has_masks
    assert info.counts["brick"]["train"].good == 3
    assert (info.counts["brick"]["test"].good, info.counts["brick"]["test"].defect) == (2, 4)
    assert info.defect_types["brick"] == sorted(DEFECT_KINDS)
    assert len(small.train) == 3 and len(small.test) == 6
    root = small.root / "brick"
    assert (root / "train" / "good" / "000.png").is_file()
    assert (root / "ground_truth" / "scratch" / "000_mask.png").is_file()
    for sample in small.test:
        image, mask = small.load(sample)
        assert image.shape == (48, 48, 3) and image.dtype == np.uint8
        assert mask.shape == (48, 48) and mask.dtype == bool
        assert mask.any() == bool(sample.label)
        assert (sample.mask_path is None) == (sample.label == 0)
    assert small.check() == []


def test_info_needs_no_generation(tmp_path):
    ds = pyimgano.load_dataset("synthetic", cache_dir=tmp_path, **SMALL)
    info = ds.info
    assert info.categories == sorted(TEXTURES)
    assert info.counts["gravel"]["test"].defect == 4
    assert not any(p.is_dir() for p in ds.root.iterdir())


def test_cache_is_reused_and_separate_per_parameters(tmp_path):
    first = pyimgano.load_dataset("synthetic", category="grass", cache_dir=tmp_path, **SMALL)
    path = first.train[0].image_path
    stamp = path.stat().st_mtime_ns
    again = pyimgano.load_dataset("synthetic", category="grass", cache_dir=tmp_path, **SMALL)
    assert again.train[0].image_path == path and path.stat().st_mtime_ns == stamp
    other = pyimgano.load_dataset("synthetic", category="grass", cache_dir=tmp_path, **{**SMALL, "seed": 3})
    assert other.root != first.root
    assert (first.root / "grass" / MANIFEST).is_file()


def test_several_categories_need_a_choice(tmp_path):
    ds = pyimgano.load_dataset("synthetic", cache_dir=tmp_path, **SMALL)
    with pytest.raises(DatasetError, match="choose one"):
        ds.train
    gravel = ds.category("gravel")
    assert {s.category for s in gravel.test} == {"gravel"}
    assert [sub.selected for sub in ds] == sorted(TEXTURES)
    with pytest.raises(DatasetError, match="available: brick, grass, gravel"):
        ds.category("wood")


def test_root_with_foreign_content_is_not_written_into(tmp_path):
    from dataset_trees import make_mvtec

    real = make_mvtec(tmp_path / "mvtec", categories=("grid",))
    before = sorted(p.relative_to(real) for p in real.rglob("*"))
    with pytest.raises(DatasetError, match="not a synthetic data set folder .*grid"):
        pyimgano.load_dataset("synthetic", root=real, category="brick", **SMALL)
    assert sorted(p.relative_to(real) for p in real.rglob("*")) == before
    # a category folder of someone else's inside a synthetic root is not overwritten either
    ours = tmp_path / "ours"
    pyimgano.load_dataset("synthetic", root=ours, category="grass", **SMALL).train
    (ours / "brick").mkdir()
    (ours / "brick" / "mine.txt").write_text("user data")
    with pytest.raises(DatasetError, match="brick: exists but was not generated"):
        pyimgano.load_dataset("synthetic", root=ours, category="brick", **SMALL).train
    assert (ours / "brick" / "mine.txt").read_text() == "user data"


def test_new_root_is_claimed_and_reused(tmp_path):
    root = tmp_path / "syn"
    first = pyimgano.load_dataset("synthetic", root=root, category="brick", **SMALL)
    assert first.root == root and len(first.train) == 3
    assert (root / ".pyimgano-synthetic").is_file() and (root / "brick" / MANIFEST).is_file()
    again = pyimgano.load_dataset("synthetic", root=root, category="gravel", **SMALL)
    assert len(again.test) == 6
    mvtec = pyimgano.load_dataset("mvtec", root=root)  # the layout is plain MVTec
    assert mvtec.info.categories == ["brick", "gravel"]


def test_params_are_validated():
    with pytest.raises(InvalidParams, match="defect_kinds"):
        pyimgano.load_dataset("synthetic", defect_kinds=["dent"])
    with pytest.raises(InvalidParams, match="image_size"):
        pyimgano.load_dataset("synthetic", image_size=4)


def test_default_set_has_the_documented_size():
    ds = pyimgano.load_dataset("synthetic", category="brick", in_memory=True)
    counts = ds.info.counts["brick"]
    assert counts["train"].good == 32 and counts["test"].total == 26
    image, _ = ds.load(ds.train[0])
    assert image.shape == (256, 256, 3)


def test_pixels_match_the_generator_version():
    """Cached sets are keyed by GENERATOR_VERSION: a change to the pixels must bump it.

    If this fails after an intended change to the generator, bump GENERATOR_VERSION and
    update the fingerprint below (mean grey level, mask area per defect kind).
    """
    from pyimgano_datasets.synthetic import GENERATOR_VERSION

    config = SyntheticConfig(image_size=64)
    fingerprint = {}
    for kind in DEFECT_KINDS:
        image, mask = render_sample(config, "gravel", "test", 0, kind)
        fingerprint[kind] = (round(float(image.mean()), 0), int(mask.sum()))
    assert GENERATOR_VERSION == 2
    expected = {"scratch": (111, 29), "stain": (123, 160), "foreign": (124, 113), "missing": (123, 73)}
    for kind, (mean, area) in expected.items():
        got_mean, got_area = fingerprint[kind]
        assert abs(got_mean - mean) <= 1 and abs(got_area - area) <= 2, (kind, fingerprint[kind])


def test_parallel_processes_share_one_cache(tmp_path):
    import subprocess
    import sys

    code = (
        "import pyimgano\n"
        f"ds = pyimgano.load_dataset('synthetic', category='grass', cache_dir={str(tmp_path)!r}, "
        "image_size=32, n_train=20, n_test_good=2, n_test_defect=4)\n"
        "print(len(ds.train), len(ds.test))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0]
    assert outputs == ["20 6"] * 3
    (digest_dir,) = tmp_path.iterdir()
    assert sorted(p.name for p in digest_dir.iterdir()) == [".pyimgano-synthetic", "grass"]  # no temporary folders


def test_cli_shows_synthetic_counts_without_generating(tmp_path, monkeypatch, capsys):
    import json

    from pyimgano.cli import main

    monkeypatch.setenv("PYIMGANO_CACHE_DIR", str(tmp_path))
    assert main(["datasets", "--dataset", "synthetic", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["categories"] == ["brick", "grass", "gravel"]
    assert data["counts"]["grass"]["test"] == {"good": 10, "defect": 16}
    assert not list(tmp_path.rglob("*.png"))


def test_load_with_the_model_geometry():
    from pyimgano.preprocess import Preprocess

    ds = pyimgano.load_dataset("synthetic", category="gravel", in_memory=True, **SMALL)
    defect = ds.test[-1]
    image, mask = ds.load(defect, preprocess=Preprocess(resize=40, crop=32))
    assert image.shape == (32, 32, 3) and mask.shape == (32, 32) and mask.dtype == bool
    full_image, full_mask = ds.load(defect)
    assert full_image.shape == (48, 48, 3) and full_mask.sum() > mask.sum() > 0
