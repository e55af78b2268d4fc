"""Download against a local HTTP server on 127.0.0.1: progress, checksum, safe unpacking."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest
from dataset_trees import make_visa, synthetic_visa_rows

import pyimgano
from pyimgano import DatasetError
from pyimgano.cli import main
from pyimgano_datasets.download import download, fetch, safe_extract


@pytest.fixture
def server(tmp_path):
    """Serve tmp_path/www on an ephemeral port of 127.0.0.1; yields the base URL."""
    www = tmp_path / "www"
    www.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield www, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _visa_archive(tmp_path: Path, www: Path) -> tuple[Path, str]:
    tree = make_visa(tmp_path / "tree", synthetic_visa_rows())
    archive = www / "VisA_small.tar"
    with tarfile.open(archive, "w") as tf:
        for entry in sorted(tree.iterdir()):
            tf.add(entry, arcname=entry.name)
    return archive, hashlib.sha256(archive.read_bytes()).hexdigest()


def test_download_verifies_and_unpacks_visa(tmp_path, server):
    www, base = server
    archive, digest = _visa_archive(tmp_path, www)
    root = download("visa", tmp_path / "data", url=f"{base}/{archive.name}", sha256=digest, progress=False)
    assert root == tmp_path / "data"
    assert not (root / archive.name).exists()  # archive removed after unpacking
    ds = pyimgano.load_dataset("visa", root=root)
    assert ds.info.categories == ["candle", "fryum"] and ds.check() == []


def test_cli_download_with_progress_bar(tmp_path, server, capsys):
    www, base = server
    archive, digest = _visa_archive(tmp_path, www)
    rc = main(["datasets", "download", "visa", "--root", str(tmp_path / "d"), "--url", f"{base}/{archive.name}",
               "--sha256", digest, "--keep-archive"])
    assert rc == 0
    assert "visa is ready at" in capsys.readouterr().out
    assert (tmp_path / "d" / archive.name).is_file()
    assert (tmp_path / "d" / "split_csv" / "1cls.csv").is_file()


def test_checksum_mismatch_removes_the_file(tmp_path, server):
    www, base = server
    (www / "a.bin").write_bytes(b"x" * 3000)
    with pytest.raises(DatasetError, match="checksum mismatch"):
        fetch(f"{base}/a.bin", tmp_path / "a.bin", "0" * 64, progress=False)
    assert not (tmp_path / "a.bin").exists() and not (tmp_path / "a.bin.part").exists()


def test_unreachable_url_and_missing_checksum(tmp_path, server):
    _, base = server
    with pytest.raises(DatasetError, match="download failed"):
        fetch(f"{base}/missing.tar", tmp_path / "m.tar", None, progress=False)
    with pytest.raises(DatasetError, match="sha256"):
        download("visa", tmp_path, url=f"{base}/x.tar")


def test_licensed_sets_print_instructions(capsys):
    assert main(["datasets", "download", "mvtec"]) == 1
    out = capsys.readouterr().out
    assert "mvtec.com" in out and "licence" in out
    with pytest.raises(DatasetError, match="mvtec.com"):
        download("mvtec", "/tmp/unused")
    with pytest.raises(DatasetError, match="no download is known"):
        download("imagenet", "/tmp/unused")


def _tar_with(path: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    with tarfile.open(path, "w") as tf:
        tf.addfile(member, io.BytesIO(data) if data else None)
    return path


@pytest.mark.parametrize("name", ["../evil.txt", "/tmp/evil.txt", "ok/../../evil.txt"])
def test_tar_members_cannot_escape(tmp_path, name):
    info = tarfile.TarInfo(name)
    info.size = 4
    archive = _tar_with(tmp_path / "bad.tar", info, b"evil")
    target = tmp_path / "out"
    with pytest.raises(DatasetError, match="outside"):
        safe_extract(archive, target)
    assert not (tmp_path / "evil.txt").exists()
    assert not any(target.rglob("*"))


def test_tar_links_cannot_escape(tmp_path):
    link = tarfile.TarInfo("data/link")
    link.type = tarfile.SYMTYPE
    link.linkname = "../../etc/passwd"
    with pytest.raises(DatasetError, match="refusing link"):
        safe_extract(_tar_with(tmp_path / "link.tar", link), tmp_path / "out")
    device = tarfile.TarInfo("dev")
    device.type = tarfile.CHRTYPE
    with pytest.raises(DatasetError, match="special file"):
        safe_extract(_tar_with(tmp_path / "dev.tar", device), tmp_path / "out2")


def test_zip_members_cannot_escape(tmp_path):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("fine/a.txt", "ok")
        zf.writestr("../evil.txt", "evil")
    with pytest.raises(DatasetError, match="outside"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "out" / "fine").exists()
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("top/a.txt", "ok")
    assert safe_extract(good, tmp_path / "out") == [(tmp_path / "out" / "top").resolve()]
