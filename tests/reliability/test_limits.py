"""Images over the pixel limit are refused from their header, naming the file and the limit."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from reliability_helpers import make_mvtec, png_claiming, save
from rich.console import Console

import pyimgano
from pyimgano import ImageTooLarge, InvalidParams
from pyimgano.benchmark.config import BenchmarkConfig, ConfigError, DatasetEntry, DetectorEntry, load_config_file
from pyimgano.benchmark.runner import run_benchmark
from pyimgano.images import load_image, read_image, read_image_size, read_mask
from pyimgano.limits import DEFAULT_MAX_IMAGE_PIXELS, max_image_pixels, max_image_side, set_max_image_pixels
from pyimgano_testutils import run_cli

DEFAULT = "exceeds the limit of 268,435,456 pixels (set PYIMGANO_MAX_IMAGE_PIXELS to change it)"


def bomb_message(path) -> str:
    # beyond twice the limit PIL's own guard refuses first: it tells the pixel count, not the size
    return f"{path}: image of 2,500,000,000 pixels {DEFAULT}"


@pytest.fixture(autouse=True)
def default_limit(monkeypatch):
    monkeypatch.delenv("PYIMGANO_MAX_IMAGE_PIXELS", raising=False)


def test_the_default_takes_a_16k_line_scan_crop_and_refuses_one_pixel_more(tmp_path):
    assert max_image_pixels() == DEFAULT_MAX_IMAGE_PIXELS == 16384 * 16384 and max_image_side() == 16384
    assert read_image_size(png_claiming(tmp_path / "crop.png", 16384, 16384)) == (16384, 16384)  # header only
    wide = png_claiming(tmp_path / "wide.png", 16385, 16384)
    with pytest.raises(ImageTooLarge) as err:
        read_image_size(wide)
    assert str(err.value) == f"{wide}: image of 16385x16384 pixels (268,451,840) {DEFAULT}"


def test_a_decompression_bomb_is_refused_before_decoding(tmp_path):
    bomb = png_claiming(tmp_path / "bomb.png", 50000, 50000)
    assert bomb.stat().st_size < 600
    for read in (read_image, read_mask, read_image_size, load_image):
        with pytest.raises(ImageTooLarge) as err:
            read(bomb)
        assert str(err.value) == bomb_message(bomb), read.__name__


def test_the_limit_is_configurable_and_applies_to_arrays_and_pil_images(tmp_path, monkeypatch):
    path = save(tmp_path / "a.png", np.zeros((16, 16, 3), dtype=np.uint8))
    monkeypatch.setenv("PYIMGANO_MAX_IMAGE_PIXELS", "200")
    limit = "image of 16x16 pixels (256) exceeds the limit of 200 pixels (set PYIMGANO_MAX_IMAGE_PIXELS to change it)"
    for image, source in [(path, str(path)), (np.zeros((16, 16), dtype=np.uint8), "image array"),
                          (Image.new("RGB", (16, 16)), "PIL image")]:
        with pytest.raises(ImageTooLarge) as err:
            load_image(image)
        assert str(err.value) == f"{source}: {limit}"
    assert load_image(np.zeros((12, 12), dtype=np.uint8)).shape == (12, 12, 3)
    set_max_image_pixels(300)  # the API sets the variable, so benchmark workers inherit it
    assert max_image_pixels() == 300 and read_image(path).shape == (16, 16, 3)
    set_max_image_pixels(None)
    assert max_image_pixels() == DEFAULT_MAX_IMAGE_PIXELS
    monkeypatch.setenv("PYIMGANO_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(InvalidParams, match="PYIMGANO_MAX_IMAGE_PIXELS='lots': expected a positive number of pixels"):
        read_image(path)
    with pytest.raises(InvalidParams, match="must be a positive integer, got 0"):
        set_max_image_pixels(0)


def test_fit_and_predict_refuse_the_bomb_in_one_line(hostile_site, tmp_path):
    train, test = tmp_path / "train", tmp_path / "test"
    for i in range(3):
        save(train / f"{i}.png", np.full((16, 16, 3), 100 + i, dtype=np.uint8))
        save(test / f"{i}.png", np.full((16, 16, 3), 100 + i, dtype=np.uint8))
    bomb = png_claiming(train / "bomb.png", 50000, 50000)
    fit = ["fit", "--detector", "hostile:crasher", "--train", str(train), "--out", str(tmp_path / "model")]
    result = run_cli(*fit, pythonpath=[hostile_site])
    assert result.returncode == 2 and result.stderr.splitlines()[-1] == f"error: {bomb_message(bomb)}"
    bomb.unlink()
    assert run_cli(*fit, pythonpath=[hostile_site]).returncode == 0
    bomb = png_claiming(test / "bomb.png", 50000, 50000)
    predict = ["predict", "--model", str(tmp_path / "model"), str(test), "--out", str(tmp_path / "pred")]
    result = run_cli(*predict, "--strict", pythonpath=[hostile_site])
    assert result.returncode == 2 and result.stderr.splitlines() == [f"error: {bomb_message(bomb)}"]
    assert not (tmp_path / "pred").exists()
    result = run_cli(*predict, pythonpath=[hostile_site])  # by default: skipped and reported, the rest scored
    assert result.returncode == 1 and "3 image(s) scored" in result.stdout and "1 image(s) could not be read" \
        in result.stdout
    rows = {Path(r["image"]).name: r for r in csv.DictReader(open(tmp_path / "pred" / "predictions.csv"))}
    assert rows["bomb.png"]["error"] == bomb_message(bomb) and rows["bomb.png"]["score"] == ""


@pytest.mark.parametrize("quick", [True, False])
def test_datasets_check_reports_the_bomb(tmp_path, quick):
    root = make_mvtec(tmp_path / "mvtec", {"alpha": 16})
    bomb = png_claiming(root / "alpha" / "test" / "good" / "bomb.png", 50000, 50000)
    result = run_cli("datasets", "check", "mvtec", "--root", str(root), *(["--quick"] if quick else []))
    assert result.returncode == 1 and result.stderr == ""
    assert result.stdout.splitlines()[1:] == [f"  - {bomb_message(bomb)}"]


@pytest.mark.parametrize("dataset", ["mvtec", "hostile:rawpil"])
def test_the_benchmark_error_names_the_file(hostile, tmp_path, dataset):
    root = make_mvtec(tmp_path / "data", {"alpha": 16})
    bomb = png_claiming(root / "alpha" / "test" / "good" / "bomb.png", 50000, 50000)
    config = BenchmarkConfig(detectors=[DetectorEntry(name="hostile:crasher")],
                             datasets=[DatasetEntry(name=dataset, root=str(root))], out=str(tmp_path / "out"))
    (run,) = run_benchmark(config, console=Console(file=io.StringIO())).runs
    assert run["status"] == "error"
    if dataset == "mvtec":  # the shared reader
        assert run["error"] == f"scoring: DatasetError: {bomb_message(bomb)}"
    else:  # a loader that calls PIL itself meets PIL's guard, which follows the pyimgano limit
        assert run["error"].startswith(f"scoring: DatasetError: {bomb}: cannot be loaded (DecompressionBombError: ")


def test_image_size_is_bounded_by_the_pixel_limit(tmp_path, monkeypatch):
    assert BenchmarkConfig(image_size=16384).image_size == 16384
    (tmp_path / "bench.toml").write_text("image_size = 20000\n")
    with pytest.raises(ConfigError, match=r"bench.toml: image_size: 20000 x 20000 = 400,000,000 pixels "
                                          r"exceeds the image limit of 268,435,456 pixels \(at most 16384; set "
                                          r"PYIMGANO_MAX_IMAGE_PIXELS to change it\)"):
        load_config_file(tmp_path / "bench.toml")
    result = run_cli("benchmark", "--image-size", "1000000", "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and result.stderr.splitlines() == [
        "error: invalid benchmark settings: image_size: 1000000 x 1000000 = 1,000,000,000,000 pixels "
        "exceeds the image limit of 268,435,456 pixels (at most 16384; set PYIMGANO_MAX_IMAGE_PIXELS to change it)"]
    assert not (tmp_path / "o").exists()
    monkeypatch.setenv("PYIMGANO_MAX_IMAGE_PIXELS", str(40000 * 40000))
    assert BenchmarkConfig(image_size=20000).image_size == 20000


def test_public_names():
    assert pyimgano.set_max_image_pixels is set_max_image_pixels and issubclass(ImageTooLarge, pyimgano.ImageLoadError)
    assert json.dumps(max_image_pixels()) == "268435456"
