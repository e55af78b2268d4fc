"""MVTec AD layout: ``<root>/<category>/{train/good, test/<defect>, ground_truth/<defect>/<stem>_mask.png}``.

The same scanner reads BTAD (``ok``/``ko`` folders, masks named like their image) and the
``folder`` and ``synthetic`` data sets, which use the MVTec layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pyimgano.contracts import DatasetSample
from pyimgano_datasets.base import AnomalyDataset, CategoryScan, Problem, image_files

MaskPolicy = Literal["required", "optional", "none"]


@dataclass(frozen=True)
class Layout:
    """Folder names of an MVTec-like layout."""

    good: str = "good"
    masks: str = "ground_truth"
    mask_suffix: str = "_mask"
    mask_extensions: tuple[str, ...] = (".png",)
    train_dir: str = "train"
    test_dir: str = "test"


MVTEC_LAYOUT = Layout()


def find_mask(mask_dir: Path, stem: str, layout: Layout) -> Path | None:
    for ext in layout.mask_extensions:
        candidate = mask_dir / f"{stem}{layout.mask_suffix}{ext}"
        if candidate.is_file():
            return candidate
    return None


def scan_layout(category_dir: Path, category: str, layout: Layout, masks: MaskPolicy = "required") -> CategoryScan:
    """List one category in an MVTec-like layout; layout problems are collected, not raised."""
    problems: list[Problem] = []
    splits: dict[str, list[DatasetSample]] = {"train": [], "test": []}

    train_good = category_dir / layout.train_dir / layout.good
    if not train_good.is_dir():
        problems.append(Problem(train_good, "missing training folder of good images"))
    else:
        files = image_files(train_good)
        if not files:
            problems.append(Problem(train_good, "empty split: no training images"))
        splits["train"] = [DatasetSample(image_path=p, label=0, category=category) for p in files]

    test_dir = category_dir / layout.test_dir
    if not test_dir.is_dir():
        problems.append(Problem(test_dir, "missing test folder"))
        return CategoryScan(splits, problems)
    folders = [d for d in test_dir.iterdir() if d.is_dir() and not d.name.startswith(".")]
    for defect_dir in sorted(folders, key=lambda d: (d.name != layout.good, d.name)):  # good first
        files = image_files(defect_dir)
        if defect_dir.name == layout.good:
            splits["test"] += [DatasetSample(image_path=p, label=0, category=category) for p in files]
            continue
        mask_dir = category_dir / layout.masks / defect_dir.name
        for path in files:
            mask = None
            if masks != "none":
                mask = find_mask(mask_dir, path.stem, layout)
                if mask is None and masks == "required":
                    expected = mask_dir / f"{path.stem}{layout.mask_suffix}{layout.mask_extensions[0]}"
                    problems.append(Problem(path, f"defect image without its mask (expected {expected})"))
            splits["test"].append(
                DatasetSample(image_path=path, label=1, mask_path=mask, defect_type=defect_dir.name, category=category)
            )
    if not splits["test"]:
        problems.append(Problem(test_dir, "empty split: no test images"))
    return CategoryScan(splits, problems)


def looks_like_category(path: Path, layout: Layout = MVTEC_LAYOUT) -> bool:
    return path.is_dir() and ((path / layout.train_dir).is_dir() or (path / layout.test_dir).is_dir())


class MVTecDataset(AnomalyDataset):
    """MVTec AD (or any data set in its layout); masks are required for defect images."""

    name = "mvtec"
    layout = MVTEC_LAYOUT
    mask_policy: MaskPolicy = "required"

    def _find_categories(self) -> list[str]:
        return [p.name for p in self.root.iterdir() if not p.name.startswith(".") and looks_like_category(p, self.layout)]

    def _scan(self, category: str) -> CategoryScan:
        return scan_layout(self.root / category, category, self.layout, self.mask_policy)


def load_mvtec(root: str | Path | None = None, category: str | None = None) -> MVTecDataset:
    """Factory of the ``mvtec`` data set."""
    return MVTecDataset(root, category)
