"""The ``folder`` data set: your own images, with or without masks.

Two ways to point at them:

* ``root`` in the MVTec layout: either a folder of categories (``<root>/<category>/train/good``
  ...) or one category folder itself (``<root>/train/good``, the category is the folder name).
* explicit lists ``train_good``, ``test_good``, ``test_defect`` (files or folders) and
  optionally ``test_masks`` (files in the order of ``test_defect``, or folders where a mask
  is found by the image's stem, as ``<stem>.png`` or ``<stem>_mask.png``). The category is
  ``category`` or ``"custom"``.

``masks``: ``auto`` uses masks where present, ``required`` makes a defect image without
mask a problem, ``none`` ignores masks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pyimgano.contracts import DatasetSample
from pyimgano.errors import DatasetError
from pyimgano.images import IMAGE_EXTENSIONS
from pyimgano_datasets.base import AnomalyDataset, CategoryScan, Problem, image_files
from pyimgano_datasets.mvtec import MVTEC_LAYOUT, looks_like_category, scan_layout

MASK_POLICY = {"auto": "optional", "required": "required", "none": "none"}


def _expand(entries: list[Path], problems: list[Problem], what: str) -> list[Path]:
    files: list[Path] = []
    for entry in entries:
        entry = Path(entry).expanduser()
        if entry.is_dir():
            found = image_files(entry)
            if not found:
                problems.append(Problem(entry, f"no images in this {what} folder"))
            files.extend(found)
        elif entry.is_file():
            files.append(entry)
        else:
            problems.append(Problem(entry, f"{what} path does not exist"))
    return files


def _mask_in_folders(folders: list[Path], stem: str) -> Path | None:
    for folder in folders:
        for name in (stem, f"{stem}_mask"):
            for ext in IMAGE_EXTENSIONS:
                candidate = folder / f"{name}{ext}"
                if candidate.is_file():
                    return candidate
    return None


class FolderDataset(AnomalyDataset):
    name = "folder"

    def __init__(
        self,
        root: str | Path | None,
        category: str | None = None,
        *,
        lists: dict[str, list[Path] | None] | None = None,
        masks: Literal["auto", "required", "none"] = "auto",
    ) -> None:
        self.masks = masks
        self.lists = {k: v for k, v in (lists or {}).items() if v}
        self.single_category = False
        if self.lists:
            if "train_good" not in self.lists:
                raise DatasetError("folder data set from lists needs train_good (files or folders of good images)")
            self.root = Path(root).expanduser() if root is not None else Path.cwd()
            self._scans = {}
            self._all_categories = None
            self.list_category = category or "custom"
            self.selected = self.list_category
            return
        if root is None:
            raise DatasetError("folder data set needs root=DIR (MVTec layout) or train_good=[...] lists")
        root_path = Path(root).expanduser()
        if looks_like_category(root_path):
            # the root is one category folder
            self.single_category = True
            super().__init__(root_path.parent, None)
            self._all_categories = [root_path.name]
            if category is not None:
                self._require_category(category)
                self.selected = category
            return
        super().__init__(root_path, category)

    @property
    def has_masks(self) -> bool:  # type: ignore[override]
        if self.masks == "none":
            return False
        if self.masks == "required":
            return True
        return any(s.mask_path is not None for c in self.categories for s in self.scan(c).splits["test"])

    def _find_categories(self) -> list[str]:
        if self.lists:
            return [self.list_category]
        return [p.name for p in self.root.iterdir() if not p.name.startswith(".") and looks_like_category(p)]

    def _scan(self, category: str) -> CategoryScan:
        if not self.lists:
            return scan_layout(self.root / category, category, MVTEC_LAYOUT, MASK_POLICY[self.masks])  # type: ignore[arg-type]
        problems: list[Problem] = []
        train = _expand(self.lists["train_good"], problems, "train_good")
        good = _expand(self.lists.get("test_good", []), problems, "test_good")
        defects = _expand(self.lists.get("test_defect", []), problems, "test_defect")
        mask_entries = [Path(p).expanduser() for p in self.lists.get("test_masks", [])]
        mask_files = [p for p in mask_entries if not p.is_dir()]
        mask_dirs = [p for p in mask_entries if p.is_dir()]
        for p in mask_files:
            if not p.is_file():
                problems.append(Problem(p, "test_masks path does not exist"))
        if mask_files and len(mask_files) != len(defects):
            problems.append(
                Problem(mask_files[0], f"{len(mask_files)} mask files for {len(defects)} defect images; give one per image")
            )
        if not train:
            problems.append(Problem(self.root, "empty split: no train_good images"))
        samples_test = [DatasetSample(image_path=p, label=0, category=category) for p in good]
        for i, path in enumerate(defects):
            mask = None
            if self.masks != "none":
                if mask_files and len(mask_files) == len(defects):
                    mask = mask_files[i] if mask_files[i].is_file() else None
                elif mask_dirs:
                    mask = _mask_in_folders(mask_dirs, path.stem)
                if mask is None and self.masks == "required":
                    problems.append(Problem(path, "defect image without its mask"))
            defect_type = path.parent.name if path.parent.name else "defect"
            samples_test.append(
                DatasetSample(image_path=path, label=1, mask_path=mask, defect_type=defect_type, category=category)
            )
        if not samples_test:
            problems.append(Problem(self.root, "empty split: no test images (give test_good and/or test_defect)"))
        train_samples = [DatasetSample(image_path=p, label=0, category=category) for p in train]
        return CategoryScan({"train": train_samples, "test": samples_test}, problems)


def load_folder(
    root: str | Path | None = None,
    category: str | None = None,
    *,
    train_good: list[Path] | None = None,
    test_good: list[Path] | None = None,
    test_defect: list[Path] | None = None,
    test_masks: list[Path] | None = None,
    masks: Literal["auto", "required", "none"] = "auto",
) -> FolderDataset:
    """Factory of the ``folder`` data set."""
    lists = {"train_good": train_good, "test_good": test_good, "test_defect": test_defect, "test_masks": test_masks}
    return FolderDataset(root, category, lists=lists, masks=masks)
