"""Straightforward reference implementations, written from the definitions, for the tests."""

from __future__ import annotations

from bisect import bisect

import numpy as np
from scipy import ndimage


def aupro_by_full_sort(masks, maps, limit):
    """AU-PRO the way the MVTec AD evaluation code computes it: every pixel sorted."""
    fp_change, pro_change, scores = [], [], []
    n_regions = n_ok = 0
    for mask, amap in zip(masks, maps):
        labels, n = ndimage.label(np.asarray(mask) > 0, structure=np.ones((3, 3)))
        pro = np.zeros(labels.shape)
        for k in range(1, n + 1):
            region = labels == k
            pro[region] = 1.0 / region.sum()
        n_regions += n
        n_ok += int((labels == 0).sum())
        fp_change.append((labels == 0).ravel())
        pro_change.append(pro.ravel())
        scores.append(np.asarray(amap, np.float64).ravel())
    s, fp, pro = np.concatenate(scores), np.concatenate(fp_change), np.concatenate(pro_change)
    order = np.argsort(-s, kind="stable")
    s, fprs, pros = s[order], np.cumsum(fp[order]) / n_ok, np.cumsum(pro[order]) / n_regions
    keep = np.r_[s[1:] != s[:-1], True]
    x = np.r_[0.0, fprs[keep], 1.0]
    y = np.r_[0.0, np.minimum(pros[keep], 1.0), 1.0]
    correction = 0.0
    if limit not in x:
        i = bisect(list(x), limit)
        y_at = y[i - 1] + (y[i] - y[i - 1]) * (limit - x[i - 1]) / (x[i] - x[i - 1])
        correction = 0.5 * (y_at + y[i - 1]) * (limit - x[i - 1])
    inside = x <= limit
    x, y = x[inside], y[inside]
    return (np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(x)) + correction) / limit
