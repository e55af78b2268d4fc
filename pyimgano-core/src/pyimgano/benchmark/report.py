"""``report.html``: one self-contained page (inline CSS, images as base64), readable offline.

Per data set: the result table (threshold-free metrics on the post-processed maps, and the
figures at the calibrated thresholds) and the side-by-side comparisons; then per (data set,
category) the picture of :mod:`~pyimgano.benchmark.figures` (score histograms with the image
threshold, ROC and PRO curves), a threshold explorer per detector
(:mod:`~pyimgano.benchmark.explorer`: a slider over the image threshold with the test
split's figures) and the heatmap overlays of each detector.
"""

from __future__ import annotations

import base64
import html
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pyimgano.benchmark import explorer, tables

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px 32px; color: #1d1d1f; }
h1 { margin-bottom: 4px; } h2 { margin-top: 36px; border-bottom: 2px solid #ddd; padding-bottom: 4px; }
h3 { margin-top: 24px; } .meta { color: #555; font-size: 13px; margin-bottom: 16px; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0 16px; }
th, td { border: 1px solid #d0d0d0; padding: 4px 8px; text-align: right; white-space: nowrap; }
th { background: #f0f2f5; } td.name, th.name { text-align: left; }
tr.mean td { font-weight: bold; background: #f7f7fb; } tr.error td { color: #b00020; background: #fff3f3; }
td.best { background: #e3f6e5; font-weight: bold; }
.errors li { color: #b00020; margin-bottom: 6px; font-family: monospace; font-size: 12px; white-space: pre-wrap; }
figure.plot { width: min(100%, 700px); }
figure { display: inline-block; margin: 6px 10px 12px 0; vertical-align: top; width: min(100%, 560px); }
figure img { display: block; border: 1px solid #ccc; width: 100%; }
.side { display: flex; flex-wrap: wrap; gap: 0 28px; }
figcaption { font-size: 12px; color: #444; margin-top: 2px; }
.legend { font-size: 13px; color: #444; } code { background: #f3f3f3; padding: 1px 4px; }
"""


def _e(text: Any) -> str:
    return html.escape(str(text))


def _table(header: list[str], rows: list[tuple[str, list[str]]], best_cols: set[int] | None = None) -> str:
    """An HTML table; ``rows`` are (css class, cells); the first column is a name column."""
    out = ["<table><thead><tr>"]
    out += [f'<th class="{"name" if i < 2 else ""}">{_e(h)}</th>' for i, h in enumerate(header)]
    out.append("</tr></thead><tbody>")
    for kind, cells in rows:
        out.append(f'<tr class="{_e(kind)}">')
        best = _best_index(cells, best_cols)
        for i, cell in enumerate(cells):
            classes = ["name"] if i < 2 and best_cols is None or i == 0 else []
            if i in best:
                classes.append("best")
            out.append(f'<td class="{" ".join(classes)}">{_e(cell)}</td>')
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _best_index(cells: list[str], best_cols: set[int] | None) -> set[int]:
    if not best_cols:
        return set()
    values = {}
    for i in best_cols:
        try:
            values[i] = float(cells[i])
        except (ValueError, IndexError):
            pass
    if len(values) < 2:
        return set()
    top = max(values.values())
    return {i for i, v in values.items() if v == top}


MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}


def _image_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:{MIME.get(path.suffix.lower(), "image/png")};base64,{data}" alt="{_e(alt)}">'


def render_report(
    records: list[dict[str, Any]], out: Path, *, command: str | None = None, title: str = "pyimgano benchmark"
) -> str:
    """The HTML page for the given job records (as stored by the ResultStore)."""
    from pyimgano import __version__

    runs = [r["run"] for r in records]
    labels = tables.detector_labels(runs)
    n_err = len(tables.errors(runs))
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title><style>{CSS}{explorer.STYLE}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<div class="meta">{len(runs)} runs: {len(runs) - n_err} ok, {n_err} error &middot; generated {stamp} '
        f"&middot; pyimgano {_e(__version__)} &middot; {_e(platform.node())} ({_e(platform.machine())}, "
        f"Python {_e(platform.python_version())})"
        + (f"<br>command: <code>{_e(command)}</code>" if command else "")
        + "</div>",
        '<p class="legend">Metrics: '
        + "; ".join(f"<b>{_e(title)}</b>" + (f": {_e(summary)}" if summary else "")
                    for title, summary in tables.metrics_legend(runs))
        + ". <code>–</code> means not applicable (e.g. pixel metrics without anomaly maps or masks). "
        "Threshold-free metrics are computed on the post-processed maps; <i>@thr</i> columns are what the "
        "pipeline does at the thresholds it calibrated on held-out training images (never on test images). "
        "Times in seconds (predict includes post-processing); peak resident memory of the process that ran "
        "the job in MiB.</p>",
    ]
    note = tables.seeds_note(runs)
    if note:
        parts.append(f'<p class="legend">Seeds: {_e(note).replace("`", "")}.</p>')
    for dataset, ds_runs in tables.by_dataset(runs).items():
        ds_labels = tables.detector_labels(ds_runs)
        header, rows = tables.table_rows(ds_runs, ds_labels)
        parts += [f"<h2>{_e(dataset)}</h2>", _table(header, rows)]
        side = []
        for metric in tables.headline_keys(ds_runs):
            compared = tables.comparison_rows(ds_runs, metric, ds_labels)
            if compared:
                side_header, side_rows = compared
                side.append(f"<div><h3>{_e(tables.side_by_side_title(metric, runs))}</h3>")
                side.append(
                    _table(
                        side_header,
                        [("mean" if r[0] == "mean" else "run", r) for r in side_rows],
                        best_cols=set(range(1, len(side_header))),
                    )
                )
                side.append("</div>")
        if side:
            parts.append('<div class="side">' + "".join(side) + "</div>")
        few = tables.few_shot_rows(ds_runs)
        if few:
            parts += [f"<h3>Few-shot: {_e(dataset)}</h3>", f'<p class="legend">{_e(tables.few_shot_note(ds_runs))}</p>',
                      _table(*few)]
    failed = tables.errors(runs)
    if failed:
        several = len(tables.seeds_of(runs)) > 1
        parts.append("<h2>Errors</h2><ul class='errors'>")
        parts += [f"<li>{_e(tables.where(r, several))}: {_e(r['error'])}</li>" for r in failed]
        parts.append("</ul>")
    section = _category_section(records, out, labels)
    parts.append(section)
    if 'class="explorer"' in section:
        parts.append(f"<script>{explorer.SCRIPT}</script>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _category_section(records: list[dict[str, Any]], out: Path, labels: dict) -> str:
    """Per (data set, category): the picture of the detectors' scores and curves, then the
    overlays of each detector."""
    from pyimgano.benchmark import figures

    ok = [r for r in records if r["run"]["status"] == "ok"]
    shown = _one_seed_each(ok, labels)
    if not shown:
        return ""
    thinned = len(shown) < len(ok)  # several seeds: one seed's pictures per detector and category
    plots = figures.matplotlib_available()
    parts = [
        "<h2>Per category</h2>",
        '<p class="legend">'
        + ("Pictures: per detector, a histogram of the good and defective test images' scores with the "
           "calibrated image threshold (dashed); the image ROC curves and the PRO curves of the detectors. "
           if plots else f"<b>{_e(figures.MISSING)}</b> ")
        + "Threshold explorers: move the slider over the image threshold to see the test split's false-reject "
        "rate, recall, precision and F1 there, beside the calibrated threshold's. "
        + "Heatmaps: the test image &middot; the post-processed anomaly map over it (blue = normal, red = "
        "anomalous; the pixel threshold halfway) with the ground-truth outline in white &middot; the image with "
        "the ground truth outlined in green and the predicted mask (map above the pixel threshold) in magenta."
        + (" With several seeds, the pictures of one seed (the first in the grid)." if thinned else "")
        + "</p>",
    ]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in shown:
        groups.setdefault((record["run"]["dataset"], record["run"]["category"]), []).append(record)
    for (dataset, category), members in groups.items():
        parts.append(f"<h3>{_e(dataset)} / {_e(category)}</h3>")
        series = [figures.series_of(r, out, tables.label_of(r["run"], labels)) for r in members]
        if plots:
            path = figures.category_figure(out, dataset, category, series)
            if path is not None:
                parts.append(f'<figure class="plot">{_image_tag(path, f"{dataset} {category} scores and curves")}'
                             "</figure>")
        for record, one in zip(members, series):
            data = explorer.explorer_data(one.good, one.defective, record["run"].get("deployed") or {})
            if data is not None:
                parts.append(explorer.explorer_html(one.label, data))
        for record in members:
            if not record.get("overlays"):
                continue
            label = tables.label_of(record["run"], labels)
            seed = f" (seed {_e(record['run'].get('seed'))})" if thinned else ""
            parts.append(f"<div><b>{_e(label)}</b>{seed}<br>")
            for rel in record["overlays"]:
                path = out / rel
                if path.is_file():
                    parts.append(f"<figure>{_image_tag(path, Path(rel).name)}<figcaption>{_e(Path(rel).stem)}"
                                 "</figcaption></figure>")
            parts.append("</div>")
    return "\n".join(parts)


def _one_seed_each(records: list[dict[str, Any]], labels: dict) -> list[dict[str, Any]]:
    """The records, one per (data set, category, detector label): the first in grid order."""
    chosen: dict[tuple[str, str, str], dict[str, Any]] = {}
    for record in records:
        run = record["run"]
        chosen.setdefault((run["dataset"], run["category"], tables.label_of(run, labels)), record)
    return list(chosen.values())
