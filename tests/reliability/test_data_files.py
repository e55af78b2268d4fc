"""Data files as users write them: spreadsheet CSVs, odd configs; checks for what misleads a benchmark."""

from __future__ import annotations

import os

import numpy as np
import pytest
from reliability_helpers import VISA_COLUMNS, make_mvtec, make_visa, save, visa_rows

import pyimgano
from pyimgano import DatasetError
from pyimgano.benchmark.config import ConfigError, load_config_file
from pyimgano_testutils import run_cli


def counts(root):
    info = pyimgano.load_dataset("visa", root=root).info
    return {cat: {split: (c.good, c.defect) for split, c in per.items()} for cat, per in info.counts.items()}


EXPECTED = {"candle": {"train": (3, 0), "test": (1, 2)}}


def csv_text(rows, delimiter=",", header=VISA_COLUMNS, newline="\r\n"):
    lines = [delimiter.join(header)] + [delimiter.join(row[c] for c in VISA_COLUMNS) for row in rows]
    return newline.join(lines) + newline


# -- split CSVs saved by spreadsheet programs ---------------------------------------------
@pytest.mark.parametrize("variant", ["utf-8 with BOM", "cp1252", "utf-16 tabs", "semicolons, capitals"])
def test_spreadsheet_csvs_read_like_the_original(tmp_path, variant):
    rows = visa_rows()
    rows[4] = {**rows[4], "image": "candle/Data/Images/Anomaly/défaut.png"}  # a name with an accent
    root = make_visa(tmp_path, rows)  # files named in UTF-8, as on disk
    split = root / "split_csv" / "1cls.csv"
    if variant == "utf-8 with BOM":
        split.write_bytes(b"\xef\xbb\xbf" + csv_text(rows).encode("utf-8"))
    elif variant == "cp1252":
        split.write_bytes(csv_text(rows).encode("cp1252"))
    elif variant == "utf-16 tabs":  # Excel's "Unicode text"
        split.write_bytes(csv_text(rows, "\t").encode("utf-16"))
    else:
        capital = [{**r, "label": r["label"].capitalize()} for r in rows]
        split.write_bytes(csv_text(capital, ";", [c.capitalize() for c in VISA_COLUMNS]).encode("utf-8"))
    assert counts(root) == EXPECTED
    ds = pyimgano.load_dataset("visa", root=root, category="candle")
    assert any(s.image_path.name == "défaut.png" and s.image_path.is_file() for s in ds.test)
    assert ds.check() == []


@pytest.mark.parametrize(("data", "expected"), [
    (os.urandom(64) + b"\x00" + os.urandom(64), "binary data, not a text file (control byte 0x"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "binary data, not a text file (control byte 0x1a at offset 6)"),
    (b"object;split\nx;y\n", "split file lacks the header object,split,label,image,mask (first line: 'object;split')"),
])
def test_a_split_file_that_is_not_a_split_csv_is_one_line(tmp_path, data, expected):
    root = make_visa(tmp_path, visa_rows())
    split = root / "split_csv" / "1cls.csv"
    split.write_bytes(data)
    with pytest.raises(DatasetError) as err:
        pyimgano.load_dataset("visa", root=root).info
    assert str(err.value).startswith(f"{split}: {expected}") and "\n" not in str(err.value)
    result = run_cli("datasets", "check", "visa", "--root", str(root))
    assert result.returncode == 1 and result.stdout.splitlines()[1:] == [f"  - {err.value}"]


# -- bench.toml -------------------------------------------------------------------------------
@pytest.mark.parametrize(("data", "expected"), [
    (b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)), "binary data, not a text file (control byte 0x7f at offset 0)"),
    ('out = "résultats"\n'.encode("latin-1"), "not UTF-8 text (byte 0xe9 at offset 8); save it as UTF-8"),
    (b"\xff\xfe" + "jobs = 2\n".encode("utf-16-le") + b"\x00", "starts with a UTF-16 byte-order mark but is not"),
])
def test_a_bench_toml_that_is_not_text_is_one_line(tmp_path, data, expected):
    path = tmp_path / "bench.toml"
    path.write_bytes(data)
    with pytest.raises(ConfigError) as err:
        load_config_file(path)
    assert str(err.value).startswith(f"{path}: {expected}")
    result = run_cli("benchmark", "--config", str(path))
    assert result.returncode == 2 and result.stderr.splitlines() == [f"error: {err.value}"]


def test_a_bench_toml_with_a_byte_order_mark_is_read(tmp_path):
    (tmp_path / "bench.toml").write_bytes(b"\xef\xbb\xbfjobs = 2\r\nout = \"r\xc3\xa9s\"\r\n")
    config = load_config_file(tmp_path / "bench.toml")
    assert config.jobs == 2 and config.out == str(tmp_path / "rés")
    (tmp_path / "dir.toml").mkdir()
    with pytest.raises(ConfigError, match="dir.toml: is a directory, not a file"):
        load_config_file(tmp_path / "dir.toml")


# -- datasets check: what would mislead a benchmark ------------------------------------------
def test_check_reports_an_image_in_both_train_and_test(tmp_path):
    rows = visa_rows()
    rows[3] = {**rows[3], "image": rows[0]["image"]}  # the good test image is a training image
    root = make_visa(tmp_path, rows)
    image = root / rows[0]["image"]
    assert [str(p) for p in pyimgano.load_dataset("visa", root=root).check()] == [
        f"{image}: listed in both train and test: its test score would be inflated"]
    folder = pyimgano.load_dataset("folder", train_good=[root / "candle/Data/Images/Normal"],
                                   test_good=[image], test_defect=[root / "candle/Data/Images/Anomaly"])
    assert [p.message for p in folder.check()] == ["listed in both train and test: its test score would be inflated"]


def test_check_reports_an_empty_defect_mask(tmp_path):
    root = make_mvtec(tmp_path, {"alpha": 16})
    mask = root / "alpha" / "ground_truth" / "spot" / "001_mask.png"
    save(mask, np.zeros((16, 16), dtype=np.uint8))
    expected = f"{mask}: defect mask of 001.png is empty (no defect pixel): pixel metrics would count the defect as missed"
    ds = pyimgano.load_dataset("mvtec", root=root)
    assert [str(p) for p in ds.check()] == [expected]
    assert ds.check(read_pixels=False) == []  # --quick reads headers only
    result = run_cli("datasets", "check", "mvtec", "--root", str(root))
    assert result.returncode == 1 and result.stdout.splitlines()[1:] == [f"  - {expected}"]


def test_check_reports_a_defect_without_a_mask_among_defects_with_masks(tmp_path):
    root = make_mvtec(tmp_path, {"alpha": 16})
    (root / "alpha" / "ground_truth" / "spot" / "001_mask.png").unlink()
    image = root / "alpha" / "test" / "spot" / "001.png"
    ds = pyimgano.load_dataset("folder", root=root)  # masks optional: loading works, pixel metrics would not
    assert [str(p) for p in ds.check()] == [
        f"{image}: defect image without a mask while 3 other(s) have one: the benchmark skips pixel metrics "
        "for the whole category"]
    assert [str(p) for p in pyimgano.load_dataset("folder", root=root, masks="none").check()] == []
    for mask in (root / "alpha" / "ground_truth" / "spot").iterdir():
        mask.unlink()
    assert pyimgano.load_dataset("folder", root=root).check() == []  # no masks at all: an image-level set


# -- file names the file system allows ---------------------------------------------------------
def test_a_file_name_that_is_not_utf8_survives_the_benchmark_driver(hostile, tmp_path):
    import io
    import json

    from reliability_helpers import benchtest
    from rich.console import Console

    from pyimgano.benchmark.config import BenchmarkConfig, DatasetEntry, DetectorEntry
    from pyimgano.benchmark.runner import run_benchmark

    root = make_mvtec(tmp_path / "data", {"alpha": 16})
    spot, truth = root / "alpha" / "test" / "spot", root / "alpha" / "ground_truth" / "spot"
    # "!" sorts first: the image gets an overlay
    os.rename(spot / "000.png", os.fsdecode(os.fsencode(spot) + b"/!d\xe9f \xff.png"))
    os.rename(truth / "000_mask.png", os.fsdecode(os.fsencode(truth) + b"/!d\xe9f \xff_mask.png"))
    config = BenchmarkConfig(detectors=[DetectorEntry(name="hostile:crasher")],
                             datasets=[DatasetEntry(name="mvtec", root=str(root))], out=str(tmp_path / "out"))
    console = Console(file=io.StringIO())
    (run,) = run_benchmark(config, console=console).runs
    assert run["status"] == "ok" and run["metrics"]["aupro"] is not None
    (record,) = benchtest.load_records(tmp_path / "out")
    scores = (tmp_path / "out" / record["scores_file"]).read_bytes()
    assert os.fsencode(spot) + b"/!d\xe9f \xff.png,1,spot," in scores  # the name's own bytes
    assert any(name.endswith("_spot_-d-f-.jpg") for name in record["overlays"])  # its heatmap, captioned
    assert json.loads((tmp_path / "out" / "results.json").read_text())["runs"][0]["status"] == "ok"
    assert len(run_benchmark(config, console=console).skipped) == 1  # the record reads back: a rerun skips it
