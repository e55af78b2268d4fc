"""Files and folders that replace older ones appear whole or not at all (pyimgano.atomic)."""

from __future__ import annotations

import errno

import pytest

from pyimgano.atomic import CONTENTS_FILE, atomic_write, replacing_dir


def test_a_new_folder_appears_with_its_files_and_no_temporary_left(tmp_path):
    with replacing_dir(tmp_path / "model") as folder:
        (folder / "a.json").write_text("new")
    assert (tmp_path / "model" / "a.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_failure_half_way_keeps_the_old_folder_whole(tmp_path):
    target = tmp_path / "model"
    with replacing_dir(target) as folder:
        (folder / "state.npz").write_bytes(b"old state")
        (folder / "config.json").write_text("old")
    with pytest.raises(OSError, match="No space left"):
        with replacing_dir(target) as folder:
            (folder / "config.json").write_text("new")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert (target / "state.npz").read_bytes() == b"old state"
    assert (target / "config.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_finished_write_replaces_every_file_of_the_old_folder(tmp_path):
    target = tmp_path / "model"
    with replacing_dir(target) as folder:
        (folder / "stale.bin").write_bytes(b"x")
    with replacing_dir(target) as folder:
        (folder / "fresh.bin").write_bytes(b"y")
    assert sorted(p.name for p in target.iterdir()) == [CONTENTS_FILE, "fresh.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_file_in_the_way_is_refused_before_anything_is_written(tmp_path):
    (tmp_path / "model").write_text("not a folder")
    with pytest.raises(NotADirectoryError, match="model"):
        with replacing_dir(tmp_path / "model"):
            pytest.fail("the block must not run")
    assert (tmp_path / "model").read_text() == "not a folder"


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    atomic_write(path, "old")

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("pyimgano.atomic.os.fsync", full_disk)
    with pytest.raises(OSError):
        atomic_write(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_a_killed_run_s_staging_folder_is_removed_by_the_next_run_and_no_other(tmp_path):
    """A run killed with SIGKILL leaves its hidden staging folder; the next run into the same
    folder (it holds the lock, so no live run can own one) deletes it. Staging folders of other
    targets, the kept old folder of a swap cut short, and similar names stay."""
    target = tmp_path / "pred"
    dead = tmp_path / ".pred.k3x_9a0q.tmp"
    dead.mkdir()
    (dead / "half.png").write_bytes(b"x")
    others = [tmp_path / ".pred.x.k3x_9a0q.tmp",  # target "pred.x"
              tmp_path / ".pred2.k3x_9a0q.tmp",  # target "pred2"
              tmp_path / ".pred.old-k3x_9a0q",  # the old folder of a swap cut short
              tmp_path / ".pred.toolongname.tmp"]
    for other in others:
        other.mkdir()
    with replacing_dir(target, "predictions", durable=False) as tmp:
        (tmp / "scores.csv").write_text("a\n")
    assert not dead.exists()
    assert all(other.exists() for other in others)
    assert (target / "scores.csv").read_text() == "a\n"
