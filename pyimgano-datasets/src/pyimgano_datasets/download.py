"""Fetch a public data set archive: progress bar, SHA-256 check, safe unpacking.

Only VisA has a public archive. MVTec AD and BTAD require accepting their licences on the
publishers' sites, so :func:`download` prints instructions for them instead of fetching.
Unpacking refuses members that would land outside the target folder (absolute paths,
``..``, links pointing out, device files) on every supported Python, and a corrupt or
refused archive leaves nothing unpacked (see :func:`safe_extract`).
"""

from __future__ import annotations

import hashlib
import lzma
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pyimgano.errors import DatasetError
from pyimgano.userfiles import sha256_file

CHUNK = 1 << 20


@dataclass(frozen=True)
class Archive:
    name: str
    url: str
    sha256: str
    licence: str


ARCHIVES = {
    "visa": Archive(
        name="visa",
        url="https://amazon-visual-anomaly.s3.us-west-2.amazonaws.com/VisA_20220922.tar",
        sha256="2eb8690c803ab37de0324772964100169ec8ba1fa3f7e94291c9ca673f40f362",
        licence="CC BY 4.0 (https://github.com/amazon-science/spot-diff)",
    ),
}

LICENCE_INSTRUCTIONS = {
    "mvtec": (
        "MVTec AD is distributed under CC BY-NC-SA 4.0 and must be downloaded by you after accepting\n"
        "its licence: visit https://www.mvtec.com/company/research/datasets/mvtec-ad, fill in the form,\n"
        "download mvtec_anomaly_detection.tar.xz and unpack it:\n"
        "    tar -xf mvtec_anomaly_detection.tar.xz -C DIR\n"
        "then use it with: pyimgano datasets check mvtec --root DIR"
    ),
    "btad": (
        "BTAD (BeanTech Anomaly Detection) is distributed under CC BY-SA 4.0 by its authors; download\n"
        "BTech_Dataset_transformed.zip from the link on https://github.com/pankajmishra000/VT-ADL,\n"
        "unpack it to DIR (it holds 01/, 02/, 03/) and use: pyimgano datasets check btad --root DIR"
    ),
}


def sha256_of(path: Path) -> str:
    return sha256_file(path, CHUNK)[0]


def fetch(url: str, dest: Path, sha256: str | None, *, progress: bool = True, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` (via ``dest.part``) and verify its SHA-256.

    An existing ``dest`` whose checksum matches is reused without downloading.
    """
    dest = Path(dest)
    if dest.is_file() and (sha256 is None or sha256_of(dest) == sha256.lower()):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DatasetError(f"{url}: download failed ({exc})") from None
    digest = hashlib.sha256()
    with response, open(part, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        bar = _progress(dest.name, total) if progress else None
        try:
            for block in iter(lambda: response.read(CHUNK), b""):
                out.write(block)
                digest.update(block)
                if bar is not None:
                    bar[0].update(bar[1], advance=len(block))
        except OSError as exc:
            raise DatasetError(f"{url}: download interrupted ({exc}); run the command again") from None
        finally:
            if bar is not None:
                bar[0].stop()
    actual = digest.hexdigest()
    if sha256 is not None and actual != sha256.lower():
        part.unlink(missing_ok=True)
        raise DatasetError(f"{dest}: checksum mismatch: SHA-256 {actual}, expected {sha256.lower()} (file removed)")
    os.replace(part, dest)
    return dest


def _progress(label: str, total: int | None):
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        transient=False,
    )
    bar.start()
    return bar, bar.add_task(label, total=total)


def _check_member(name: str, target: Path, archive: Path) -> Path:
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or ".." in posix.parts or (posix.parts and ":" in posix.parts[0]):
        raise DatasetError(f"{archive}: refusing member {name!r}: it would be written outside {target}")
    dest = Path(os.path.normpath(target / posix))
    if dest != target and target not in dest.parents:
        raise DatasetError(f"{archive}: refusing member {name!r}: it would be written outside {target}")
    return dest


def _check_tar_member(member: tarfile.TarInfo, staging: Path, archive: Path, final: Path) -> None:
    """Refuse names and links that leave the folder, and anything but files, folders and links."""
    dest = _check_member(member.name, staging, archive)
    if member.issym() or member.islnk():
        link = PurePosixPath(member.linkname.replace("\\", "/"))
        base = dest.parent if member.issym() else staging
        resolved = Path(os.path.normpath(base / link))
        if link.is_absolute() or not (resolved == staging or staging in resolved.parents):
            raise DatasetError(f"{archive}: refusing link {member.name!r} -> {member.linkname!r} outside {final}")
    elif not (member.isfile() or member.isdir()):
        raise DatasetError(f"{archive}: refusing special file {member.name!r} (device, FIFO or unknown type)")


def has_data_filter() -> bool:
    """Whether this Python's tarfile has the ``data`` extraction filter (3.12, 3.11.4, 3.10.12 on)."""
    return hasattr(tarfile, "data_filter")


# what a corrupt archive raises from tarfile, zipfile and the decompressors under them
_CORRUPT = (tarfile.TarError, zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, lzma.LZMAError,
            NotImplementedError, RuntimeError, ValueError)


def safe_extract(archive: str | os.PathLike, target: str | os.PathLike) -> list[Path]:
    """Unpack a .tar(.gz/.xz/.bz2) or .zip into ``target``; nothing may escape it.

    Every member is checked before anything is written (absolute names, ``..``, links
    pointing out, device files and FIFOs are refused; setuid/setgid bits and group/other
    write permission are dropped), on every Python version: tarfile's ``data`` filter is
    used where it exists, the same rules are applied here where it does not. The archive
    is unpacked into a hidden folder inside ``target`` and its top-level entries are moved
    into place only once all of it is out, so a corrupt or refused archive leaves nothing
    behind; an entry that already exists in ``target`` is never overwritten. Returns the
    top-level entries.
    """
    archive = Path(archive)
    target = Path(target).resolve()
    if not archive.is_file():
        raise DatasetError(f"{archive}: no such archive file")
    target.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{archive.name}.", suffix=".partial", dir=target))
    try:
        try:
            _unpack(archive, staging, target)
        except DatasetError:
            raise
        except _CORRUPT as exc:
            raise DatasetError(f"{archive}: corrupt or unreadable archive ({type(exc).__name__}: {exc})") from None
        except OSError as exc:
            raise DatasetError(f"{archive}: unpacking failed ({exc.strerror or exc}); nothing was unpacked") from None
        tops = sorted(p.name for p in staging.iterdir())
        clashes = [name for name in tops if os.path.lexists(target / name)]
        if clashes:
            raise DatasetError(
                f"{archive}: {target / clashes[0]} already exists; remove it or unpack into another folder"
            )
        for name in tops:
            os.rename(staging / name, target / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [target / name for name in tops]


def _unpack(archive: Path, staging: Path, final: Path) -> None:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:
                _check_member(info.filename, staging, archive)
            for info in infos:  # zip links and special files come out as plain files
                zf.extract(info, staging)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            _check_tar_end(tf, archive)
            for member in members:
                _check_tar_member(member, staging, archive, final)
            if has_data_filter():
                tf.extractall(staging, members=members, filter="data")
            else:
                for member in members:
                    _extract_member(tf, member, staging, archive)
    else:
        raise DatasetError(f"{archive}: not a tar or zip archive")


def _check_tar_end(tf: tarfile.TarFile, archive: Path) -> None:
    """tarfile stops listing at the first unreadable header as if the archive ended there;
    anything but zero padding after the last member means the archive is damaged."""
    tf.fileobj.seek(tf.offset)  # type: ignore[union-attr]
    while block := tf.fileobj.read(CHUNK):  # type: ignore[union-attr]
        if block.strip(b"\0"):
            raise DatasetError(
                f"{archive}: corrupt archive: unreadable data after its member {len(tf.getmembers())} "
                f"(byte {tf.offset} of the tar stream)"
            )


def _extract_member(tf: tarfile.TarFile, member: tarfile.TarInfo, staging: Path, archive: Path) -> None:
    """One checked member, written the way the ``data`` filter would (for Pythons without it)."""
    dest = _check_member(member.name, staging, archive)
    dest.parent.mkdir(parents=True, exist_ok=True)
    real_parent = os.path.realpath(dest.parent)
    if real_parent != str(staging) and not real_parent.startswith(str(staging) + os.sep):
        raise DatasetError(f"{archive}: refusing member {member.name!r}: a link in its path leads outside")
    if member.isdir():
        dest.mkdir(exist_ok=True)
        os.chmod(dest, (member.mode & 0o755) | 0o700)
        return
    if os.path.lexists(dest):
        if dest.is_dir() and not dest.is_symlink():
            raise DatasetError(f"{archive}: member {member.name!r} replaces a folder of the archive")
        dest.unlink()
    if member.issym():
        os.symlink(member.linkname, dest)
        return
    if member.islnk():
        source = _check_member(member.linkname, staging, archive)
        if source.is_symlink() or not source.is_file():
            raise DatasetError(f"{archive}: refusing hard link {member.name!r} to {member.linkname!r}")
        shutil.copyfile(source, dest)
    else:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(fd, "wb") as out, tf.extractfile(member) as data:  # type: ignore[union-attr]
            shutil.copyfileobj(data, out, CHUNK)
    os.chmod(dest, (member.mode & 0o755) | 0o600)  # no setuid/setgid/sticky, no group/other write
    os.utime(dest, (member.mtime, member.mtime))


def find_visa_root(folder: Path) -> Path | None:
    """The folder holding ``split_csv/1cls.csv`` at or up to two levels under ``folder``."""
    for candidate in [folder, *folder.glob("*"), *folder.glob("*/*")]:
        if (candidate / "split_csv" / "1cls.csv").is_file():
            return candidate
    return None


def download(
    name: str,
    root: str | os.PathLike,
    *,
    url: str | None = None,
    sha256: str | None = None,
    keep_archive: bool = False,
    progress: bool = True,
) -> Path:
    """Download and unpack a data set into ``root``; returns the folder to pass as ``root=``.

    ``url``/``sha256`` override the official archive (mirrors, tests). Data sets behind a
    licence form raise :class:`DatasetError` carrying the instructions.
    """
    if name in LICENCE_INSTRUCTIONS:
        raise DatasetError(LICENCE_INSTRUCTIONS[name])
    if name not in ARCHIVES:
        known = sorted([*ARCHIVES, *LICENCE_INSTRUCTIONS])
        raise DatasetError(f"no download is known for data set {name!r}; known: {', '.join(known)}")
    archive = ARCHIVES[name]
    root = Path(root).expanduser()
    present = find_visa_root(root) if name == "visa" and root.is_dir() else None
    if present is not None:
        return present  # unpacked before (unpacking moves a data set into place only when complete)
    url = url or archive.url
    expected = sha256 if sha256 is not None else (archive.sha256 if url == archive.url else None)
    if expected is None:
        raise DatasetError(f"{url}: not the official archive; pass its sha256 so the download can be verified")
    file_name = PurePosixPath(urllib.parse.urlparse(url).path).name or f"{name}.archive"
    path = fetch(url, root / file_name, expected, progress=progress)
    safe_extract(path, root)
    if not keep_archive:
        path.unlink(missing_ok=True)
    found = find_visa_root(root) if name == "visa" else root
    if found is None:
        raise DatasetError(f"{root}: archive unpacked but no split_csv/1cls.csv was found in it")
    return found
