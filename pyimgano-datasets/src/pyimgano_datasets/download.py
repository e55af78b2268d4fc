"""Fetch a public data set archive: progress bar, SHA-256 check, safe unpacking.

Only VisA has a public archive. MVTec AD and BTAD require accepting their licences on the
publishers' sites, so :func:`download` prints instructions for them instead of fetching.
Unpacking refuses members that would land outside the target folder (absolute paths,
``..``, links pointing out, device files).
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pyimgano.errors import DatasetError

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
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


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
    dest = (target / posix).resolve()
    if dest != target and target not in dest.parents:
        raise DatasetError(f"{archive}: refusing member {name!r}: it would be written outside {target}")
    return dest


def safe_extract(archive: str | os.PathLike, target: str | os.PathLike) -> list[Path]:
    """Unpack a .tar(.gz/.xz/.bz2) or .zip into ``target``; nothing may escape it.

    Every member is checked before anything is written. Returns the top-level entries.
    """
    archive = Path(archive)
    target = Path(target).resolve()
    target.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            for name in names:
                _check_member(name, target, archive)
            zf.extractall(target)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            for member in members:
                dest = _check_member(member.name, target, archive)
                if member.issym() or member.islnk():
                    link = PurePosixPath(member.linkname)
                    base = dest.parent if member.issym() else target
                    if link.is_absolute() or not (base / link).resolve().is_relative_to(target):
                        raise DatasetError(f"{archive}: refusing link {member.name!r} -> {member.linkname!r} outside {target}")
                elif not (member.isfile() or member.isdir()):
                    raise DatasetError(f"{archive}: refusing special file {member.name!r}")
            if hasattr(tarfile, "data_filter"):
                tf.extractall(target, members=members, filter="data")
            else:  # pragma: no cover - Python without extraction filters
                tf.extractall(target, members=members)
        names = [m.name for m in members]
    else:
        raise DatasetError(f"{archive}: not a tar or zip archive")
    tops = sorted({PurePosixPath(n.replace("\\", "/")).parts[0] for n in names if n.strip("/")})
    return [target / t for t in tops]


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
