"""The report's pictures, one per (data set, category): score histograms, ROC and PRO curves.

Drawn with matplotlib, an optional dependency (``pip install pyimgano-core[report]``):
without it the report says so in one line and shows everything else. Each picture is a
PNG under ``DIR/figures/``, named by a digest of what it shows, so rewriting the report
(every flush) redraws only the categories whose runs changed.

Per detector: a histogram of its good and defective test scores with its calibrated image
threshold marked; on one axis each, every detector's image ROC curve and PRO curve (up to
the AUPRO FPR limit), from the points the job stored (``extra.curves``).
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FIGURES_DIR = "figures"
MISSING = "Pictures need matplotlib: pip install 'pyimgano-core[report]'."
DPI = 72


@dataclass
class Series:
    """One detector's data in a category's picture."""

    label: str
    good: list[float]
    defective: list[float]
    threshold: float | None
    roc: list[list[float]] | None
    pro: list[list[float]] | None
    fpr_limit: float = 0.3


def matplotlib_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"


def figure_path(out: Path, dataset: str, category: str, series: list[Series]) -> Path:
    """Where the picture of these series lives: its name carries a digest of the data."""
    digest = hashlib.sha1(json.dumps([s.__dict__ for s in series], sort_keys=True).encode()).hexdigest()[:10]
    return out / FIGURES_DIR / f"{_slug(dataset)}__{_slug(category)}__{digest}.png"


def category_figure(out: Path, dataset: str, category: str, series: list[Series]) -> Path | None:
    """The picture of one category (drawn unless an identical one exists); older pictures of
    the category are removed. None when there is nothing to draw."""
    if not any(s.good or s.defective for s in series):
        return None
    path = figure_path(out, dataset, category, series)
    if path.is_file():
        return path
    from pyimgano.atomic import atomic_write

    data = render(series, f"{dataset} / {category}")
    for old in path.parent.glob(f"{_slug(dataset)}__{_slug(category)}__*.png"):
        old.unlink(missing_ok=True)
    atomic_write(path, data)
    return path


def render(series: list[Series], title: str) -> bytes:
    """PNG bytes: ROC and PRO axes on top, one score histogram per detector below."""
    import io

    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    n = len(series)
    per_row = min(n, 3)
    hist_rows = -(-n // per_row)
    fig = Figure(figsize=(9.6, 3.0 + 2.3 * hist_rows), dpi=DPI, layout="constrained")
    grid = fig.add_gridspec(1 + hist_rows, 2 * per_row, height_ratios=[1.3] + [1.0] * hist_rows)
    roc_ax = fig.add_subplot(grid[0, :per_row])
    pro_ax = fig.add_subplot(grid[0, per_row:])
    colours = matplotlib.colormaps["tab10"].colors
    for i, s in enumerate(series):
        colour = colours[i % len(colours)]
        if s.roc:
            roc_ax.plot(s.roc[0], s.roc[1], color=colour, lw=1.6, label=s.label)
        if s.pro:
            pro_ax.plot(s.pro[0], s.pro[1], color=colour, lw=1.6, label=s.label)
    roc_ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls=":")
    roc_ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="false positive rate (good images)",
               ylabel="true positive rate", title="image ROC")
    limit = max((s.fpr_limit for s in series), default=0.3)
    pro_ax.set(xlim=(0, limit), ylim=(0, 1.02), xlabel="false positive rate (good pixels)",
               ylabel="per-region overlap", title=f"PRO curve (to FPR {limit:g})")
    for ax in (roc_ax, pro_ax):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="lower right")
    for i, s in enumerate(series):
        ax = fig.add_subplot(grid[1 + i // per_row, 2 * (i % per_row): 2 * (i % per_row) + 2])
        values = np.asarray(s.good + s.defective, dtype=np.float64)
        edges = np.histogram_bin_edges(values, bins=min(30, max(5, values.size // 2))) if values.size else 10
        ax.hist(s.good, bins=edges, color="#3a7bd5", alpha=0.6, label=f"good ({len(s.good)})")
        ax.hist(s.defective, bins=edges, color="#d9534f", alpha=0.6, label=f"defective ({len(s.defective)})")
        if s.threshold is not None:
            ax.axvline(s.threshold, color="black", lw=1.2, ls="--", label=f"threshold {s.threshold:.3g}")
        ax.set_title(s.label, fontsize=9)
        ax.set_xlabel("image score", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=11)
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # a crowded picture falls back to a plain layout: fine
        warnings.filterwarnings("ignore", message="constrained_layout not applied")
        fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def series_of(record: dict[str, Any], out: Path, label: str) -> Series:
    """A record's series: scores from its scores file, threshold and curves from the record."""
    import csv

    good: list[float] = []
    defective: list[float] = []
    scores_file = record.get("scores_file")
    if scores_file and (out / scores_file).is_file():
        with open(out / scores_file, newline="", encoding="utf-8", errors="surrogateescape") as handle:
            for row in csv.DictReader(handle):
                (defective if row.get("label") == "1" else good).append(float(row["score"]))
    deployed = record["run"].get("deployed") or {}
    curves = (record.get("extra") or {}).get("curves") or {}
    return Series(label, good, defective, deployed.get("image_threshold"), curves.get("roc"), curves.get("pro"),
                  float(curves.get("fpr_limit") or 0.3))
