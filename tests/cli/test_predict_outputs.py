"""``pyimgano predict`` and ``fit``: outputs whole or not at all, one run at a time, unreadable images reported."""

from __future__ import annotations

import csv
import errno
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from pyimgano.atomic import CONTENTS_FILE, output_lock
from pyimgano.cli import main


@pytest.fixture
def model(cli_plugin, cli_toy_root, tmp_path) -> Path:
    out = tmp_path / "model"
    assert main(["fit", "--detector", "benchtest:mean", "--train", str(cli_toy_root / "alpha" / "train"),
                 "--out", str(out)]) == 0
    return out


@pytest.fixture
def images(cli_toy_root, tmp_path) -> Path:
    """Three good test images and one corrupt file, in a folder of their own."""
    folder = tmp_path / "images"
    folder.mkdir()
    for path in sorted((cli_toy_root / "alpha" / "test").rglob("*.png"))[:3]:
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png")
    return folder


def _rows(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "predictions.csv", newline="") as handle:
        return {Path(row["image"]).name: row for row in csv.DictReader(handle)}


def _beside(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}"))


# -- unreadable images ------------------------------------------------------------------------
def test_an_unreadable_image_is_skipped_and_reported_the_others_scored(model, images, tmp_path, capsys):
    out = tmp_path / "pred"
    capsys.readouterr()
    assert main(["predict", "--model", str(model), str(images), "--out", str(out), "--save-json"]) == 1
    summary = capsys.readouterr().out.strip()
    assert summary.startswith("3 image(s) scored") and "; 1 image(s) could not be read: skipped, each row in " \
        "predictions.csv names its error" in summary
    rows = _rows(out)
    assert list(rows) == sorted(rows) and len(rows) == 4  # every image, in input order
    assert rows["broken.png"]["error"].startswith(f"{images / 'broken.png'}: unreadable image")
    assert rows["broken.png"]["score"] == "" and all(rows[n]["score"] and not rows[n]["error"]
                                                      for n in rows if n != "broken.png")
    document = json.loads((out / "predictions.json").read_text())
    assert [item.get("error") is not None for item in document["images"]].count(True) == 1


def test_json_summary_counts_the_failed_images(model, images, tmp_path, capsys):
    capsys.readouterr()
    assert main(["predict", "--model", str(model), str(images), "--out", str(tmp_path / "p"), "--json"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert (summary["n_images"], summary["n_failed"]) == (3, 1)


def test_strict_stops_at_the_first_unreadable_image_and_writes_nothing(model, images, tmp_path, capsys):
    out = tmp_path / "pred"
    assert main(["predict", "--model", str(model), str(images), "--out", str(out), "--strict"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "broken.png: unreadable image" in err
    assert not out.exists() and _beside(out) == []


# -- where the output goes ------------------------------------------------------------------------
def test_an_out_inside_an_input_folder_is_refused(model, images, capsys):
    assert main(["predict", "--model", str(model), str(images), "--out", str(images / "preds")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: --out {images / 'preds'} is inside the input folder {images}: a later run would score "
                   "its own heatmaps and masks as images; choose an --out outside it")
    assert not (images / "preds").exists()


def test_an_out_that_holds_input_images_is_refused(model, images, capsys):
    out = images.parent / "pred"
    assert main(["predict", "--model", str(model), str(images / "*.png"), "--out", str(out)]) == 1
    # a glob reaching into the earlier output: its masks would be scored as images
    assert main(["predict", "--model", str(model), str(images.parent / "**" / "*.png"), "--out", str(out)]) == 2
    assert "holds the input image" in capsys.readouterr().err


def test_predict_refuses_a_folder_of_other_files_and_replaces_its_own_output_whole(model, images, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert main(["predict", "--model", str(model), str(images), "--out", str(mine)]) == 2
    assert "is not a pyimgano predict output (no predictions.csv)" in capsys.readouterr().err
    out = tmp_path / "pred"
    assert main(["predict", "--model", str(model), str(images), "--out", str(out)]) == 1
    first = sorted(p.name for p in (out / "masks").iterdir())
    one = sorted(images.glob("*.png"))[0]
    assert main(["predict", "--model", str(model), str(one), "--out", str(out)]) == 0
    assert len(first) == 3 and sorted(p.name for p in (out / "masks").iterdir()) == [f"{one.stem}.png"]
    assert list(_rows(out)) == [one.name] and (out / CONTENTS_FILE).is_file() and _beside(out) == []
    (out / "masks" / "mine.png").write_bytes(b"the user's")  # a file the run did not write
    assert main(["predict", "--model", str(model), str(one), "--out", str(out)]) == 2
    assert "a pyimgano predict output that also holds 1 file(s) it did not write (masks/mine.png)" \
        in capsys.readouterr().err


def test_a_second_run_into_the_same_out_is_refused_while_the_first_writes(model, images, tmp_path, capsys):
    out = tmp_path / "pred"
    with output_lock(out, wait=False):  # what a running predict holds
        assert main(["predict", "--model", str(model), str(images), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {out}: another pyimgano run is writing there (it holds {out.parent / '.pred.lock'}); "
                   "wait for it to finish or choose another output folder")
    assert not out.exists() and _beside(out) == []
    assert main(["predict", "--model", str(model), str(images), "--out", str(out)]) == 1  # the lock went with it


def test_sigterm_half_way_leaves_the_earlier_output_as_it_was(model, images, tmp_path, monkeypatch):
    from pyimgano.pipeline import Pipeline

    out = tmp_path / "pred"
    one = sorted(images.glob("*.png"))[0]
    assert main(["predict", "--model", str(model), str(one), "--out", str(out)]) == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    real = Pipeline.predict

    def terminated(self, batch):
        result = real(self, batch)
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while the outputs are being written
        return result

    monkeypatch.setattr(Pipeline, "predict", terminated)
    with pytest.raises(SystemExit) as stop:
        main(["predict", "--model", str(model), str(images), "--out", str(out)])
    assert stop.value.code == 143
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert _beside(out) == []  # no staged folder, no lock left beside it
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def _no_space(path: str) -> OSError:
    return OSError(errno.ENOSPC, "No space left on device", path)


def test_a_full_disk_during_predict_names_the_out_folder(model, images, tmp_path, monkeypatch, capsys):
    import pyimgano.cli.predict as predict

    out = tmp_path / "pred"

    def full(image, amap, lo, hi, path, max_side=1024):
        raise _no_space(str(path))

    monkeypatch.setattr(predict, "heatmap_png", full)
    assert main(["predict", "--model", str(model), str(images), "--out", str(out)]) == 3
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {out}: the pyimgano predict output could not be saved (No space left on device); "
                   "nothing was left there")
    assert not out.exists() and _beside(out) == []


def test_a_full_disk_during_fit_names_the_out_folder_not_a_hidden_one(cli_plugin, cli_toy_root, model, monkeypatch,
                                                                      capsys):
    real = np.savez

    def savez(path, **arrays):
        real(path, **arrays)
        raise _no_space(str(path))

    monkeypatch.setattr("pyimgano.detector.np.savez", savez)
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    assert main(["fit", "--detector", "benchtest:mean", "--train", str(cli_toy_root / "alpha" / "train"),
                 "--out", str(model)]) == 3
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (f"error: {model}: the model could not be saved (No space left on device); "
                   "the model saved there before is intact")
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before and _beside(model) == []


def test_predicting_through_a_link_replaces_the_folder_it_points_to(model, images, tmp_path):
    real, link = tmp_path / "real", tmp_path / "current"
    one = sorted(images.glob("*.png"))[0]
    assert main(["predict", "--model", str(model), str(one), "--out", str(real)]) == 0
    link.symlink_to(real)
    assert main(["predict", "--model", str(model), str(images), "--out", str(link)]) == 1
    assert link.is_symlink() and len(_rows(real)) == 4
