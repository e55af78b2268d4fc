"""Records pyimgano appends and reads back (``pyimgano watch``'s results.jsonl) are checked line by line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyimgano.errors import SavedFileError
from pyimgano.service.watch import MAX_JOURNAL_LINE, journal_records

GOOD = {"id": "0001", "status": "done", "file": "done/a.png", "image": "a.png", "score": 1.5, "error": None}


def _journal(tmp_path: Path, *records) -> Path:
    path = tmp_path / "results.jsonl"
    path.write_bytes(b"".join(r if isinstance(r, bytes) else (json.dumps(r) + "\n").encode() for r in records))
    return path


def test_records_pyimgano_wrote_are_read_back(tmp_path):
    failed = {**GOOD, "id": "0002", "status": "failed", "file": "failed/b.png", "error": "b.png: unreadable"}
    assert list(journal_records(_journal(tmp_path, GOOD, failed))) == [GOOD, failed]


@pytest.mark.parametrize("record, problem", [
    ({**GOOD, "file": "../../outside.png"}, "file: expected done/NAME (where its image was moved), got"),
    ({**GOOD, "file": "done/../../x.png"}, "file: expected done/NAME"),
    ({**GOOD, "file": "failed/a.png"}, "file: expected done/NAME"),
    ({**GOOD, "status": "maybe"}, "status: expected 'done' or 'failed', got \"maybe\""),
    ({**GOOD, "id": 7}, "id: expected text, got 7"),
    ([1, 2], "corrupt record (not a JSON object)"),
    (b"{not json\n", "corrupt record"),
    (b"x" * (MAX_JOURNAL_LINE + 10) + b"\n", f"longer than {MAX_JOURNAL_LINE:,} bytes"),
])
def test_a_tampered_record_is_one_line_naming_file_line_and_field(tmp_path, record, problem):
    path = _journal(tmp_path, GOOD, record)
    with pytest.raises(SavedFileError) as info:
        list(journal_records(path))
    assert str(info.value).startswith(f"{path}: line 2: {problem}") and "\n" not in str(info.value)
