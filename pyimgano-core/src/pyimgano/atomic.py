"""Outputs that replace older ones appear whole or not at all.

:func:`atomic_write` writes a file beside its target and renames it into place,
:func:`atomic_copy` copies one that way; :func:`replacing_dir` does the same for a folder
(a saved model, a pipeline, an export, a predict output).
A failure half-way (a full disk, an exception, Ctrl-C, SIGTERM under :func:`sigterm_exits`)
leaves the old file or folder as it was and removes the partial copy; the error names the
folder the user gave, never the hidden one beside it. A folder being replaced is locked
(:func:`output_lock`), so two runs never mix their files in it. Each folder
:func:`replacing_dir` writes lists its own files (:data:`CONTENTS_FILE`), so that
:func:`check_output_dir` can say beforehand whether a folder may be replaced at all: not
when it holds anything the earlier output did not (a user's file, another command's output).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pyimgano.errors import OutputError, OutputExists, os_reason

CONTENTS_FILE = ".pyimgano-contents.json"
"""The list of files a folder written by :func:`replacing_dir` holds (relative paths)."""
MAX_CONTENTS_BYTES = 16 * 1024**2
MAX_CHECKED_ENTRIES = 100_000  # check_output_dir looks at no more (a folder that large is not an output)


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


def _relative_files(folder: Path, limit: int = MAX_CHECKED_ENTRIES) -> list[str]:
    """Files and links under ``folder`` (POSIX paths relative to it; empty folders count as files)."""
    out: list[str] = []
    for root, dirs, files in os.walk(folder):
        base = Path(root)
        for name in files + [d for d in dirs if (base / d).is_symlink() or not any((base / d).iterdir())]:
            out.append((base / name).relative_to(folder).as_posix())
            if len(out) >= limit:
                return out
    return out


def _record_contents(folder: Path) -> None:
    names = sorted(name for name in _relative_files(folder) if name != CONTENTS_FILE)
    (folder / CONTENTS_FILE).write_text(json.dumps({"files": names}, indent=1) + "\n", encoding="utf-8")


def recorded_contents(folder: Path) -> set[str] | None:
    """The files :func:`replacing_dir` recorded for ``folder``; None without a readable record."""
    from pyimgano.modelfile import read_json_object

    path = folder / CONTENTS_FILE
    if not path.is_file():
        return None
    try:
        files = read_json_object(path, "contents record", OutputError, MAX_CONTENTS_BYTES).get("files")
    except OutputError:
        return None
    return {f for f in files if isinstance(f, str)} if isinstance(files, list) else None


@contextlib.contextmanager
def output_lock(target: str | os.PathLike, wait: bool = True) -> Iterator[None]:
    """Hold the lock of output folder ``target`` (``.<name>.lock`` beside it, removed after):
    ``wait`` for another holder, or raise :class:`OutputExists` at once. A no-op where
    ``fcntl`` is missing (Windows)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    target = Path(target)
    path = target.parent / f".{target.name}.lock"
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            raise OutputExists(f"{target}: another pyimgano run is writing there (it holds {path}); wait for it "
                               "to finish or choose another output folder") from None
        held = os.fstat(fd)
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        if current is not None and (current.st_ino, current.st_dev) == (held.st_ino, held.st_dev):
            break
        os.close(fd)  # the previous holder removed the file after we opened it: lock the new one
    try:
        yield
    finally:
        Path(path).unlink(missing_ok=True)  # still held: no one else can hold this file
        os.close(fd)


@contextlib.contextmanager
def replacing_dir(target: str | os.PathLike, what: str = "model", wait: bool = True,
                  durable: bool = True) -> Iterator[Path]:
    """Yield an empty temporary sibling of ``target`` to write into; when the block ends
    without an error, the sibling (with its :data:`CONTENTS_FILE`) becomes ``target`` (an
    older ``target`` is replaced), otherwise it is deleted and ``target`` stays as it was.

    ``target`` is locked meanwhile (:func:`output_lock`; ``wait=False`` refuses a folder in
    use). ``durable``: every file is on disk before the swap (a power cut leaves the old
    folder or the whole new one); False for outputs cheap to write again (a predict output,
    one ``fsync`` per file saved), whose swap then guards against kills and errors only.
    A file system error (a full disk) is one :class:`OutputError` naming ``target``
    and ``what`` was being saved. The swap is two renames; a process killed between them
    leaves the old folder beside the target as ``.<name>.old-*`` rather than losing it.
    ``target`` must not be a file.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"{target}: exists and is not a folder")
    existed = target.exists()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with output_lock(target, wait):
            _remove_dead_staging(target)
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
            try:
                yield tmp
                _record_contents(tmp)
                if durable:
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
    except OutputExists:
        raise
    except OSError as exc:
        reason = getattr(exc, "reason", None) or os_reason(exc, with_file=False)
        kept = f"the {what} saved there before is intact" if existed else "nothing was left there"
        error = OutputError(f"{target}: the {what} could not be saved ({reason}); {kept}")
        error.reason = reason  # an outer replacing_dir (a pipeline around its detector) names its own folder
        raise error from None


def _remove_dead_staging(target: Path) -> None:
    """Delete the hidden staging folders of ``target`` left by runs that were killed (SIGKILL,
    a power cut) before they could clean up. Called under ``target``'s lock, which every run
    writing there holds while its staging folder exists, so any such folder is a dead run's.
    Only names :func:`replacing_dir` itself makes (``.<name>.`` + mkdtemp's 8 characters +
    ``.tmp``) match: another target's staging folders never do."""
    import re

    pattern = re.compile(rf"\.{re.escape(target.name)}\.[a-z0-9_]{{8}}\.tmp")
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return
    for entry in entries:
        if pattern.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)


def check_output_dir(directory: str | os.PathLike, marker: str, kind: str = "saved pyimgano model",
                     legacy: Callable[[str], bool] | None = None) -> None:
    """Raise :class:`~pyimgano.errors.OutputExists` unless ``directory`` may be replaced whole:
    absent, empty, or an earlier output of the same ``kind`` (it holds ``marker``) holding
    nothing that output did not write (its :data:`CONTENTS_FILE`; for a folder written before
    the record, the files ``legacy`` accepts by relative path, default none).

    A link is judged by the folder it points to. Call it before long work, so that a wrong
    output path is refused before anything is computed.
    """
    directory = Path(directory)
    target = directory.resolve() if directory.is_symlink() else directory
    if target.exists() and not target.is_dir():
        raise OutputExists(f"{directory}: exists and is not a folder; choose another output path")
    if not target.is_dir():
        return
    if not (target / marker).exists():
        entries = sorted(p.name for p in target.iterdir())
        if entries:
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            count = f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}"
            raise OutputExists(f"{directory}: holds {count} ({shown}) and is not a {kind} (no {marker}); "
                               "refusing to replace it, choose a new or empty folder")
        return
    recorded = recorded_contents(target)
    known = (lambda name: name in recorded) if recorded is not None else (legacy or (lambda name: False))
    strangers = [name for name in _relative_files(target) if name != CONTENTS_FILE and not known(name)]
    if strangers:
        shown = ", ".join(sorted(strangers)[:3]) + (", ..." if len(strangers) > 3 else "")
        raise OutputExists(f"{directory}: a {kind} that also holds {len(strangers)} file(s) it did not write "
                           f"({shown}); replacing it would delete them: move them out or choose another folder")


@contextlib.contextmanager
def sigterm_exits(message: str | None = None) -> Iterator[None]:
    """While the block runs, SIGTERM ends the process like Ctrl-C does: ``SystemExit(143)``
    raised in the main thread, so ``finally`` blocks (a :func:`replacing_dir` removing its
    partial copy) run; ``message`` is printed first. Only from the main thread, and only
    when no one else handles SIGTERM; a second SIGTERM ends the process at once."""
    previous: Any = None
    if threading.current_thread() is threading.main_thread():
        try:
            if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                def terminate(signum: int, frame: Any) -> None:
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
                    if message:
                        print(message, file=sys.stderr)
                    raise SystemExit(128 + signum)

                previous = signal.signal(signal.SIGTERM, terminate)
        except (ValueError, OSError):
            previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
