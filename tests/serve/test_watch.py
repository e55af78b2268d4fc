"""``pyimgano watch``: every image scored once, whole files only, failures filed with their
reason, and exactly once over kills and restarts."""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from servetest import cli_env

import pyimgano
from pyimgano.service.settings import WatchSettings
from pyimgano.service.watch import Watcher
from pyimgano_testutils import plugin_on_path, run_cli


def records(out: Path) -> list[dict]:
    path = out / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def csv_rows(out: Path) -> list[dict]:
    with open(out / "results.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_watch_once_files_every_image_and_the_unreadable_ones_with_their_reason(serve_model, serve_site,
                                                                                 serve_data, tmp_path):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    for path in sorted((serve_data / "alpha" / "test").rglob("*.png")):
        shutil.copy(path, inbox / f"{path.parent.name}-{path.name}")
    (inbox / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (inbox / "notes.txt").write_text("left alone")
    (inbox / ".hidden.png").write_bytes(b"left alone")
    result = run_cli("watch", str(inbox), "--model", str(serve_model), "--out", str(out), "--once",
                     "--settle-s", "0", pythonpath=[serve_site])
    assert result.returncode == 0, result.stderr
    assert "stopped: 8 image(s) filed" in result.stdout
    assert sorted(p.name for p in inbox.iterdir()) == [".hidden.png", "notes.txt"]
    done = {r["image"]: r for r in records(out) if r["status"] == "done"}
    assert sorted(done) == sorted(p.name for p in (out / "done").iterdir()) and len(done) == 7
    assert all(done[n]["label"] == 1 and done[n]["regions"] for n in done if n.startswith("spot"))
    assert all(done[n]["label"] == 0 for n in done if n.startswith("good"))
    assert all((out / r["heatmap"]).is_file() and (out / r["mask"]).is_file() for r in done.values())
    (failed,) = [r for r in records(out) if r["status"] == "failed"]
    assert failed["file"] == "failed/broken.png" and (out / "failed" / "broken.png").is_file()
    reason = (out / "failed" / "broken.png.reason.txt").read_text().strip()
    assert reason == failed["error"] and reason.startswith("broken.png: unreadable image")
    rows = csv_rows(out)
    assert [r["id"] for r in rows] == [r["id"] for r in records(out)]
    assert {r["image"]: float(r["score"]) for r in rows if r["status"] == "done"} == {
        n: r["score"] for n, r in done.items()}


def test_a_file_still_being_written_is_not_read_until_it_is_complete(serve_model, serve_site, serve_data, tmp_path):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    data = sorted((serve_data / "alpha" / "test" / "spot").glob("*.png"))[0].read_bytes()
    process = subprocess.Popen([sys.executable, "-m", "pyimgano", "watch", str(inbox), "--model", str(serve_model),
                                "--out", str(out), "--settle-s", "0.6", "--poll-s", "0.05"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(serve_site))
    try:
        assert process.stdout.readline().startswith("watching")
        with open(inbox / "slow.png", "wb") as handle:  # a camera writing slowly: a few bytes every 0.2 s
            for start in range(0, len(data), max(1, len(data) // 8)):
                handle.write(data[start:start + max(1, len(data) // 8)])
                handle.flush()
                time.sleep(0.2)
                assert (inbox / "slow.png").exists(), "the file was taken while it was being written"
        deadline = time.monotonic() + 20
        while not records(out):
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    (record,) = records(out)
    assert record["status"] == "done" and record["label"] == 1, record
    assert (out / "done" / "slow.png").read_bytes() == data


def test_a_restart_repairs_what_a_kill_left_and_scores_nothing_twice(serve_model, serve_site, serve_data, tmp_path):
    """Each state a kill can leave, made by hand: a half-written last line, a record missing
    from the CSV, a claimed image with a record (not filed yet) and one without."""
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    spot = sorted((serve_data / "alpha" / "test" / "spot").glob("*.png"))
    with plugin_on_path(serve_site, modules=("benchtest_",)):
        pipe = pyimgano.load(serve_model)
        first = Watcher(pipe, inbox, out, WatchSettings(settle_s=0), log=lambda _: None)
        shutil.copy(spot[0], inbox / "a.png")
        shutil.copy(spot[1], inbox / "b.png")
        assert first.run(once=True) == 2
        a, b = records(out)
        # b was committed but the kill came before its CSV row and before it was filed
        shutil.move(out / b["file"], first.claimed / f"{b['id']}__b.png")
        lines = (out / "results.csv").read_text().splitlines(keepends=True)
        (out / "results.csv").write_text("".join(lines[:-1]) + lines[-1][:10])
        # c was claimed, then the kill came half-way through writing its record
        shutil.copy(spot[2], first.claimed / "20990101T000000000000Z-0001__c.png")
        with open(out / "results.jsonl", "a") as handle:
            handle.write('{"id": "20990101T000000000000Z-0001", "ima')
        second = Watcher(pipe, inbox, out, WatchSettings(settle_s=0), log=lambda _: None)
        assert second.run(once=True) == 1  # c only
    assert [r["image"] for r in records(out)] == ["a.png", "b.png", "c.png"]
    assert [r["image"] for r in csv_rows(out)] == ["a.png", "b.png", "c.png"]
    assert sorted(p.name for p in (out / "done").iterdir()) == ["a.png", "b.png", "c.png"]
    assert not [p for p in second.claimed.iterdir() if not p.name.startswith(".")]


def test_watch_killed_and_restarted_during_a_burst_scores_each_image_exactly_once(serve_model, serve_site,
                                                                                   serve_data, tmp_path):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    sources = sorted((serve_data / "alpha" / "test").rglob("*.png"))
    names = [f"part{i:03d}.png" for i in range(60)]
    for i, name in enumerate(names):  # the camera writes beside the folder and renames in, all at once
        tmp = inbox / f".{name}.tmp"
        shutil.copy(sources[i % len(sources)], tmp)
        os.rename(tmp, inbox / name)
    command = [sys.executable, "-m", "pyimgano", "watch", str(inbox), "--model", str(serve_model), "--out", str(out),
               "--settle-s", "0", "--poll-s", "0.05", "--max-batch", "2"]
    rng = random.Random(0)
    kills = 0
    for _ in range(6):
        before = len(records(out))
        if before == len(names):
            break
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=cli_env(serve_site))
        deadline = time.monotonic() + 30
        while len(records(out)) < min(before + 1, len(names)):  # killed while it files, not while it starts
            assert time.monotonic() < deadline and process.poll() is None, process.stderr.read()
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.05))
        process.kill()
        process.communicate()
        kills += 1
    final = run_cli("watch", str(inbox), "--model", str(serve_model), "--out", str(out), "--once", "--settle-s", "0",
                    pythonpath=[serve_site])
    assert final.returncode == 0, final.stderr
    assert kills >= 2
    seen = [r["image"] for r in records(out)]
    assert sorted(seen) == names, "an image was lost or scored twice"
    assert sorted(r["image"] for r in csv_rows(out)) == names
    assert sorted(p.name for p in (out / "done").iterdir()) == names
    assert all(r["status"] == "done" for r in records(out))
    assert [p.name for p in inbox.iterdir() if not p.name.startswith(".")] == []


def test_bad_watch_arguments_are_one_line_errors(serve_model, serve_site, tmp_path):
    result = run_cli("watch", str(tmp_path / "absent"), "--model", str(serve_model), "--out", str(tmp_path / "out"),
                     pythonpath=[serve_site])
    assert result.returncode == 2 and result.stderr.strip() == f"error: {tmp_path / 'absent'}: no such folder to watch"
    result = run_cli("watch", str(tmp_path), "--model", str(serve_model), "--out", str(tmp_path / "out"),
                     "--poll-s", "0", pythonpath=[serve_site])
    assert result.returncode == 2 and result.stderr.strip() == "error: poll_s 0.0: Input should be greater than 0"
