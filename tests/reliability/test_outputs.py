"""Outputs that replace older ones: a full disk is one line, and what was written before stays whole."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
from reliability_helpers import benchtest, make_visa, visa_rows

from pyimgano.atomic import atomic_copy
from pyimgano.cli import main


def _bench(out: Path, root: Path, *extra: str) -> list[str]:
    return ["benchmark", "--detector", "hostile:crasher", "--dataset", "mvtec", "--root", str(root),
            "--overlays", "0", "--out", str(out), "--no-progress", "--in-process", *extra]


def _disk_fills(monkeypatch, fail_at: int) -> list[str]:
    """The ``fail_at``-th whole-benchmark file the driver writes meets a full disk (counting from 1)."""
    import pyimgano.benchmark.runner as runner

    real, written = runner.atomic_write, []

    def atomic_write(path, data):
        written.append(Path(path).name)
        if len(written) == fail_at:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(runner, "atomic_write", atomic_write)
    return written


def test_a_full_disk_at_the_final_report_flush_is_one_line_and_keeps_earlier_files(
        hostile, mvtec_root, tmp_path, monkeypatch, capsys):
    out = tmp_path / "bench"
    # config.json, then the first result's flush (csv, summary, report); the final flush fails at its csv
    written = _disk_fills(monkeypatch, fail_at=5)
    assert main(_bench(out, mvtec_root, "--flush-interval", "1000")) == 3
    assert written == ["config.json", "results.csv", "summary.md", "report.html", "results.csv"]
    assert capsys.readouterr().err.splitlines() == [
        f"error: {out}: the benchmark finished, but its results and report could not be written (No space left "
        f"on device); every run is recorded in {out / 'jobs'} and the files written before are intact; free space "
        "and rerun the same command to write them (finished runs are skipped)"]
    assert [r["run"]["status"] for r in benchtest.load_records(out)] == ["ok", "ok"]
    for name in ("results.csv", "summary.md"):  # the first flush's files, whole
        assert (out / name).read_text().count("hostile:crasher") >= 1
    assert len((out / "results.csv").read_text().splitlines()) == 2  # header + the first run
    assert (out / "report.html").read_text().rstrip().endswith("</html>")
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no partial temporary file
    monkeypatch.undo()
    assert main(_bench(out, mvtec_root, "--flush-interval", "1000")) == 0  # the rerun writes them
    assert "2 already finished there (skipped" in capsys.readouterr().out
    assert len((out / "results.csv").read_text().splitlines()) == 3
    assert [r["status"] for r in json.loads((out / "results.json").read_text())["runs"]] == ["ok", "ok"]


def test_a_full_disk_at_an_intermediate_flush_is_a_warning_and_the_files_are_written_later(
        hostile, mvtec_root, tmp_path, monkeypatch, capsys):
    out = tmp_path / "bench"
    _disk_fills(monkeypatch, fail_at=2)  # the first result's csv
    assert main(_bench(out, mvtec_root, "--flush-interval", "0")) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert ("warning: results and report not updated (No space left on device); the run records are saved, the "
            "files are written again later") in " ".join(captured.out.split())
    assert len((out / "results.csv").read_text().splitlines()) == 3


def test_an_output_folder_that_cannot_be_created_is_one_line_before_anything_runs(hostile, mvtec_root, tmp_path,
                                                                                  capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(_bench(blocker / "bench", mvtec_root)) == 3
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: {blocker / 'bench'}: could not write the benchmark's files (")
    assert line.endswith("Not a directory); nothing was run")


def test_an_interrupted_copy_leaves_no_partial_file(tmp_path, monkeypatch):
    source = tmp_path / "image.png"
    source.write_bytes(os.urandom(4096))
    target = tmp_path / "out" / "image.png"

    def copy_half(src, dst, **_):
        Path(dst).write_bytes(Path(src).read_bytes()[:100])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("pyimgano.atomic.shutil.copy2", copy_half)
    with pytest.raises(OSError, match="No space left"):
        atomic_copy(source, target)
    assert list(target.parent.iterdir()) == []  # a rerun does not take a truncated copy for done
    monkeypatch.undo()
    atomic_copy(source, target)
    assert target.read_bytes() == source.read_bytes()


def test_visa_prepare_copies_whole_files(tmp_path):
    from pyimgano_datasets.visa import prepare_visa

    root = make_visa(tmp_path / "visa", visa_rows())
    out = prepare_visa(root, tmp_path / "mvtec", link=False)
    copies = sorted(out.rglob("*.png"))
    assert copies and not [p for p in out.rglob(".*")]
    mask = next(p for p in copies if p.name.endswith("_mask.png"))
    from PIL import Image

    assert set(np.unique(np.asarray(Image.open(mask)))) == {0, 255}
