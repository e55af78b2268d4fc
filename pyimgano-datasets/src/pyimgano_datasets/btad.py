"""BTAD (BeanTech Anomaly Detection): ``<root>/<01|02|03>/{train/ok, test/ok, test/ko, ground_truth/ko}``.

Masks carry the image's file stem and are ``.png`` or ``.bmp`` depending on the category.
"""

from __future__ import annotations

from pathlib import Path

from pyimgano_datasets.mvtec import Layout, MVTecDataset

BTAD_LAYOUT = Layout(good="ok", mask_suffix="", mask_extensions=(".png", ".bmp"))


class BtadDataset(MVTecDataset):
    name = "btad"
    layout = BTAD_LAYOUT


def load_btad(root: str | Path | None = None, category: str | None = None) -> BtadDataset:
    """Factory of the ``btad`` data set."""
    return BtadDataset(root, category)
