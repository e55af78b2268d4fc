"""MVTec, BTAD, VisA and folder loaders on tiny trees in the exact layouts, and every layout error."""

from __future__ import annotations

import numpy as np
import pytest
from dataset_trees import (
    SIZE,
    make_btad,
    make_mvtec,
    make_visa,
    synthetic_visa_rows,
    visa_rows_from,
    write_image,
    write_mask,
)

import pyimgano
from pyimgano import DatasetError
from pyimgano.contracts import DatasetInfo, DatasetSample
from pyimgano_testutils import shared_path


def _assert_aligned(dataset, split="test"):
    for sample in dataset.samples(split):
        assert isinstance(sample, DatasetSample)
        image, mask = dataset.load(sample)
        assert image.dtype == np.uint8 and image.shape == (*SIZE, 3)
        if mask is not None:
            assert mask.dtype == bool and mask.shape == SIZE
            assert mask.any() == bool(sample.label)


# -- MVTec ------------------------------------------------------------------------------
def test_mvtec_counts_and_samples(tmp_path):
    ds = pyimgano.load_dataset("mvtec", root=make_mvtec(tmp_path))
    info = ds.info
    assert isinstance(info, DatasetInfo) and info.categories == ["bottle", "cable"]
    assert info.counts["cable"]["train"].good == 3
    assert (info.counts["cable"]["test"].good, info.counts["cable"]["test"].defect) == (2, 3)
    assert info.defect_types["bottle"] == ["crack", "hole"]
    bottle = ds.category("bottle")
    assert [s.defect_type for s in bottle.test] == ["good", "good", "crack", "crack", "hole"]
    hole = bottle.test[-1]
    assert hole.mask_path == tmp_path / "bottle" / "ground_truth" / "hole" / "000_mask.png"
    _assert_aligned(bottle)
    image, mask = bottle.load(hole)
    assert mask[2:6, 3:8].all() and mask.sum() == 20
    assert ds.check() == []


def test_mvtec_single_category_needs_no_choice(tmp_path):
    ds = pyimgano.load_dataset("mvtec", root=make_mvtec(tmp_path, categories=("grid",)))
    assert len(ds.train) == 3 and ds.categories == ["grid"]


def test_mvtec_many_categories_ask_for_one(tmp_path):
    ds = pyimgano.load_dataset("mvtec", root=make_mvtec(tmp_path))
    with pytest.raises(DatasetError, match="choose one .*bottle, cable"):
        ds.test
    assert len(ds.samples("train")) == 6  # across categories


def test_missing_root_and_category(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        pyimgano.load_dataset("mvtec", root=tmp_path / "nope")
    with pytest.raises(DatasetError, match="needs a root"):
        pyimgano.load_dataset("mvtec")
    make_mvtec(tmp_path)
    with pytest.raises(DatasetError, match=r"zipper.*available: bottle, cable") as err:
        pyimgano.load_dataset("mvtec", root=tmp_path, category="zipper")
    assert str(tmp_path / "zipper") in str(err.value)


def test_empty_splits_are_errors_naming_the_folder(tmp_path):
    make_mvtec(tmp_path, categories=("bottle",), n_train=0)
    (tmp_path / "bottle" / "train" / "good").mkdir(parents=True)
    ds = pyimgano.load_dataset("mvtec", root=tmp_path, category="bottle")
    with pytest.raises(DatasetError, match="empty split") as err:
        ds.train
    assert str(tmp_path / "bottle" / "train" / "good") in str(err.value)


def test_defect_without_mask(tmp_path):
    make_mvtec(tmp_path, categories=("bottle",))
    (tmp_path / "bottle" / "ground_truth" / "crack" / "001_mask.png").unlink()
    ds = pyimgano.load_dataset("mvtec", root=tmp_path, category="bottle")
    with pytest.raises(DatasetError, match="without its mask") as err:
        ds.test
    assert str(tmp_path / "bottle" / "test" / "crack" / "001.png") in str(err.value)


def test_mask_size_mismatch_and_unreadable_file(tmp_path):
    make_mvtec(tmp_path, categories=("bottle",))
    write_mask(tmp_path / "bottle" / "ground_truth" / "hole" / "000_mask.png", size=(5, 5), box=(0, 0, 2, 2))
    (tmp_path / "bottle" / "test" / "good" / "001.png").write_bytes(b"not a png")
    ds = pyimgano.load_dataset("mvtec", root=tmp_path, category="bottle")
    hole = [s for s in ds.test if s.defect_type == "hole"][0]
    with pytest.raises(DatasetError, match="differs from its image") as err:
        ds.load(hole)
    assert "000_mask.png" in str(err.value)
    broken = [s for s in ds.test if s.image_path.name == "001.png" and s.label == 0][0]
    with pytest.raises(DatasetError, match=str(broken.image_path)):
        ds.load(broken)
    problems = [str(p) for p in ds.check()]
    assert len(problems) == 2
    assert any("differs from its image" in p for p in problems)
    assert any(str(broken.image_path) in p and "unreadable" in p for p in problems)


def test_check_lists_every_problem_in_one_run(tmp_path):
    make_mvtec(tmp_path)
    (tmp_path / "bottle" / "ground_truth" / "crack" / "000_mask.png").unlink()
    (tmp_path / "bottle" / "ground_truth" / "hole" / "000_mask.png").unlink()
    for p in (tmp_path / "cable" / "train" / "good").iterdir():
        p.unlink()
    write_image(tmp_path / "cable" / "test" / "good" / "000.png", size=(4, 4))  # fine: no mask to compare
    (tmp_path / "cable" / "test" / "crack" / "001.png").write_bytes(b"\x89PNG broken")
    problems = pyimgano.load_dataset("mvtec", root=tmp_path).check()
    text = "\n".join(map(str, problems))
    assert len(problems) == 4, text
    assert "crack/000.png: defect image without its mask" in text
    assert "hole/000.png: defect image without its mask" in text
    assert "empty split" in text and "unreadable" in text


# -- BTAD -------------------------------------------------------------------------------
def test_btad_png_and_bmp_masks(tmp_path):
    ds = pyimgano.load_dataset("btad", root=make_btad(tmp_path))
    assert ds.info.categories == ["01", "02", "03"]
    for cat in ds.info.categories:
        counts = ds.info.counts[cat]
        assert (counts["train"].good, counts["test"].good, counts["test"].defect) == (3, 1, 2)
        sub = ds.category(cat)
        assert {s.defect_type for s in sub.test} == {"good", "ko"}
        _assert_aligned(sub)
    assert ds.category("03").test[-1].mask_path.suffix == ".bmp"
    assert ds.category("01").test[-1].mask_path.suffix == ".png"
    assert ds.check() == []


def test_btad_missing_mask(tmp_path):
    make_btad(tmp_path)
    (tmp_path / "02" / "ground_truth" / "ko" / "0001.png").unlink()
    problems = pyimgano.load_dataset("btad", root=tmp_path).check()
    assert [p.path.name for p in problems] == ["0001.png"]


# -- VisA -------------------------------------------------------------------------------
def test_visa_tree_following_the_official_split_file(tmp_path):
    rows = visa_rows_from(shared_path("data", "visa_split", "1cls.csv"))
    ds = pyimgano.load_dataset("visa", root=make_visa(tmp_path, rows))
    assert ds.info.categories == ["candle", "pcb1"]
    counts = ds.info.counts["pcb1"]
    assert (counts["train"].good, counts["test"].good, counts["test"].defect) == (2, 2, 2)
    pcb = ds.category("pcb1")
    assert all(s.image_path.is_relative_to(tmp_path / "pcb1" / "Data" / "Images") for s in pcb.train)
    _assert_aligned(pcb)
    assert ds.check() == []


def test_visa_masks_are_binarised(tmp_path):
    ds = pyimgano.load_dataset("visa", root=make_visa(tmp_path, synthetic_visa_rows()), category="fryum")
    defect = [s for s in ds.test if s.label == 1][0]
    assert defect.defect_type == "anomaly"
    _, mask = ds.load(defect)
    assert mask.dtype == bool and mask.sum() == 20


def test_visa_problems(tmp_path):
    make_visa(tmp_path, synthetic_visa_rows())
    (tmp_path / "candle" / "Data" / "Masks" / "Anomaly" / "001.png").unlink()
    (tmp_path / "fryum" / "Data" / "Images" / "Normal" / "0002.JPG").unlink()
    with open(tmp_path / "split_csv" / "1cls.csv", "a") as handle:
        handle.write("candle,val,normal,candle/x.JPG,\n")
    problems = [str(p) for p in pyimgano.load_dataset("visa", root=tmp_path).check()]
    assert len(problems) == 3, problems
    assert any("line 14" in p and "'val'" in p for p in problems)
    assert any("001.JPG" in p and "without its mask" in p for p in problems)
    assert any("0002.JPG" in p and "missing" in p for p in problems)


def test_visa_without_split_file(tmp_path):
    with pytest.raises(DatasetError, match=r"split_csv/1cls.csv"):
        pyimgano.load_dataset("visa", root=tmp_path).info


def test_visa_prepare_writes_the_mvtec_layout(tmp_path):
    from pyimgano_datasets.visa import prepare_visa

    visa = make_visa(tmp_path / "visa", synthetic_visa_rows())
    out = prepare_visa(visa, tmp_path / "mvtec")
    ds = pyimgano.load_dataset("mvtec", root=out)
    assert ds.info.counts == pyimgano.load_dataset("visa", root=visa).info.counts
    candle = ds.category("candle")
    _, mask = candle.load(candle.test[-1])
    assert mask.sum() == 20
    assert ds.check() == []


# -- folder -----------------------------------------------------------------------------
def test_folder_single_category_root_without_masks(tmp_path):
    make_mvtec(tmp_path, categories=("parts",))
    for mask in (tmp_path / "parts" / "ground_truth").rglob("*.png"):
        mask.unlink()
    ds = pyimgano.load_dataset("folder", root=tmp_path / "parts")
    assert ds.categories == ["parts"] and not ds.info.has_masks
    assert ds.check() == []
    assert all(ds.load(s)[1] is None for s in ds.test)
    with pytest.raises(DatasetError, match="without its mask"):
        pyimgano.load_dataset("folder", root=tmp_path / "parts", masks="required").test


def test_folder_explicit_lists_with_mask_folder(tmp_path):
    make_mvtec(tmp_path, categories=("parts",))
    cat = tmp_path / "parts"
    ds = pyimgano.load_dataset(
        "folder",
        category="widgets",
        train_good=[cat / "train" / "good"],
        test_good=[cat / "test" / "good" / "000.png"],
        test_defect=[cat / "test" / "crack", cat / "test" / "hole"],
        test_masks=[cat / "ground_truth" / "crack", cat / "ground_truth" / "hole"],
    )
    assert ds.info.counts["widgets"]["test"].defect == 3 and ds.info.counts["widgets"]["test"].good == 1
    assert ds.info.has_masks
    _assert_aligned(ds)


def test_folder_list_problems(tmp_path):
    make_mvtec(tmp_path, categories=("parts",))
    cat = tmp_path / "parts"
    ds = pyimgano.load_dataset(
        "folder",
        train_good=[cat / "train" / "good", tmp_path / "missing"],
        test_defect=[cat / "test" / "crack"],
        test_masks=[cat / "ground_truth" / "crack" / "000_mask.png"],
    )
    problems = [str(p) for p in ds.check()]
    assert any("missing: train_good path does not exist" in p for p in problems)
    assert any("1 mask files for 2 defect images" in p for p in problems)
    with pytest.raises(DatasetError, match="train_good"):
        pyimgano.load_dataset("folder", test_good=[cat / "test" / "good"])


@pytest.mark.shared_data
def test_official_visa_split_file_parses_cleanly():
    from collections import Counter

    from pyimgano_datasets.visa import read_split_file

    rows, problems = read_split_file(shared_path("data", "visa_split", "1cls.csv"))
    assert problems == [] and len(rows) == 10821
    groups = Counter((r["object"], r["split"], r["label"]) for r in rows)
    assert groups[("candle", "train", "normal")] == 900 and groups[("candle", "test", "anomaly")] == 100
    assert len({r["object"] for r in rows}) == 12
    assert all(bool(r["mask"]) == (r["label"] == "anomaly") for r in rows)
