"""Files that users write or receive: their text read as it comes, their paths kept inside.

A split CSV saved by a spreadsheet program starts with a byte-order mark or is in the
Windows code page; a config file may be a binary by mistake. :func:`read_text` decodes
what has a clear meaning (UTF-8 with or without a BOM, UTF-16 with a BOM, then the
fallback encodings the caller allows) and otherwise raises one line naming the file and
what is wrong.

A path read from a file (a CSV column, a JSON field) is data, not a command: :func:`confine`
resolves it against its root and refuses one that would leave the root (``..``, an
absolute path elsewhere). The check is on the normalised path, without following
symbolic links, so a data set that the user linked in from other storage still works.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import re
from pathlib import Path

from pyimgano.errors import PyimganoError

# C0 control characters other than tab, newline, carriage return, form feed: not in text files
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def decode_text(
    data: bytes, source: str, error: type[PyimganoError] = PyimganoError, fallback: tuple[str, ...] = ()
) -> str:
    """Text of ``data``: UTF-8 (a BOM is dropped), UTF-16 with a BOM, else the ``fallback`` encodings.

    Raises ``error`` naming ``source`` for binary data and for text in none of these.
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError:
            raise error(f"{source}: starts with a UTF-16 byte-order mark but is not UTF-16 text") from None
        _refuse_binary(_CONTROL.search(text), source, error)
        return text
    # the encodings accepted here all keep ASCII as is: control bytes mean binary data
    _refuse_binary(_CONTROL.search(data.decode("latin-1")), source, error)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        text = _decode_fallback(data, fallback)
        if text is None:
            raise error(
                f"{source}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); save it as UTF-8"
            ) from None
        return text


def _refuse_binary(control: re.Match | None, source: str, error: type[PyimganoError]) -> None:
    if control is not None:
        raise error(
            f"{source}: binary data, not a text file (control byte 0x{ord(control.group()):02x} "
            f"at offset {control.start()})"
        )


def _decode_fallback(data: bytes, encodings: tuple[str, ...]) -> str | None:
    for encoding in encodings:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return None


def read_text(
    path: str | os.PathLike, error: type[PyimganoError] = PyimganoError, fallback: tuple[str, ...] = ()
) -> str:
    """Read a text file with :func:`decode_text`; a missing or unreadable file is ``error`` too."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, not a file") from None
    except OSError as exc:
        raise error(f"{path}: cannot be read ({exc.strerror or exc})") from None
    return decode_text(data, str(path), error, fallback)


def confine(
    root: str | os.PathLike, value: str, source: str, error: type[PyimganoError] = PyimganoError, what: str = "path"
) -> Path:
    """``root / value`` normalised, refused (``error`` naming ``source``, the value and the root)
    when it would lie outside ``root``. Backslashes count as separators (paths written on Windows).

    The result keeps the form of ``root`` (relative stays relative).
    """
    root = Path(root)
    if not value or "\x00" in value:
        raise error(f"{source}: {what} {value!r} is empty or holds a NUL character")
    text = value.replace("\\", "/") if os.sep == "/" else value
    base = os.path.abspath(root)
    candidate = os.path.normpath(os.path.join(base, text))
    if candidate != base and not candidate.startswith(base.rstrip(os.sep) + os.sep):
        raise error(f"{source}: {what} {value!r} points outside the root {root}; refused")
    return root / os.path.relpath(candidate, base)


def plain_name(value: str, source: str, what: str = "name", error: type[PyimganoError] = PyimganoError) -> str:
    """``value`` when it is one plain path component (a folder name); otherwise ``error``."""
    if not value or value in (".", "..") or "/" in value or "\\" in value or "\x00" in value or ":" in value:
        raise error(f"{source}: {what} {value!r} is not a plain folder name (no '/', '\\', ':' or '..'); refused")
    return value


def not_a_file(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not a regular file to read, in words (``is missing``, ``is a character
    device (via the link to /dev/zero)``, ``is a folder``...); None when it is one.

    ``Path.is_file()`` says False for all of these alike, and "missing" is the wrong thing to
    tell a user whose file is a link to a device, a pipe or a folder.
    """
    import stat

    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            return f"is a broken link (to {os.readlink(path)})"
        return "is missing"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return None
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"))
    kind = next((name for test, name in kinds if test(mode)), "not a regular file")
    via = f" (via the link to {os.readlink(path)})" if os.path.islink(path) else ""
    return f"is {kind}{via}, not a file"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> tuple[str, int]:
    """(SHA-256 hex digest, size in bytes) of a file, read ``chunk`` bytes at a time: export
    manifests, overlap checks and archive downloads hash files the same way. ``OSError``
    propagates (callers say what a missing or unreadable file means to them)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size
