"""Outputs that replace older ones appear whole or not at all.

:func:`atomic_write` writes a file beside its target and renames it into place,
:func:`atomic_copy` copies one that way; :func:`replacing_dir` does the same for a folder
(a saved model, a pipeline, an export).
A failure half-way (a full disk, an exception, Ctrl-C) leaves the old file or folder as it
was and removes the partial copy. :func:`check_output_dir` says beforehand whether a
folder may be replaced at all.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pyimgano.errors import OutputExists


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write(path: str | os.PathLike, data: str | bytes) -> None:
    """Write a file so that readers see the old or the new content, never a partial one.

    Text is encoded as UTF-8 with ``surrogateescape``: a file name that is not UTF-8 keeps
    its own bytes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_copy(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Copy a file (with its times, as ``shutil.copy2``) so that ``target`` is whole or absent.

    A copy interrupted half-way leaves no partial ``target`` that a rerun would take for done.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        shutil.copy2(source, tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


@contextlib.contextmanager
def replacing_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary sibling of ``target`` to write into; when the block ends
    without an error, the sibling becomes ``target`` (an older ``target`` is replaced),
    otherwise it is deleted and ``target`` stays as it was.

    The swap is two renames; a process killed between them leaves the old folder beside
    the target as ``.<name>.old-*`` rather than losing it. ``target`` must not be a file.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"{target}: exists and is not a folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        _fsync_tree(tmp)
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes 0700 folders
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.rename(target, old / target.name)
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_output_dir(directory: str | os.PathLike, marker: str, kind: str = "saved pyimgano model") -> None:
    """Raise :class:`~pyimgano.errors.OutputExists` unless ``directory`` may be replaced whole:
    absent, empty, or a folder holding ``marker`` (an earlier output of the same ``kind``).

    A link is judged by the folder it points to. Call it before long work, so that a wrong
    output path is refused before anything is computed.
    """
    directory = Path(directory)
    target = directory.resolve() if directory.is_symlink() else directory
    if target.exists() and not target.is_dir():
        raise OutputExists(f"{directory}: exists and is not a folder; choose another output path")
    if target.is_dir() and not (target / marker).exists():
        entries = sorted(p.name for p in target.iterdir())
        if entries:
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            count = f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}"
            raise OutputExists(f"{directory}: holds {count} ({shown}) and is not a {kind} (no {marker}); "
                               "refusing to replace it, choose a new or empty folder")
