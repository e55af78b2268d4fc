"""The data set object every loader returns, and the problem list behind its errors.

A loader subclasses :class:`AnomalyDataset` and implements two methods: ``_find_categories``
(names, from the directory tree or a split file) and ``_scan(category)`` (the samples of
each split plus the layout problems found while listing them). Listing never reads pixels;
``load(sample)`` reads one image/mask pair on demand.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pyimgano.contracts import DatasetInfo, DatasetSample, SplitCounts
from pyimgano.errors import DatasetError, ImageLoadError
from pyimgano.images import IMAGE_EXTENSIONS

SPLITS = ("train", "test")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a data set on disk, with the path it concerns."""

    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def problems_error(problems: Sequence[Problem], limit: int = 5) -> DatasetError:
    """One DatasetError that lists the first ``limit`` problems (and how many more)."""
    lines = [str(p) for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"... and {len(problems) - limit} more (run `pyimgano datasets check` to list all)")
    return DatasetError("; ".join(lines) if len(lines) == 1 else "\n  " + "\n  ".join(lines))


def image_files(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (hidden files skipped)."""
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def _dataset_error(path: Path, exc: ImageLoadError) -> DatasetError:
    """The reader's error as a DatasetError naming ``path`` once."""
    message = str(exc)
    prefix = f"{path}: "
    return DatasetError(message if message.startswith(prefix) else f"{path}: {message}")


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image file, read from its header only (the pixel limit applies)."""
    from pyimgano.images import read_image_size

    try:
        return read_image_size(path)
    except ImageLoadError as exc:
        raise _dataset_error(path, exc) from None


def verify_image(path: Path) -> None:
    """Raise DatasetError naming ``path`` when the file is not a complete, decodable image."""
    from pyimgano.images import read_image

    try:
        read_image(path)
    except ImageLoadError as exc:
        raise _dataset_error(path, exc) from None


def mask_is_empty(path: Path) -> bool:
    """Whether a mask file marks no pixel as defect (DatasetError when unreadable)."""
    from pyimgano.images import read_mask

    try:
        return not read_mask(path).any()
    except ImageLoadError as exc:
        raise _dataset_error(path, exc) from None


@dataclass
class CategoryScan:
    """The samples of one category per split, and what is wrong with its layout."""

    splits: dict[str, list[DatasetSample]]
    problems: list[Problem]

    def counts(self) -> dict[str, SplitCounts]:
        return {
            split: SplitCounts(
                good=sum(1 for s in samples if s.label == 0), defect=sum(1 for s in samples if s.label == 1)
            )
            for split, samples in self.splits.items()
        }

    def defect_types(self) -> list[str]:
        return sorted({s.defect_type for samples in self.splits.values() for s in samples if s.label == 1})


class AnomalyDataset:
    """A data set opened on one root: ``.info``, ``.train``, ``.test``, ``.load(sample)``.

    With ``category=None`` the object spans every category: ``.info`` and ``.samples(split)``
    cover all of them, ``.category(name)`` returns the object restricted to one, and
    ``.train``/``.test`` work only when the data set has exactly one category (otherwise
    they raise a DatasetError listing the categories to choose from).

    ``load(sample)`` returns ``(image, mask)``: an HxWx3 uint8 RGB array and, when the data
    set has masks, an HxW bool array (all False for good images); ``mask`` is None when
    the data set has no masks (or, in a ``folder`` set with optional masks, for a defect
    image that has none).
    """

    name = "dataset"

    def __init__(self, root: str | Path | None, category: str | None = None) -> None:
        if root is None:
            raise DatasetError(f"data set {self.name!r} needs a root directory (root=... or --root DIR)")
        self.root = Path(root).expanduser()
        if not self.root.exists():
            raise DatasetError(f"{self.root}: data set root does not exist")
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: data set root is not a directory")
        self._scans: dict[str, CategoryScan] = {}
        self._all_categories: list[str] | None = None
        self.selected = category
        if category is not None:
            self._require_category(category)

    # -- to implement ----------------------------------------------------------------
    def _find_categories(self) -> list[str]:
        raise NotImplementedError

    def _scan(self, category: str) -> CategoryScan:
        raise NotImplementedError

    has_masks = True

    def _category_path(self, category: str) -> Path:
        """Where a category lives (used in error messages)."""
        return self.root / category

    # -- categories ------------------------------------------------------------------
    @property
    def all_categories(self) -> list[str]:
        """Every category present under the root."""
        if self._all_categories is None:
            self._all_categories = sorted(self._find_categories())
            if not self._all_categories:
                raise DatasetError(f"{self.root}: no {self.name} categories found")
        return self._all_categories

    @property
    def categories(self) -> list[str]:
        """The categories this object covers: the selected one, or all."""
        return [self.selected] if self.selected is not None else self.all_categories

    def _require_category(self, category: str) -> None:
        if category not in self.all_categories:
            raise DatasetError(
                f"{self._category_path(category)}: category {category!r} not found in {self.name} data set at "
                f"{self.root}; available: {', '.join(self.all_categories)}"
            )

    def category(self, name: str) -> AnomalyDataset:
        """This data set restricted to one category (shares the scanned listings)."""
        self._require_category(name)
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.selected = name
        return clone

    def __iter__(self) -> Iterator[AnomalyDataset]:
        """One single-category data set per category."""
        return (self.category(c) for c in self.categories)

    # -- listings --------------------------------------------------------------------
    def scan(self, category: str) -> CategoryScan:
        """Listing of one category (cached); never reads pixels."""
        if category not in self._scans:
            self._require_category(category)
            self._scans[category] = self._scan(category)
        return self._scans[category]

    def samples(self, split: str, category: str | None = None) -> list[DatasetSample]:
        """Samples of a split, for one category or every category this object covers."""
        if split not in SPLITS:
            raise DatasetError(f"unknown split {split!r}; expected one of {SPLITS}")
        out: list[DatasetSample] = []
        for cat in [category] if category is not None else self.categories:
            scan = self.scan(cat)
            if scan.problems:
                raise problems_error(scan.problems)
            out.extend(scan.splits.get(split, []))
        return out

    def _single_category(self) -> str:
        if self.selected is not None:
            return self.selected
        cats = self.all_categories
        if len(cats) == 1:
            return cats[0]
        raise DatasetError(
            f"{self.root}: {self.name} data set has {len(cats)} categories; choose one with "
            f"category=... or dataset.category(name): {', '.join(cats)}"
        )

    @property
    def train(self) -> list[DatasetSample]:
        """Training samples (normal images) of the selected category."""
        return self.samples("train", self._single_category())

    @property
    def test(self) -> list[DatasetSample]:
        """Test samples (good and defective) of the selected category."""
        return self.samples("test", self._single_category())

    @property
    def info(self) -> DatasetInfo:
        """Categories, per-split counts and defect types, from file listings only."""
        counts: dict[str, dict[str, SplitCounts]] = {}
        defects: dict[str, list[str]] = {}
        for cat in self.categories:
            scan = self.scan(cat)
            counts[cat] = scan.counts()
            defects[cat] = scan.defect_types()
        return DatasetInfo(
            name=self.name,
            categories=list(self.categories),
            counts=counts,
            defect_types=defects,
            has_masks=self.has_masks,
            root=self.root,
        )

    # -- pixels ----------------------------------------------------------------------
    def load(self, sample: DatasetSample, preprocess: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Read one sample: (HxWx3 uint8 image, HxW bool mask or None).

        Good images get an all-False mask when the data set has masks; a mask whose
        size differs from its image is a DatasetError naming both files. ``preprocess``
        (a :class:`pyimgano.preprocess.Preprocess`) gives both the model's geometry.
        """
        image, mask = self._read(sample)
        if preprocess is None:
            return image, mask
        return preprocess.apply(image, mask)

    def _read(self, sample: DatasetSample) -> tuple[np.ndarray, np.ndarray | None]:
        from pyimgano.images import read_image, read_mask

        try:
            image = read_image(sample.image_path)
        except ImageLoadError as exc:
            raise DatasetError(str(exc)) from None
        if not self.has_masks or (sample.label == 1 and sample.mask_path is None):
            return image, None
        if sample.mask_path is None:
            return image, np.zeros(image.shape[:2], dtype=bool)
        try:
            mask = read_mask(sample.mask_path)
        except ImageLoadError as exc:
            raise DatasetError(str(exc)) from None
        if mask.shape != image.shape[:2]:
            raise DatasetError(
                f"{sample.mask_path}: mask size {mask.shape[1]}x{mask.shape[0]} differs from its image "
                f"{sample.image_path} ({image.shape[1]}x{image.shape[0]})"
            )
        return image, mask

    def check(self, read_pixels: bool = True) -> list[Problem]:
        """Every problem of the covered categories: layout, unreadable files, mask sizes, and
        what would mislead a benchmark (an image in both train and test, a defect image
        without a mask where the others have one, an empty defect mask).

        ``read_pixels=False`` only lists files and reads image headers (fast; empty masks
        are then not seen).
        """
        try:
            categories = self.categories
        except DatasetError as exc:
            return [Problem(self.root, str(exc).split(": ", 1)[-1])]
        problems: list[Problem] = []
        for cat in categories:
            scan = self.scan(cat)
            problems.extend(scan.problems)
            problems.extend(misleading(scan, self.has_masks))
            for samples in scan.splits.values():
                for sample in samples:
                    problems.extend(self._check_sample(sample, read_pixels))
        return problems

    def _check_sample(self, sample: DatasetSample, read_pixels: bool) -> list[Problem]:
        found: list[Problem] = []
        try:
            if read_pixels:
                verify_image(sample.image_path)
            size = image_size(sample.image_path)
        except DatasetError as exc:
            return [Problem(sample.image_path, str(exc).split(": ", 1)[-1])]
        if sample.mask_path is not None:
            try:
                empty = read_pixels and mask_is_empty(sample.mask_path)
                mask_size = image_size(sample.mask_path)
            except DatasetError as exc:
                return [Problem(sample.mask_path, str(exc).split(": ", 1)[-1])]
            if mask_size != size:
                found.append(
                    Problem(
                        sample.mask_path,
                        f"mask size {mask_size[1]}x{mask_size[0]} differs from its image "
                        f"{sample.image_path.name} ({size[1]}x{size[0]})",
                    )
                )
            if empty and sample.label == 1:
                found.append(
                    Problem(
                        sample.mask_path,
                        f"defect mask of {sample.image_path.name} is empty (no defect pixel): "
                        "pixel metrics would count the defect as missed",
                    )
                )
        return found

    def __repr__(self) -> str:
        which = self.selected if self.selected is not None else "all categories"
        return f"<{type(self).__name__} {self.name!r} at {self.root} ({which})>"


def misleading(scan: CategoryScan, has_masks: bool) -> list[Problem]:
    """What a listing holds that would mislead a benchmark: the same image in train and test,
    and defect images without a mask when the others have one (pixel metrics are then
    skipped for the whole category). Paths the scan already reported are not repeated."""
    problems: list[Problem] = []
    reported = {p.path for p in scan.problems}
    train = {os.path.realpath(s.image_path): s.image_path for s in scan.splits.get("train", [])}
    for sample in scan.splits.get("test", []):
        twin = train.get(os.path.realpath(sample.image_path))
        if twin is not None:
            same = "" if twin == sample.image_path else f" (as {twin})"
            problems.append(
                Problem(sample.image_path, f"listed in both train and test{same}: its test score would be inflated")
            )
    defects = [s for s in scan.splits.get("test", []) if s.label == 1]
    with_mask = sum(s.mask_path is not None for s in defects)
    if has_masks and 0 < with_mask < len(defects):
        for sample in defects:
            if sample.mask_path is None and sample.image_path not in reported:
                problems.append(
                    Problem(
                        sample.image_path,
                        f"defect image without a mask while {with_mask} other(s) have one: "
                        "the benchmark skips pixel metrics for the whole category",
                    )
                )
    return problems


def describe(dataset: Any) -> dict[str, Any]:
    """A JSON-friendly summary of ``dataset.info`` (for the CLI)."""
    info = dataset.info
    return {
        "name": info.name,
        "root": str(info.root) if info.root else None,
        "has_masks": info.has_masks,
        "categories": {
            cat: {
                "counts": {split: c.model_dump() for split, c in info.counts.get(cat, {}).items()},
                "defect_types": info.defect_types.get(cat, []),
            }
            for cat in info.categories
        },
    }
