"""Paths read from data files stay inside their root; archives unpack safely or not at all."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest
from reliability_helpers import make_visa, visa_rows

import pyimgano
from pyimgano import DatasetError
from pyimgano_datasets import download as download_module
from pyimgano_datasets.download import safe_extract
from pyimgano_datasets.visa import prepare_visa
from pyimgano_testutils import run_cli


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


# -- VisA split files ----------------------------------------------------------------------
def hostile_rows(column: str, value: str) -> list[dict[str, str]]:
    rows = visa_rows()
    rows[4] = {**rows[4], column: value}  # line 6 of the file: the first defect
    return rows


@pytest.mark.parametrize(("column", "value", "expected"), [
    ("object", "../../escaped", "object '../../escaped' is not a plain folder name"),
    ("object", "/tmp/escaped-abs", "object '/tmp/escaped-abs' is not a plain folder name"),
    ("image", "../../outside.png", "image path '../../outside.png' points outside the root"),
    ("image", "/etc/passwd", "image path '/etc/passwd' points outside the root"),
    ("mask", "candle/../../../m.png", "mask path 'candle/../../../m.png' points outside the root"),
    ("image", "..\\..\\windows.png", "image path '..\\\\..\\\\windows.png' points outside the root"),
])
def test_visa_paths_outside_the_root_are_refused(tmp_path, column, value, expected):
    root = make_visa(tmp_path / "visa", hostile_rows(column, value))
    split = root / "split_csv" / "1cls.csv"
    out = tmp_path / "deep" / "er" / "out"
    before = tree(tmp_path)
    with pytest.raises(DatasetError) as err:
        prepare_visa(root, out)
    message = str(err.value)
    assert message.startswith(f"{split}: line 6: {expected}") and str(root) in message and "\n" not in message
    assert tree(tmp_path) == before  # nothing written, inside --out or outside it
    with pytest.raises(DatasetError, match="line 6"):
        pyimgano.load_dataset("visa", root=root).info
    result = run_cli("datasets", "check", "visa", "--root", str(root))
    assert result.returncode == 1 and result.stdout.splitlines()[1:] == [f"  - {message}"]


def test_visa_paths_that_stay_inside_are_normalised(tmp_path):
    rows = visa_rows()
    rows[0] = {**rows[0], "image": "./candle/Data/../Data/Images/Normal/0000.png"}
    root = make_visa(tmp_path / "visa", rows)
    ds = pyimgano.load_dataset("visa", root=root, category="candle")
    assert ds.train[0].image_path == root / "candle/Data/Images/Normal/0000.png"
    assert ds.check() == []


# -- archives -------------------------------------------------------------------------------
@pytest.fixture(params=["data filter", "own checks"])
def extraction(request, monkeypatch):
    """Every archive test runs with tarfile's data filter and with the checks for Pythons without it."""
    if request.param == "own checks":
        monkeypatch.setattr(download_module, "has_data_filter", lambda: False)
    elif not download_module.has_data_filter():
        pytest.skip("this Python has no tarfile data filter")
    return request.param


def make_tar(path: Path, *members: tuple[tarfile.TarInfo, bytes | None], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "", mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, mode
    return info


GOOD = [(member("data/"  , tarfile.DIRTYPE, mode=0o755), None), (member("data/a.txt"), b"fine")]


@pytest.mark.parametrize(("bad", "expected"), [
    ((member("/tmp/abs-evil.txt"), b"x"), "refusing member '/tmp/abs-evil.txt': it would be written outside"),
    ((member("data/../../evil.txt"), b"x"), "refusing member 'data/../../evil.txt': it would be written outside"),
    ((member("data/up", tarfile.SYMTYPE, "../../.."), None), "refusing link 'data/up' -> '../../..' outside"),
    ((member("data/etc", tarfile.SYMTYPE, "/etc"), None), "refusing link 'data/etc' -> '/etc' outside"),
    ((member("data/hard", tarfile.LNKTYPE, "../../etc/passwd"), None),
     "refusing link 'data/hard' -> '../../etc/passwd' outside"),
    ((member("data/dev", tarfile.CHRTYPE), None), "refusing special file 'data/dev' (device, FIFO or unknown type)"),
    ((member("data/fifo", tarfile.FIFOTYPE), None), "refusing special file 'data/fifo' (device, FIFO or unknown type)"),
])
def test_hostile_tar_members_leave_nothing_behind(tmp_path, extraction, bad, expected):
    archive = make_tar(tmp_path / "bad.tar", *GOOD, bad)  # the good members come first
    target = tmp_path / "out"
    with pytest.raises(DatasetError) as err:
        safe_extract(archive, target)
    assert str(err.value).startswith(f"{archive}: {expected}")
    assert tree(target) == set() and tree(tmp_path) == {"bad.tar", "out"}


def test_setuid_bits_and_group_write_are_dropped_links_inside_are_kept(tmp_path, extraction):
    archive = make_tar(tmp_path / "ok.tar", *GOOD, (member("data/tool", mode=0o6777), b"#!/bin/sh\n"),
                       (member("data/link", tarfile.SYMTYPE, "a.txt"), None),
                       (member("data/copy", tarfile.LNKTYPE, "data/a.txt"), None))
    assert safe_extract(archive, tmp_path / "out") == [(tmp_path / "out" / "data").resolve()]
    tool = tmp_path / "out" / "data" / "tool"
    assert stat.S_IMODE(tool.stat().st_mode) == 0o755
    assert (tmp_path / "out" / "data" / "link").read_text() == "fine" == (tmp_path / "out/data/copy").read_text()


@pytest.mark.parametrize("kind", ["truncated tar.gz", "garbage tar", "truncated zip", "bad zip crc"])
def test_a_corrupt_archive_is_one_line_and_leaves_nothing(tmp_path, extraction, kind):
    big = os.urandom(200_000)
    if kind == "truncated tar.gz":
        full = make_tar(tmp_path / "full.tar.gz", *GOOD, (member("data/big.bin"), big), mode="w:gz")
        archive = tmp_path / "cut.tar.gz"
        archive.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
        full.unlink()
    elif kind == "garbage tar":
        archive = tmp_path / "garbage.tar"
        good = make_tar(tmp_path / "g.tar", *GOOD).read_bytes()
        archive.write_bytes(good[:512] + os.urandom(4096))
        (tmp_path / "g.tar").unlink()
    else:
        archive = tmp_path / "bad.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("data/a.txt", "fine")
            zf.writestr("data/big.bin", big)
        data = bytearray(archive.read_bytes())
        if kind == "truncated zip":
            data = data[:-40]  # the end of the central directory is gone
        else:
            start = data.index(b"data/big.bin") + len("data/big.bin") + 1000
            data[start : start + 64] = os.urandom(64)  # corrupt the compressed bytes of a member
        archive.write_bytes(bytes(data))
    target = tmp_path / "out"
    with pytest.raises(DatasetError) as err:
        safe_extract(archive, target)
    message = str(err.value)
    assert message.startswith(f"{archive}: ") and "\n" not in message
    assert "corrupt" in message or "not a tar or zip archive" in message
    assert tree(target) == set()


def test_unpacking_never_overwrites(tmp_path, extraction):
    archive = make_tar(tmp_path / "ok.tar", *GOOD)
    target = tmp_path / "out"
    (target / "data").mkdir(parents=True)
    (target / "data" / "a.txt").write_text("mine")
    with pytest.raises(DatasetError, match=f"{target.resolve() / 'data'} already exists; remove it or unpack"):
        safe_extract(archive, target)
    assert (target / "data" / "a.txt").read_text() == "mine" and tree(target) == {"data", "data/a.txt"}


def test_cli_download_of_a_corrupt_archive_is_one_line_and_unpacks_nothing(tmp_path):
    full = make_tar(tmp_path / "full.tar.gz", *GOOD, (member("data/big.bin"), os.urandom(100_000)), mode="w:gz")
    archive = tmp_path / "VisA.tar.gz"
    archive.write_bytes(full.read_bytes()[:-5000])
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    root = tmp_path / "root"
    result = run_cli("datasets", "download", "visa", "--root", str(root), "--url", archive.as_uri(),
                     "--sha256", digest, "--no-progress")
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"error: {root / archive.name}: corrupt or unreadable archive")
    assert tree(root) == {archive.name}  # the verified download is kept for a retry; nothing unpacked
