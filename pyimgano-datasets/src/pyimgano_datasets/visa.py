"""VisA read in place through its official split file (default ``<root>/split_csv/1cls.csv``).

The CSV has the columns ``object,split,label,image,mask``; ``label`` is ``normal`` or
``anomaly``; ``image`` and ``mask`` are relative to the root. VisA masks use small integer
values (one per defect region), so any non-zero pixel is defect. Defective images have no
finer defect type in the split file: their ``defect_type`` is ``anomaly``.

``prepare_visa`` optionally writes the MVTec layout (links or copies, masks as 0/255 PNG).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable
from pathlib import Path

from pyimgano.atomic import atomic_copy, atomic_write
from pyimgano.contracts import DatasetSample
from pyimgano.errors import DatasetError
from pyimgano.userfiles import confine, plain_name, read_text
from pyimgano_datasets.base import AnomalyDataset, CategoryScan, Problem

COLUMNS = ("object", "split", "label", "image", "mask")
LABELS = {"normal": 0, "anomaly": 1}
DEFAULT_SPLIT_FILE = "split_csv/1cls.csv"


def read_split_file(path: Path, root: Path | None = None) -> tuple[list[dict[str, str]], list[Problem]]:
    """Rows of a VisA split CSV and the problems of malformed rows.

    Read as spreadsheets save it: UTF-8 with or without a byte-order mark, UTF-16 with one,
    or Windows-1252; separated by commas, semicolons or tabs; column names and the split and
    label values in any case. With ``root``, the ``image`` and ``mask`` paths are confined to
    it and every ``object`` must be a plain folder name: one row that breaks this refuses the
    whole file (a DatasetError naming the file, the line, the value and the root).
    """
    if not path.is_file():
        raise DatasetError(f"{path}: VisA split file not found (expected the official split_csv/1cls.csv)")
    text = read_text(path, DatasetError, fallback=("cp1252",))
    lines = text.splitlines()
    delimiter = _delimiter(lines[0] if lines else "")
    if delimiter is None:
        header = lines[0][:80] if lines else ""
        raise DatasetError(f"{path}: split file lacks the header {','.join(COLUMNS)} (first line: {header!r})")
    reader = csv.reader(lines, delimiter=delimiter)
    names = [name.strip().lower() for name in next(reader)]
    problems: list[Problem] = []
    refused: list[str] = []
    rows: list[dict[str, str]] = []
    for line, values in enumerate(reader, start=2):
        if not any(v.strip() for v in values):
            continue  # blank lines spreadsheets leave at the end
        raw = dict(zip(names, values))
        row = {k: (raw.get(k) or "").strip() for k in COLUMNS}
        row["split"], row["label"] = row["split"].lower(), row["label"].lower()
        if row["split"] not in ("train", "test"):
            problems.append(Problem(path, f"line {line}: split {row['split']!r} is not train or test"))
        elif row["label"] not in LABELS:
            problems.append(Problem(path, f"line {line}: label {row['label']!r} is not normal or anomaly"))
        elif not row["object"] or not row["image"]:
            problems.append(Problem(path, f"line {line}: empty object or image"))
        elif root is not None:
            try:
                _confine_row(row, root, f"{path}: line {line}")
            except DatasetError as exc:
                refused.append(str(exc))
                continue
            rows.append(row)
        else:
            rows.append(row)
    if refused:
        more = f" (and {len(refused) - 1} more such row(s))" if len(refused) > 1 else ""
        raise DatasetError(refused[0] + more)
    return rows, problems


def _delimiter(header: str) -> str | None:
    """The separator that splits the header into the expected column names."""
    for delimiter in (",", ";", "\t"):
        names = {name.strip().strip('"').lower() for name in header.split(delimiter)}
        if all(c in names for c in COLUMNS):
            return delimiter
    return None


def _confine_row(row: dict[str, str], root: Path, where: str) -> None:
    """Check a row's folder name and paths against ``root``; paths are stored normalised."""
    try:
        plain_name(row["object"], where, "object", DatasetError)
    except DatasetError as exc:
        raise DatasetError(f"{exc} (data set root {root})") from None
    for column in ("image", "mask"):
        if row[column]:
            row[column] = str(confine(root, row[column], where, DatasetError, f"{column} path").relative_to(root))


class VisaDataset(AnomalyDataset):
    name = "visa"

    def __init__(self, root: str | Path | None, category: str | None = None, split_file: str = DEFAULT_SPLIT_FILE):
        root_path = Path(root).expanduser() if root is not None else None
        self.split_file = Path(split_file) if root_path is None else root_path / split_file
        self._rows: list[dict[str, str]] | None = None
        self._row_problems: list[Problem] = []
        super().__init__(root, category)

    def rows(self) -> list[dict[str, str]]:
        if self._rows is None:
            self._rows, self._row_problems = read_split_file(self.split_file, self.root)
        return self._rows

    def _find_categories(self) -> list[str]:
        return sorted({row["object"] for row in self.rows()})

    def _category_path(self, category: str) -> Path:
        return self.split_file

    def _scan(self, category: str) -> CategoryScan:
        problems: list[Problem] = []
        splits: dict[str, list[DatasetSample]] = {"train": [], "test": []}
        for row in self.rows():
            if row["object"] != category:
                continue
            image = self.root / row["image"]
            label = LABELS[row["label"]]
            mask = self.root / row["mask"] if label == 1 and row["mask"] else None
            if not image.is_file():
                problems.append(Problem(image, "image listed in the split file is missing"))
                continue
            if label == 1 and mask is None:
                problems.append(Problem(image, f"defect image without its mask (no mask in {self.split_file.name})"))
            elif mask is not None and not mask.is_file():
                problems.append(Problem(image, f"defect image without its mask (missing {mask})"))
                mask = None
            splits[row["split"]].append(
                DatasetSample(
                    image_path=image,
                    label=label,
                    mask_path=mask,
                    defect_type="anomaly" if label else "good",
                    category=category,
                )
            )
        for split, samples in splits.items():
            if not samples:
                problems.append(Problem(self.split_file, f"empty split: no {split} images of {category!r}"))
        return CategoryScan(splits, problems)

    def check(self, read_pixels: bool = True) -> list[Problem]:
        """Malformed split-file rows (skipped when loading), then the per-category problems."""
        try:
            self.rows()
        except DatasetError as exc:
            return [Problem(self.split_file, str(exc).split(": ", 1)[-1])]
        return list(self._row_problems) + super().check(read_pixels)


def load_visa(root: str | Path | None = None, category: str | None = None, *, split_file: str = DEFAULT_SPLIT_FILE):
    """Factory of the ``visa`` data set."""
    return VisaDataset(root, category, split_file=split_file)


def prepare_visa(
    root: str | Path,
    out: str | Path,
    *,
    split_file: str = DEFAULT_SPLIT_FILE,
    link: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write VisA in the MVTec layout under ``out`` (images linked or copied, masks 0/255 PNG).

    Defective images go to ``test/anomaly`` with masks ``ground_truth/anomaly/<stem>_mask.png``.
    """
    import numpy as np
    from PIL import Image

    from pyimgano.images import read_mask

    dataset = VisaDataset(root, split_file=split_file)
    out = Path(out).expanduser()
    samples = [
        (split, s) for cat in dataset.all_categories for split in ("train", "test") for s in dataset.samples(split, cat)
    ]
    for done, (split, sample) in enumerate(samples, start=1):
        folder = out / sample.category / split / sample.defect_type
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / sample.image_path.name
        if not target.exists():  # a link appears at once, a copy only when whole: an existing file is done
            if link:
                try:
                    os.link(sample.image_path, target)
                except OSError:
                    atomic_copy(sample.image_path, target)
            else:
                atomic_copy(sample.image_path, target)
        if sample.mask_path is not None:
            mask_dir = out / sample.category / "ground_truth" / sample.defect_type
            mask_dir.mkdir(parents=True, exist_ok=True)
            mask = read_mask(sample.mask_path)
            png = io.BytesIO()
            Image.fromarray(mask.astype(np.uint8) * 255).save(png, format="PNG")
            atomic_write(mask_dir / f"{sample.image_path.stem}_mask.png", png.getvalue())
        if progress is not None:
            progress(done, len(samples))
    return out
