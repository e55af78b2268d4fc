"""Result tables: CSV, Markdown summary, the terminal table, and the rows they share.

Rows are grouped per data set; inside it, one row per (category, detector) and, at the
bottom, one mean row per detector (over the categories that finished), so detectors read
side by side. When the same detector appears with different parameters, its label says
which parameters differ.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from pyimgano.benchmark.job import METRICS
from pyimgano.benchmark.results import rows_to_csv

METRIC_TITLES = {
    "image_auroc": "img AUROC",
    "image_ap": "img AP",
    "image_f1_max": "img F1",
    "pixel_auroc": "px AUROC",
    "pixel_ap": "px AP",
    "pixel_f1_max": "px F1",
    "aupro": "AUPRO@0.3",
}
TIMING_TITLES = {"fit_s": "fit s", "predict_s": "predict s", "images_per_s": "img/s"}
COMPARE_METRICS = ("image_auroc", "pixel_auroc", "aupro")

CSV_COLUMNS = [
    "detector", "label", "dataset", "category", "status", *METRICS,
    "fit_s", "predict_s", "images_per_s", "peak_rss_mb", "n_train", "n_test", "params", "error",
]  # fmt: skip


def _params_key(run: dict[str, Any]) -> str:
    return json.dumps(run.get("params") or {}, sort_keys=True)


def detector_labels(runs: Iterable[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """(detector, params json) -> display label; params named only where they differ."""
    variants: dict[str, dict[str, dict[str, Any]]] = {}
    for run in runs:
        variants.setdefault(run["detector"], {})[_params_key(run)] = run.get("params") or {}
    labels = {}
    for detector, by_key in variants.items():
        if len(by_key) == 1:
            labels[(detector, next(iter(by_key)))] = detector
            continue
        keys = sorted({k for p in by_key.values() for k in p})
        differing = [k for k in keys if len({json.dumps(p.get(k), sort_keys=True) for p in by_key.values()}) > 1]
        for key, params in by_key.items():
            detail = ", ".join(f"{k}={json.dumps(params.get(k))}" for k in differing)
            labels[(detector, key)] = f"{detector} ({detail})"
    return labels


def label_of(run: dict[str, Any], labels: dict[tuple[str, str], str]) -> str:
    return labels[(run["detector"], _params_key(run))]


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None and not math.isnan(v)]
    return sum(present) / len(present) if present else None


def mean_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (data set, detector): means of metrics and timings over ok runs."""
    labels = detector_labels(runs)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["dataset"], label_of(run, labels)), []).append(run)
    rows = []
    for (dataset, label), members in groups.items():
        ok = [r for r in members if r["status"] == "ok"]
        rows.append(
            {
                "dataset": dataset,
                "label": label,
                "n_ok": len(ok),
                "n_runs": len(members),
                "metrics": {m: _mean([r["metrics"][m] for r in ok]) for m in METRICS},
                "timing": {t: _mean([r["timing"][t] for r in ok]) for t in TIMING_TITLES},
                "peak_rss_mb": max((r["peak_rss_mb"] for r in ok if r["peak_rss_mb"] is not None), default=None),
            }
        )
    return rows


def fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def fmt_seconds(value: float | None) -> str:
    """Durations: two decimals under 10 s, one above."""
    return fmt(value, 2 if value is not None and value < 10 else 1)


def _timing_cells(timing: dict[str, Any], peak: Any) -> list[str]:
    return [fmt_seconds(timing["fit_s"]), fmt_seconds(timing["predict_s"]), fmt(timing["images_per_s"], 1),
            fmt(peak, 0)]


def by_dataset(runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        out.setdefault(run["dataset"], []).append(run)
    return out


def table_rows(runs: list[dict[str, Any]]) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """Header and rows of the main table of one data set: (kind, cells), kind 'run'|'error'|'mean'."""
    labels = detector_labels(runs)
    header = ["category", "detector", *METRIC_TITLES.values(), *TIMING_TITLES.values(), "peak MiB"]
    rows: list[tuple[str, list[str]]] = []
    for run in sorted(runs, key=lambda r: r["category"]):
        if run["status"] == "ok":
            metric_cells = [fmt(run["metrics"][m]) for m in METRICS]
            rows.append(("run", [run["category"], label_of(run, labels), *metric_cells,
                                 *_timing_cells(run["timing"], run["peak_rss_mb"])]))
        else:
            cells = [run["category"], label_of(run, labels), "error"] + [""] * (len(header) - 3)
            rows.append(("error", cells))
    for mean in mean_rows(runs):
        name = f"mean ({mean['n_ok']}/{mean['n_runs']})" if mean["n_ok"] != mean["n_runs"] else "mean"
        rows.append(("mean", [name, mean["label"], *[fmt(mean["metrics"][m]) for m in METRICS],
                              *_timing_cells(mean["timing"], mean["peak_rss_mb"])]))
    return header, rows


def comparison_rows(runs: list[dict[str, Any]], metric: str) -> tuple[list[str], list[list[str]]] | None:
    """Categories x detectors for one metric (with a mean row); None with one detector."""
    labels = detector_labels(runs)
    detectors = list(dict.fromkeys(label_of(r, labels) for r in runs))
    if len(detectors) < 2:
        return None
    cells: dict[str, dict[str, Any]] = {}
    for run in runs:
        value = run["metrics"][metric] if run["status"] == "ok" else "error"
        cells.setdefault(run["category"], {})[label_of(run, labels)] = value
    rows = [[cat] + [fmt(cells[cat].get(d)) for d in detectors] for cat in sorted(cells)]
    means = {m["label"]: m["metrics"][metric] for m in mean_rows(runs)}
    rows.append(["mean"] + [fmt(means.get(d)) for d in detectors])
    return ["category", *detectors], rows


def errors(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in runs if r["status"] == "error"]


# -- renderers -----------------------------------------------------------------------------------
def results_csv(runs: list[dict[str, Any]]) -> str:
    labels = detector_labels(runs)
    flat = []
    for run in runs:
        row = {k: run[k] for k in ("detector", "dataset", "category", "status", "peak_rss_mb", "n_train", "n_test")}
        row.update(run["metrics"])
        row.update(run["timing"])
        row["label"] = label_of(run, labels)
        row["params"] = json.dumps(run["params"], sort_keys=True)
        row["error"] = run["error"]
        flat.append(row)
    return rows_to_csv(flat, CSV_COLUMNS)


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return [line(header), "|" + "|".join("---" for _ in header) + "|", *(line(r) for r in rows)]


def summary_markdown(runs: list[dict[str, Any]], title: str = "Benchmark results") -> str:
    """``summary.md``: per data set, the per-category table with mean rows, comparisons, errors."""
    n_err = len(errors(runs))
    lines = [f"# {title}", "", f"{len(runs)} runs: {len(runs) - n_err} ok, {n_err} error."]
    lines.append("Metrics: image and pixel AUROC / AP / F1-max, AUPRO up to FPR 0.3; "
                 "`–`: not applicable (no maps or no masks). Times in seconds, peak resident memory in MiB.")
    for dataset, ds_runs in by_dataset(runs).items():
        header, rows = table_rows(ds_runs)
        lines += ["", f"## {dataset}", ""]
        lines += _md_table(header, [[f"**{cells[0]}**", *cells[1:]] if kind == "mean" else cells for kind, cells in rows])
        for metric in COMPARE_METRICS:
            compared = comparison_rows(ds_runs, metric)
            if compared:
                lines += ["", f"### {METRIC_TITLES[metric]} side by side", ""]
                lines += _md_table(*compared)
    failed = errors(runs)
    if failed:
        lines += ["", "## Errors", ""]
        for run in failed:
            lines.append(f"- `{run['detector']}` on {run['dataset']}/{run['category']}: {run['error']}")
    return "\n".join(lines) + "\n"


WIDE_TABLE = 125  # columns a terminal needs for the metrics and the timings in one table


def _rich_table(title: str, header: list[str], rows: list[tuple[str, list[str]]], columns: list[int]) -> Any:
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    for i in columns:
        name = header[i]
        if i < 2:
            table.add_column(name, justify="left", min_width=len(name), overflow="fold")
        else:
            table.add_column(name.replace(" ", "\n", 1).replace("@", "\n@"), justify="right", no_wrap=True)
    previous = None
    for kind, cells in rows:
        if kind == "mean" and previous != "mean":
            table.add_section()
        table.add_row(*[cells[i] for i in columns], style={"mean": "bold", "error": "red"}.get(kind))
        previous = kind
    return table


def rich_tables(runs: list[dict[str, Any]], width: int | None = None) -> list[Any]:
    """Renderables for the terminal: per data set the result table (split in metrics and
    timings when ``width`` is below :data:`WIDE_TABLE`), the side-by-side table, the errors."""
    from rich.text import Text

    out: list[Any] = []
    for dataset, ds_runs in by_dataset(runs).items():
        header, rows = table_rows(ds_runs)
        title = f"pyimgano benchmark: {dataset}"
        n_metrics = 2 + len(METRIC_TITLES)
        if width is None or width >= WIDE_TABLE:
            out.append(_rich_table(title, header, rows, list(range(len(header)))))
        else:
            out.append(_rich_table(title, header, rows, list(range(n_metrics))))
            out.append(_rich_table(f"time and memory: {dataset}", header, rows,
                                   [0, 1, *range(n_metrics, len(header))]))
        side = _side_by_side(ds_runs, dataset)
        if side is not None:
            out.append(side)
    for run in errors(runs):
        out.append(Text(f"error: {run['detector']} on {run['dataset']}/{run['category']}: {run['error']}", style="red"))
    return out


def _side_by_side(runs: list[dict[str, Any]], dataset: str) -> Any:
    """One terminal table: per category, image AUROC, pixel AUROC and AUPRO of each detector."""
    from rich import box
    from rich.table import Table

    compared = {metric: comparison_rows(runs, metric) for metric in COMPARE_METRICS}
    if any(c is None for c in compared.values()):
        return None
    detectors = compared[COMPARE_METRICS[0]][0][1:]
    table = Table(title=f"side by side ({dataset})", box=box.SIMPLE_HEAD, header_style="bold")
    table.add_column("category")
    for metric in COMPARE_METRICS:
        for detector in detectors:
            table.add_column(f"{METRIC_TITLES[metric]}\n{detector}", justify="right")
    n_rows = len(compared[COMPARE_METRICS[0]][1])
    for i in range(n_rows):
        category = compared[COMPARE_METRICS[0]][1][i][0]
        cells = [category]
        for metric in COMPARE_METRICS:
            cells += compared[metric][1][i][1:]
        if category == "mean":
            table.add_section()
        table.add_row(*cells, style="bold" if category == "mean" else None)
    return table
