"""Pixel-level metrics over all pixels of a set: masks first, then anomaly maps.

The normal-pixel scores are sorted once (in place, in the maps' own float dtype); every
metric then needs only counts at the distinct defect-pixel scores. ``pixel_metrics``
computes all of them, AUPRO included, from that one sort; inside
:func:`pyimgano.metrics._inputs.shared_split` (the benchmark's metric stage) the separate
functions share it too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pyimgano.metrics import _ranking
from pyimgano.metrics._inputs import split_sorted, undefined
from pyimgano.metrics.params import DEFAULT_FPR_LIMIT
from pyimgano.metrics.pro import check_fpr_limit, pro_from_split


def _ranking_of(masks: Any, maps: Any) -> _ranking.Ranking:
    _, defects, normals = split_sorted(masks, maps)
    return _ranking.rank(np.sort(defects), normals)  # a sorted copy: AUPRO needs the mask order


def pixel_auroc(masks: Any, maps: Any, *, nan_on_undefined: bool = False) -> float:
    """Area under the ROC curve over all pixels (needs defect and defect-free pixels)."""
    r = _ranking_of(masks, maps)
    if r.n_pos == 0 or r.n_neg == 0:
        return undefined("pixel_auroc", "the masks hold a single class", nan_on_undefined)
    return _ranking.auroc(r)


def pixel_ap(masks: Any, maps: Any, *, nan_on_undefined: bool = False) -> float:
    """Average precision over all pixels (needs at least one defect pixel)."""
    r = _ranking_of(masks, maps)
    if r.n_pos == 0:
        return undefined("pixel_ap", "the masks have no defect pixel", nan_on_undefined)
    return _ranking.average_precision(r)


def pixel_f1_max(masks: Any, maps: Any, *, nan_on_undefined: bool = False) -> tuple[float, float]:
    """Best F1 over all thresholds over all pixels, and that threshold (score >= threshold)."""
    r = _ranking_of(masks, maps)
    if r.n_pos == 0:
        nan = undefined("pixel_f1_max", "the masks have no defect pixel", nan_on_undefined)
        return nan, nan
    return _ranking.f1_max(r)


def pixel_metrics(
    masks: Any, maps: Any, *, fpr_limit: float = DEFAULT_FPR_LIMIT, nan_on_undefined: bool = False
) -> dict[str, float]:
    """Every pixel metric from one sort: ``pixel_auroc``, ``pixel_ap``, ``pixel_f1_max``,
    ``pixel_f1_threshold`` and ``aupro`` (at ``fpr_limit``)."""
    limit = check_fpr_limit(fpr_limit)
    mask_list, defects, normals = split_sorted(masks, maps)
    r = _ranking.rank(np.sort(defects), normals)
    out: dict[str, float] = {}
    if r.n_pos == 0 or r.n_neg == 0:
        out["pixel_auroc"] = undefined("pixel_auroc", "the masks hold a single class", nan_on_undefined)
    else:
        out["pixel_auroc"] = _ranking.auroc(r)
    if r.n_pos == 0:
        nan = undefined("pixel_ap", "the masks have no defect pixel", nan_on_undefined)
        out.update(pixel_ap=nan, pixel_f1_max=nan, pixel_f1_threshold=nan)
    else:
        out["pixel_ap"] = _ranking.average_precision(r)
        out["pixel_f1_max"], out["pixel_f1_threshold"] = _ranking.f1_max(r)
    out["aupro"] = pro_from_split(
        mask_list, defects, normals, limit, nan_on_undefined=nan_on_undefined, normals_sorted=True
    )
    return out
