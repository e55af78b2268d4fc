"""Identical images across training, validation, defect and test sets (docs/reliability.md,
"Round 3"): fit refuses them, the benchmark warns."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from reliability_helpers import benchtest, make_mvtec, save
from rich.console import Console

import pyimgano
from pyimgano import InvalidParams
from pyimgano.overlap import find_overlaps
from pyimgano_testutils import run_cli


def _images(seed: int, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(80, 170, (24, 24, 3), dtype=np.uint8) for _ in range(n)]


def _folder(root, images, prefix="img"):
    return [save(root / f"{prefix}_{i}.png", image) for i, image in enumerate(images)]


def test_identical_arrays_and_files_are_found_and_nothing_else(tmp_path):
    a, b = _images(0, 4), _images(1, 3)
    assert find_overlaps({"train": a, "val": b}) == []
    (overlap,) = find_overlaps({"train": a, "val": [b[0], a[2].copy()]})
    assert (overlap.count, overlap.example) == (1, ("image [2]", "image [1]"))
    train = _folder(tmp_path / "train", a)
    val = _folder(tmp_path / "val", b)
    assert find_overlaps({"train": train, "val": val}) == []
    copy = tmp_path / "val" / "renamed.png"
    shutil.copy(train[1], copy)
    (overlap,) = find_overlaps({"train": train, "val": [*val, copy]})
    assert overlap.describe() == f"1 of the val is identical to train ({copy} = {train[1]})"
    same_size = tmp_path / "val" / "same_size.png"  # same length, other bytes: a hash tells them apart
    data = bytearray(train[0].read_bytes())
    data[-20] ^= 0xFF
    same_size.write_bytes(bytes(data))
    assert find_overlaps({"train": train[:1], "val": [same_size]}) == []


def test_fit_refuses_validation_images_that_are_training_images(example_plugin):
    train = _images(0, 6)
    pipe = pyimgano.Pipeline("example:mad")
    with pytest.raises(InvalidParams) as err:
        pipe.fit(train, val_images=train[:3])
    assert str(err.value) == ("3 of the validation images are identical to training images (image [0] = image [0]): "
                              "thresholds fitted on images the detector learnt reject more good parts than they "
                              "promise; give each set its own images")
    assert not pipe.detector.is_fitted_


def test_fit_refuses_defects_that_are_training_images(example_plugin):
    train = _images(0, 6)
    with pytest.raises(InvalidParams, match=r"^1 of the defect images is identical to training images \(image \[0\] = "
                                            r"image \[4\]\): the detector would learn those defects as normal"):
        pyimgano.Pipeline("example:mad").fit(train, anomalies=[train[4]])


def test_the_fit_command_refuses_overlapping_folders_in_one_line(hostile_site, tmp_path):
    train = _folder(tmp_path / "train", _images(0, 6))
    result = run_cli("fit", "--detector", "hostile:crasher", "--train", str(tmp_path / "train"),
                     "--val", str(tmp_path / "train"), "--out", str(tmp_path / "model"), pythonpath=[hostile_site])
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1].startswith(
        f"error: 6 of the validation images are identical to training images ({train[0]} = {train[0]})")
    assert not (tmp_path / "model").exists()


def test_the_benchmark_warns_about_test_images_that_are_training_images(example_plugin, tmp_path):
    from pyimgano.benchmark.config import BenchmarkConfig, DatasetEntry, DetectorEntry
    from pyimgano.benchmark.runner import run_benchmark

    root = make_mvtec(tmp_path / "data", {"alpha": 16})
    train = sorted((root / "alpha" / "train" / "good").glob("*.png"))
    shutil.copy(train[0], root / "alpha" / "test" / "good" / "zz_copy.png")
    config = BenchmarkConfig(detectors=[DetectorEntry(name="example:mad")],
                             datasets=[DatasetEntry(name="mvtec", root=str(root))], out=str(tmp_path / "out"))
    buffer = io.StringIO()
    (run,) = run_benchmark(config, console=Console(file=buffer, width=300)).runs
    assert run["status"] == "ok"
    note = (f"1 of the test images is identical to training images ({root / 'alpha/test/good/zz_copy.png'} = "
            f"{train[0]}); the test figures count images the detector trained on")
    assert note in " ".join(buffer.getvalue().split())
    (record,) = benchtest.load_records(tmp_path / "out")
    assert note in record["extra"]["notes"]

