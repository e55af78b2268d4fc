"""``pyimgano watch``: score every image that appears in a folder, exactly once.

A camera or a PLC writes images into IN; each one, once complete, is scored and recorded
in ``OUT/results.jsonl`` and ``OUT/results.csv``, its heatmap and mask written to
``OUT/heatmaps`` and ``OUT/masks``, and the image moved to ``OUT/done/`` (or, when it cannot
be read or scored, to ``OUT/failed/`` with ``NAME.reason.txt`` beside it).

Complete: a file is read once its size and time stamp have not changed for ``settle_s``
(writers that write elsewhere and rename into IN are seen complete at once). Hidden files
(``.name``) and names without an image extension are left alone.

Exactly once, over kills and restarts, in three steps per image:

1. *claim*: the image is renamed out of IN into the claim folder under a fresh id
   (``<id>__<name>``); a rename is atomic, so the image is in IN or claimed, never both;
2. *commit*: its record is appended to ``results.jsonl`` and flushed to disk; a claimed image
   with a committed record is never scored again, one without is scored again (its pictures
   are rewritten, nothing else was kept);
3. *file*: the claimed image is moved to ``done/`` or ``failed/`` (the record says where).

A restart first repairs what a kill may have left: a half-written last line of
``results.jsonl`` is dropped (that image is still claimed: it is scored again), records
missing from ``results.csv`` are appended to it, and committed claimed images are filed.
The claim folder is ``OUT/.claimed`` when OUT and IN are on one file system, else
``IN/.pyimgano-claimed`` (a rename cannot cross file systems).
"""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from pyimgano.errors import ImageLoadError, InvalidParams
from pyimgano.service.settings import WatchSettings

RESULTS_JSONL = "results.jsonl"
RESULTS_CSV = "results.csv"
CSV_COLUMNS = ["id", "time", "image", "status", "score", "label", "margin", "p_value", "anomalous_fraction",
               "n_regions", "largest_area", "largest_x", "largest_y", "largest_width", "largest_height",
               "heatmap", "mask", "file", "error"]
SEPARATOR = "__"  # between a claimed image's id and its name
NAME_MAX = 150


def _repair_tail(path: Path) -> None:
    """Drop a last line left half-written by a kill (everything before it stays)."""
    if not path.exists():
        return
    with open(path, "rb+") as handle:
        data = handle.read()
        if data and not data.endswith(b"\n"):
            handle.truncate(data.rfind(b"\n") + 1)


MAX_JOURNAL_LINE = 1024**2  # one image's record: its regions and error; far below this


def journal_records(path: Path) -> Iterator[dict[str, Any]]:
    """The records of ``results.jsonl``, each checked before it is used: a JSON object whose
    ``id`` is text, ``status`` done or failed, and ``file`` a name in ``done/`` or ``failed/``
    (where its claim is moved); anything else is one :class:`~pyimgano.errors.SavedFileError`
    naming the file, line and field."""
    from pyimgano.errors import SavedFileError

    with open(path, "rb") as handle:
        for number, line in enumerate(iter(lambda: handle.readline(MAX_JOURNAL_LINE + 1), b""), start=1):
            where = f"{path}: line {number}"
            if len(line) > MAX_JOURNAL_LINE:
                raise SavedFileError(f"{where}: longer than {MAX_JOURNAL_LINE:,} bytes, not a record pyimgano wrote")
            try:
                record = json.loads(line.decode("utf-8"))
            except ValueError as exc:
                raise SavedFileError(f"{where}: corrupt record ({exc})") from None
            if not isinstance(record, dict):
                raise SavedFileError(f"{where}: corrupt record (not a JSON object)")
            problem = _journal_problem(record)
            if problem:
                raise SavedFileError(f"{where}: {problem}")
            yield record


def _journal_problem(record: dict[str, Any]) -> str | None:
    ident, status, file = record.get("id"), record.get("status"), record.get("file")
    if not isinstance(ident, str) or not ident:
        return f"id: expected text, got {json.dumps(ident)[:60]}"
    if status not in ("done", "failed"):
        return f"status: expected 'done' or 'failed', got {json.dumps(status)[:60]}"
    folder, _, name = file.partition("/") if isinstance(file, str) else ("", "", "")
    if folder != status or not name or "/" in name or name in (".", ".."):
        return f"file: expected {status}/NAME (where its image was moved), got {json.dumps(file)[:60]}"
    return None


def _append(path: Path, text: str) -> None:
    """Append whole lines and put them on disk before going on."""
    with open(path, "a", encoding="utf-8", newline="") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def csv_line(record: dict[str, Any]) -> str:
    from pyimgano.benchmark.results import rows_to_csv

    return rows_to_csv([csv_row(record)], CSV_COLUMNS).split("\n", 1)[1]


def csv_row(record: dict[str, Any]) -> dict[str, Any]:
    row = {key: record.get(key) for key in CSV_COLUMNS}
    regions = record.get("regions") or []
    row["n_regions"] = len(regions) if record.get("status") == "done" else None
    if regions:
        x, y, w, h = regions[0]["bbox"]
        row.update(largest_area=regions[0]["area"], largest_x=x, largest_y=y, largest_width=w, largest_height=h)
    return row


def check_folders(inbox: str | os.PathLike, out: str | os.PathLike) -> tuple[Path, Path]:
    """IN and OUT as paths, or a one-line error (before any model is loaded)."""
    inbox, out = Path(inbox).expanduser(), Path(out).expanduser()
    if not inbox.is_dir():
        raise InvalidParams(f"{inbox}: no such folder to watch")
    if out.exists() and not out.is_dir():
        raise InvalidParams(f"{out}: exists and is not a folder; choose another --out")
    if out.resolve() == inbox.resolve():
        raise InvalidParams(f"--out {out}: is the watched folder; choose another (a sub-folder is fine)")
    return inbox, out


class Watcher:
    """Watches ``inbox`` and files its images into ``out`` with ``pipe`` (see the module docstring).

    ``log`` gets one line per image filed; :meth:`stop` (from a signal handler or another
    thread) ends :meth:`run` after the batch being scored is filed.
    """

    def __init__(self, pipe: Any, inbox: str | os.PathLike, out: str | os.PathLike,
                 settings: WatchSettings | None = None, log: Callable[[str], None] = print) -> None:
        from pyimgano.service.results import Pictures

        self.pipe, self.settings, self.log = pipe, settings or WatchSettings(), log
        self.inbox, self.out = check_folders(inbox, out)
        self.out.mkdir(parents=True, exist_ok=True)
        same_device = os.stat(self.inbox).st_dev == os.stat(self.out).st_dev
        self.claimed = self.out / ".claimed" if same_device else self.inbox / ".pyimgano-claimed"
        for folder in (self.claimed, self.out / "done", self.out / "failed"):
            folder.mkdir(parents=True, exist_ok=True)
        self.pictures = Pictures(pipe)
        self.committed: dict[str, dict[str, Any]] = {}
        self._seen: dict[str, tuple[int, int, float]] = {}
        self._ignored: set[str] = set()
        self._stop = threading.Event()
        self._count = 0
        self.filed = 0

    # -- start-up -------------------------------------------------------------------------------
    def recover(self) -> list[Path]:
        """Repair the outputs after a kill; file committed claims; the claims left to score."""
        jsonl, csv_path = self.out / RESULTS_JSONL, self.out / RESULTS_CSV
        _repair_tail(jsonl)
        _repair_tail(csv_path)
        if jsonl.exists():
            for record in journal_records(jsonl):
                self.committed[record["id"]] = {"file": record["file"], "status": record["status"],
                                                "error": record.get("error")}
        in_csv: set[str] = set()
        if csv_path.exists() and csv_path.stat().st_size:
            import csv

            with open(csv_path, newline="", encoding="utf-8") as handle:
                in_csv = {row["id"] for row in csv.DictReader(handle)}
        else:
            _append(csv_path, ",".join(CSV_COLUMNS) + "\n")
        missing = [i for i in self.committed if i not in in_csv]
        if missing:
            wanted = set(missing)
            lines = [csv_line(r) for r in journal_records(jsonl) if r["id"] in wanted]
            _append(csv_path, "".join(lines))
        todo = []
        for path in sorted(self.claimed.iterdir()):
            if path.name.startswith(".") or SEPARATOR not in path.name:
                continue
            ident = path.name.split(SEPARATOR, 1)[0]
            if ident in self.committed:
                self._file(path, self.committed[ident])
            else:
                todo.append(path)
        return todo

    # -- the loop -------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def run(self, once: bool = False) -> int:
        """Watch until :meth:`stop` (or, with ``once``, until IN holds no image); the number filed."""
        pending = self.recover()
        if pending:
            self.log(f"resuming {len(pending)} image(s) claimed before a stop")
            self._process(pending)
        while not self._stop.is_set():
            ready, settling = self._scan()
            if ready:
                self._process([c for c in map(self._claim, ready) if c is not None])
                continue
            if once and not settling:
                break
            self._stop.wait(self.settings.poll_s)
        return self.filed

    def _scan(self) -> tuple[list[Path], int]:
        """Images of IN complete now, and how many are still being written."""
        from pyimgano.images import IMAGE_EXTENSIONS

        now = time.monotonic()
        ready, seen = [], {}
        with os.scandir(self.inbox) as entries:
            for entry in entries:
                if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                    continue
                if Path(entry.name).suffix.lower() not in IMAGE_EXTENSIONS:
                    if entry.name not in self._ignored:
                        self._ignored.add(entry.name)
                        self.log(f"ignoring {entry.name}: not an image file name ({', '.join(IMAGE_EXTENSIONS)})")
                    continue
                try:
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                size_time = (info.st_size, info.st_mtime_ns)
                before = self._seen.get(entry.name)
                since = before[2] if before is not None and before[:2] == size_time else now
                seen[entry.name] = (*size_time, since)
                if now - since >= self.settings.settle_s:
                    ready.append(self.inbox / entry.name)
        self._seen = seen
        ready = sorted(ready)[: self.settings.max_batch * 4]  # the rest stay ready for the next round
        for path in ready:
            self._seen.pop(path.name, None)
        return ready, len(seen)

    def _claim(self, path: Path) -> Path | None:
        self._count += 1
        ident = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ") + f"-{self._count % 10000:04d}"
        target = self.claimed / f"{ident}{SEPARATOR}{path.name[:NAME_MAX]}"
        try:
            os.rename(path, target)
        except FileNotFoundError:  # taken away meanwhile
            return None
        return target

    def _process(self, claimed: list[Path]) -> None:
        from pyimgano.images import read_image

        loaded: list[tuple[Path, np.ndarray]] = []
        for path in claimed:
            try:
                loaded.append((path, read_image(path)))
            except ImageLoadError as exc:
                self._commit(path, None, None, None, " ".join(str(exc).replace(str(path), self._name(path)).split()))
        size = self.settings.max_batch
        for start in range(0, len(loaded), size):
            self._score(loaded[start:start + size])

    def _score(self, batch: list[tuple[Path, np.ndarray]]) -> None:
        try:
            output = self.pipe.predict([image for _, image in batch])
        except Exception as exc:  # noqa: BLE001 - one image the detector cannot take must not stop the line
            if len(batch) > 1:  # find the image at fault: each alone
                for item in batch:
                    self._score([item])
                return
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())
            self._commit(batch[0][0], None, None, None, f"{self._name(batch[0][0])}: cannot be scored ({reason})")
            return
        for k, (path, image) in enumerate(batch):
            self._commit(path, output, k, image, None)

    # -- one image ------------------------------------------------------------------------------
    @staticmethod
    def _name(path: Path) -> str:
        return path.name.split(SEPARATOR, 1)[1]

    def _destination(self, folder: str, name: str, ident: str) -> str:
        if not (self.out / folder / name).exists():
            return f"{folder}/{name}"
        stem, suffix = os.path.splitext(name)
        return f"{folder}/{stem}-{ident}{suffix}"

    def _commit(self, path: Path, output: Any, k: int | None, image: np.ndarray | None, error: str | None) -> None:
        from pyimgano.atomic import atomic_write
        from pyimgano.service.results import image_record

        ident, name = path.name.split(SEPARATOR, 1)
        record: dict[str, Any] = {"id": ident, "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                                  "image": name, "status": "failed" if error else "done"}
        if output is not None:
            record.update(image_record(self.pipe, output, k))
            stem = f"{ident}{SEPARATOR}{Path(name).stem}"
            if output.maps is not None:
                atomic_write(self.out / "heatmaps" / f"{stem}.png", self.pictures.heatmap(image, output.maps[k]))
                record["heatmap"] = f"heatmaps/{stem}.png"
            if output.masks is not None:
                atomic_write(self.out / "masks" / f"{stem}.png", self.pictures.mask(output.masks[k]))
                record["mask"] = f"masks/{stem}.png"
        record["file"] = self._destination("failed" if error else "done", name, ident)
        record["error"] = error
        _append(self.out / RESULTS_JSONL, json.dumps(record) + "\n")  # the commit
        _append(self.out / RESULTS_CSV, csv_line(record))
        self.committed[ident] = {"file": record["file"], "status": record["status"], "error": error}
        self._file(path, record)
        self.filed += 1
        if error:
            self.log(f"failed {name}: {error}")
        else:
            verdict = "" if record["label"] is None else (" anomalous" if record["label"] else " ok")
            self.log(f"done {name}: score {record['score']:.6g}{verdict}")

    def _file(self, path: Path, record: dict[str, Any]) -> None:
        """Move a committed claim where its record says (again, after a kill: idempotent)."""
        from pyimgano.atomic import atomic_copy, atomic_write

        target = self.out / record["file"]
        if record["status"] == "failed":
            atomic_write(target.with_name(target.name + ".reason.txt"), (record.get("error") or "") + "\n")
        try:
            os.replace(path, target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:  # the claim folder is on IN's file system
                raise
            atomic_copy(path, target)
            path.unlink()
