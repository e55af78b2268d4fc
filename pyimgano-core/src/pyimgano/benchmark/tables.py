"""Result tables: CSV, Markdown summary, the terminal table, and the rows they share.

Rows are grouped per data set; inside it, one row per (category, detector) and, at the
bottom, one mean row per detector (over the categories that finished), so detectors read
side by side. When the same detector appears with different parameters, its label says
which parameters differ.

With several seeds, a (category, detector) row aggregates its seeds: the mean of each
metric, ``± the sample standard deviation`` over the seeds that finished, and a ``seeds``
column (seeds ok / seeds run). The CSV keeps one row per run, with its seed. A one-seed
grid reads exactly as before.

Beside the threshold-free metrics, the tables show what the calibrated pipeline does
(results.json's ``deployed``): image F1 and FPR at the image threshold, pixel F1 at the
pixel threshold (:data:`DEPLOYED_COLUMNS`; absent for folders written before them).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pyimgano.benchmark.metric_set import MetricColumn, describe_keys
from pyimgano.benchmark.results import Deployed, deployed_columns, rows_to_csv
from pyimgano.terminal import natural_width

TIMING_TITLES = {"fit_s": "fit s", "predict_s": "predict s", "images_per_s": "img/s"}
DEPLOYED = "deployed."  # column keys of the deployed block: deployed.<results.json key>
DEPLOYED_COLUMNS = tuple(MetricColumn(f"{DEPLOYED}{key}", title, summary, level)
                         for key, title, summary, level in deployed_columns())


def value_of(run: dict[str, Any], key: str) -> float | None:
    """A run's value for a column key: a metric key, or ``deployed.<key>``."""
    if key.startswith(DEPLOYED):
        return (run.get("deployed") or {}).get(key[len(DEPLOYED):])
    return run["metrics"].get(key)


def metric_keys_of(runs: Iterable[dict[str, Any]]) -> list[str]:
    """The metric keys of the runs, in first-seen order (every run of a grid has the same)."""
    return list(dict.fromkeys(key for run in runs for key in run["metrics"]))


def metric_columns(runs: Iterable[dict[str, Any]]) -> list[MetricColumn]:
    """The metric columns of the runs: key, title, summary, level, headline (from the specs)."""
    return describe_keys(metric_keys_of(runs))


def table_columns(runs: list[dict[str, Any]]) -> list[MetricColumn]:
    """The value columns of the tables: the metrics, then the deployed figures (when any run has them)."""
    deployed = list(DEPLOYED_COLUMNS) if any(r.get("deployed") for r in runs) else []
    return metric_columns(runs) + deployed


def headline_keys(runs: list[dict[str, Any]]) -> list[str]:
    """The keys of the headline metrics (side-by-side tables, log lines)."""
    return [c.key for c in metric_columns(runs) if c.headline]


def metrics_legend(runs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(title, summary) of each value column, for the legends of summary.md and report.html."""
    return [(c.title, c.summary) for c in table_columns(runs)]


def shots_of(run: dict[str, Any]) -> int:
    """The run's few-shot K (0: zero-shot, also for files from before few-shot mode)."""
    return int((run.get("few_shot") or {}).get("k") or 0)


def _params_key(run: dict[str, Any]) -> str:
    pipeline = run.get("pipeline")
    k = shots_of(run)
    if pipeline or k:
        return json.dumps({"params": run.get("params") or {}, "pipeline": pipeline, **({"few_shot": k} if k else {})},
                          sort_keys=True)
    return json.dumps(run.get("params") or {}, sort_keys=True)


@functools.lru_cache(maxsize=256)
def _step_defaults(name: str) -> dict[str, Any]:
    from pyimgano.postprocess.chain import PostProcessing

    try:
        return PostProcessing.from_config([{"name": name}]).to_config()[0]
    except Exception:  # noqa: BLE001 - a step no longer registered: every parameter is shown
        return {}


def describe_steps(steps: list[dict[str, Any]]) -> str:
    """A post-processing config in a few words: ``gaussian(sigma=2.0)+standardize``."""
    parts = []
    for step in steps:
        defaults = _step_defaults(step["name"])
        changed = [f"{k}={v}" for k, v in step.items() if k not in ("name", "state") and defaults.get(k) != v]
        parts.append(step["name"] + (f"({', '.join(changed)})" if changed else ""))
    return "+".join(parts) or "none"


def seeds_of(runs: Iterable[dict[str, Any]]) -> list[Any]:
    """The distinct seeds of the runs, sorted (None, from old files, last)."""
    return sorted({r.get("seed") for r in runs}, key=lambda s: (s is None, s if s is not None else 0))


def _grid_params(run: dict[str, Any], several_seeds: bool) -> dict[str, Any]:
    """The parameters that name a detector variant: its parameters and its pipeline
    settings; with several seeds, the ``seed`` parameter the grid passed on is the run's
    seed, not a variant."""
    params = run.get("params") or {}
    if several_seeds and "seed" in params and params["seed"] == run.get("seed"):
        params = {k: v for k, v in params.items() if k != "seed"}
    pipeline = run.get("pipeline")
    if pipeline:
        params = {**params, **{k: v for k, v in pipeline.items() if k != "postprocess"},
                  "postprocess": describe_steps(pipeline["postprocess"])}
    return {**params, "few_shot": shots_of(run)}


class Labels(dict):
    """(detector, params json) -> display label; also remembers the label of each run it
    was built from, so that looking runs up again costs no JSON encoding."""

    def __init__(self) -> None:
        super().__init__()
        self.of_run: dict[int, tuple[dict[str, Any], str]] = {}


def detector_labels(runs: Iterable[dict[str, Any]]) -> Labels:
    """(detector, params json) -> display label; params named only where they differ."""
    runs = list(runs)
    several = len(seeds_of(runs)) > 1
    variants: dict[str, dict[str, dict[str, Any]]] = {}
    keys_of_runs = []
    for run in runs:
        full = _params_key(run)
        params = _grid_params(run, several)
        key = json.dumps(params, sort_keys=True)
        variants.setdefault(run["detector"], {})[key] = params
        keys_of_runs.append((full, key))
    by_variant = {}
    for detector, by_key in variants.items():
        if len(by_key) == 1:
            by_variant[(detector, next(iter(by_key)))] = detector
            continue
        keys = sorted({k for p in by_key.values() for k in p})
        differing = [k for k in keys if len({json.dumps(p.get(k), sort_keys=True) for p in by_key.values()}) > 1]
        for key, params in by_key.items():
            detail = ", ".join(f"{k}={json.dumps(params.get(k))}" for k in differing)
            by_variant[(detector, key)] = f"{detector} ({detail})"
    labels = Labels()
    for run, (full, key) in zip(runs, keys_of_runs):
        label = by_variant[(run["detector"], key)]
        labels[(run["detector"], full)] = label
        labels.of_run[id(run)] = (run, label)  # the run is kept, so its id stays its own
    return labels


def label_of(run: dict[str, Any], labels: dict[tuple[str, str], str]) -> str:
    known = getattr(labels, "of_run", {}).get(id(run))
    if known is not None and known[0] is run:
        return known[1]
    return labels[(run["detector"], _params_key(run))]


def _present(values: Iterable[float | None]) -> list[float]:
    return [v for v in values if v is not None and not math.isnan(v)]


def _mean(values: list[float | None]) -> float | None:
    present = _present(values)
    return sum(present) / len(present) if present else None


def _std(values: list[float | None]) -> float | None:
    """Sample standard deviation; None with fewer than two values."""
    present = _present(values)
    if len(present) < 2:
        return None
    mean = sum(present) / len(present)
    return math.sqrt(sum((v - mean) ** 2 for v in present) / (len(present) - 1))


@dataclass
class Cell:
    """The runs of one (data set, category, detector label): one per seed."""

    dataset: str
    category: str
    label: str
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> list[dict[str, Any]]:
        return [r for r in self.runs if r["status"] == "ok"]

    def metric(self, name: str) -> float | None:
        return _mean([value_of(r, name) for r in self.ok])

    def spread(self, name: str) -> float | None:
        return _std([value_of(r, name) for r in self.ok])

    def timing(self) -> dict[str, float | None]:
        return {t: _mean([r["timing"][t] for r in self.ok]) for t in TIMING_TITLES}

    def peak_rss_mb(self) -> float | None:
        return max((r["peak_rss_mb"] for r in self.ok if r["peak_rss_mb"] is not None), default=None)


def cells(runs: list[dict[str, Any]], labels: dict[tuple[str, str], str] | None = None) -> list[Cell]:
    """The runs grouped per (data set, category, detector label), in first-seen order."""
    labels = labels if labels is not None else detector_labels(runs)
    groups: dict[tuple[str, str, str], Cell] = {}
    for run in runs:
        key = (run["dataset"], run["category"], label_of(run, labels))
        groups.setdefault(key, Cell(*key)).runs.append(run)
    return list(groups.values())


def mean_rows(runs: list[dict[str, Any]], labels: dict[tuple[str, str], str] | None = None) -> list[dict[str, Any]]:
    """One row per (data set, detector): means of metrics and timings over ok runs.

    ``spread``: with several seeds, the sample standard deviation over the seeds of each
    seed's mean (how much the detector's average moves with the seed); else None.
    """
    labels = labels if labels is not None else detector_labels(runs)
    several = len(seeds_of(runs)) > 1
    keys = [c.key for c in table_columns(runs)]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["dataset"], label_of(run, labels)), []).append(run)
    rows = []
    for (dataset, label), members in groups.items():
        group = Cell(dataset, "", label, members)  # every category of the detector: the same aggregation
        ok = group.ok
        per_seed: dict[Any, list[dict[str, Any]]] = {}
        for run in ok:
            per_seed.setdefault(run.get("seed"), []).append(run)
        rows.append(
            {
                "dataset": dataset,
                "label": label,
                "n_ok": len(ok),
                "n_runs": len(members),
                "n_seeds": len(per_seed),
                "metrics": {m: group.metric(m) for m in keys},
                "spread": {
                    m: _std([_mean([value_of(r, m) for r in rs]) for rs in per_seed.values()]) if several else None
                    for m in keys
                },
                "timing": group.timing(),
                "peak_rss_mb": group.peak_rss_mb(),
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


def fmt_spread(mean: float | None, spread: float | None) -> str:
    """``0.953 ± 0.012``; the mean alone where there is no spread (one seed finished)."""
    if spread is None or mean is None:
        return fmt(mean)
    return f"{fmt(mean)} ± {fmt(spread)}"


def _timing_cells(timing: dict[str, Any], peak: Any) -> list[str]:
    return [fmt_seconds(timing["fit_s"]), fmt_seconds(timing["predict_s"]), fmt(timing["images_per_s"], 1),
            fmt(peak, 0)]


def by_dataset(runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        out.setdefault(run["dataset"], []).append(run)
    return out


def seeds_note(runs: list[dict[str, Any]]) -> str | None:
    """A sentence on how seeds are aggregated; None with one seed."""
    seeds = seeds_of(runs)
    if len(seeds) < 2:
        return None
    return (f"{len(seeds)} seeds ({', '.join(str(s) for s in seeds)}): each row is the mean over the seeds that "
            "finished ok ± the sample standard deviation between them; `seeds`: seeds ok / seeds run; "
            "mean rows: ± the standard deviation of the per-seed means")


def table_rows(
    runs: list[dict[str, Any]], labels: dict[tuple[str, str], str] | None = None
) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """Header and rows of the main table of one data set: (kind, cells), kind 'run'|'error'|'mean'.

    One row per (category, detector); with several seeds, a ``seeds`` column follows the
    detector and metric cells read ``mean ± std`` over the seeds.
    """
    labels = labels if labels is not None else detector_labels(runs)
    several = len(seeds_of(runs)) > 1
    seed_column = ["seeds"] if several else []
    columns = table_columns(runs)
    keys = [c.key for c in columns]
    header = ["category", "detector", *seed_column, *(c.title for c in columns), *TIMING_TITLES.values(),
              "peak MiB"]
    rows: list[tuple[str, list[str]]] = []
    for cell in sorted(cells(runs, labels), key=lambda c: c.category):
        ok = cell.ok
        seed_cells = [f"{len(ok)}/{len(cell.runs)}"] if several else []
        if ok:
            metric_cells = [fmt_spread(cell.metric(m), cell.spread(m)) for m in keys]
            rows.append(("run", [cell.category, cell.label, *seed_cells, *metric_cells,
                                 *_timing_cells(cell.timing(), cell.peak_rss_mb())]))
        else:
            names = [cell.category, cell.label, *seed_cells]
            rows.append(("error", names + ["error"] + [""] * (len(header) - len(names) - 1)))
    for mean in mean_rows(runs, labels):
        name = f"mean ({mean['n_ok']}/{mean['n_runs']})" if mean["n_ok"] != mean["n_runs"] else "mean"
        seed_cells = [str(mean["n_seeds"])] if several else []
        rows.append(("mean", [name, mean["label"], *seed_cells,
                              *[fmt_spread(mean["metrics"][m], mean["spread"][m]) for m in keys],
                              *_timing_cells(mean["timing"], mean["peak_rss_mb"])]))
    return header, rows


def comparison_rows(
    runs: list[dict[str, Any]], metric: str, labels: dict[tuple[str, str], str] | None = None
) -> tuple[list[str], list[list[str]]] | None:
    """Categories x detectors for one metric (with a mean row); None with one detector.

    With several seeds each cell is the mean over the seeds (the spread is in the main table).
    """
    labels = labels if labels is not None else detector_labels(runs)
    detectors = list(dict.fromkeys(label_of(r, labels) for r in runs))
    if len(detectors) < 2:
        return None
    values: dict[str, dict[str, Any]] = {}
    for cell in cells(runs, labels):
        values.setdefault(cell.category, {})[cell.label] = cell.metric(metric) if cell.ok else "error"
    rows = [[cat] + [fmt(values[cat].get(d)) for d in detectors] for cat in sorted(values)]
    means = {m["label"]: m["metrics"][metric] for m in mean_rows(runs, labels)}
    rows.append(["mean"] + [fmt(means.get(d)) for d in detectors])
    return ["category", *detectors], rows


def errors(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in runs if r["status"] == "error"]


def where(run: dict[str, Any], with_seed: bool = False) -> str:
    """``detector on data set/category``, plus the seed when the runs have several."""
    text = f"{run['detector']} on {run['dataset']}/{run['category']}"
    return f"{text} (seed {run.get('seed')})" if with_seed else text


# -- renderers -----------------------------------------------------------------------------------
def results_csv(runs: list[dict[str, Any]]) -> str:
    """One row per run: names, status, every metric key, timings, memory, seed, params, error."""
    labels = detector_labels(runs)
    deployed = [f"{DEPLOYED}{k}" for k in Deployed.model_fields]
    columns = ["detector", "label", "dataset", "category", "status", *metric_keys_of(runs), *deployed,
               "fit_s", "predict_s", "images_per_s", "peak_rss_mb", "n_train", "n_val", "n_test", "seed", "params",
               "pipeline", "error"]
    flat = []
    for run in runs:
        row = {k: run[k] for k in ("detector", "dataset", "category", "status", "peak_rss_mb", "n_train", "n_test")}
        row["seed"], row["n_val"] = run.get("seed"), run.get("n_val")
        row.update(run["metrics"])
        row.update({key: value_of(run, key) for key in deployed})
        row["pipeline"] = json.dumps(run["pipeline"], sort_keys=True) if run.get("pipeline") else None
        row.update(run["timing"])
        row["label"] = label_of(run, labels)
        row["params"] = json.dumps(run["params"], sort_keys=True)
        row["error"] = run["error"]
        flat.append(row)
    return rows_to_csv(flat, columns)


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return [line(header), "|" + "|".join("---" for _ in header) + "|", *(line(r) for r in rows)]


def summary_markdown(runs: list[dict[str, Any]], title: str = "Benchmark results") -> str:
    """``summary.md``: per data set, the per-category table with mean rows, comparisons, errors."""
    n_err = len(errors(runs))
    lines = [f"# {title}", "", f"{len(runs)} runs: {len(runs) - n_err} ok, {n_err} error."]
    lines += ["", "Metrics (`–`: not applicable, e.g. pixel metrics without anomaly maps or masks):", ""]
    lines += [f"- {title}: {summary}" if summary else f"- {title}" for title, summary in metrics_legend(runs)]
    lines += ["", "Times in seconds, peak resident memory in MiB."]
    note = seeds_note(runs)
    if note:
        lines.append(f"Seeds: {note}.")
    for dataset, ds_runs in by_dataset(runs).items():
        labels = detector_labels(ds_runs)
        header, rows = table_rows(ds_runs, labels)
        lines += ["", f"## {dataset}", ""]
        lines += _md_table(header, [[f"**{cells[0]}**", *cells[1:]] if kind == "mean" else cells for kind, cells in rows])
        for metric in headline_keys(ds_runs):
            compared = comparison_rows(ds_runs, metric, labels)
            if compared:
                lines += ["", f"### {side_by_side_title(metric, runs)}", ""]
                lines += _md_table(*compared)
        few = few_shot_rows(ds_runs)
        if few:
            lines += ["", f"### Few-shot: {dataset}", "", few_shot_note(ds_runs), ""]
            lines += _md_table(few[0], [[f"**{cells[0]}**", *cells[1:]] if kind == "mean" else cells
                                        for kind, cells in few[1]])
    failed = errors(runs)
    if failed:
        several = len(seeds_of(runs)) > 1
        lines += ["", "## Errors", ""]
        for run in failed:
            seed = f" (seed {run.get('seed')})" if several else ""
            lines.append(f"- `{run['detector']}` on {run['dataset']}/{run['category']}{seed}: {run['error']}")
    return "\n".join(lines) + "\n"


def side_by_side_title(metric: str, runs: list[dict[str, Any]]) -> str:
    n_seeds = len(seeds_of(runs))
    (column,) = describe_keys([metric])
    return f"{column.title} side by side" + (f" (mean over {n_seeds} seeds)" if n_seeds > 1 else "")


# -- the terminal ---------------------------------------------------------------------------------
# A table is printed only if it fits the console at its natural width; a narrower console
# (80 columns, a CI log) gets the next layout, and at last one block of lines per row, so
# no column is ever squeezed into word fragments.

_STYLE = {"mean": "bold", "error": "red"}


def _rich_table(
    title: str, header: list[str], rows: list[tuple[str, list[str]]], columns: list[int], n_names: int = 2
) -> Any:
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    for i in columns:
        name = header[i]
        if i < n_names:
            table.add_column(name, justify="left", min_width=len(name), overflow="fold")
        else:
            table.add_column(name.replace(" ", "\n", 1).replace("@", "\n@"), justify="right", no_wrap=True)
    previous = None
    for kind, cells in rows:
        if kind == "mean" and previous != "mean":
            table.add_section()
        table.add_row(*[cells[i] for i in columns], style=_STYLE.get(kind))
        previous = kind
    return table


def _fits(renderables: list[Any], width: int | None) -> bool:
    return width is None or all(natural_width(r) <= width for r in renderables)


def blocks(title: str, header: list[str], rows: list[tuple[str, list[str]]], width: int, n_names: int = 2) -> Any:
    """A table as one block per row, for narrow consoles: the row's names on a line, then
    its ``column value`` pairs, aligned and packed into as few lines as ``width`` allows."""
    from rich.console import Group
    from rich.text import Text

    items = [[(header[i], cells[i]) for i in range(n_names, len(header)) if cells[i] not in ("", kind)]
             for kind, cells in rows]  # an error row says so on its name line, not under a column
    name_w = max((len(h) for row in items for h, _ in row), default=0)
    value_w = max((len(v) for row in items for _, v in row), default=0)
    item_w = name_w + 1 + value_w
    per_line = max(1, (width - 2 + 3) // (item_w + 3))
    out = [Text(title, style="bold italic")]
    for (kind, cells), row in zip(rows, items):
        names = [c for c in cells[:n_names] if c] + (["error"] if kind == "error" else [])
        out.append(Text("  ".join(names), style="bold " + _STYLE.get(kind, "")))
        pairs = [f"{h.ljust(name_w)} {v.rjust(value_w)}" for h, v in row]
        for start in range(0, len(pairs), per_line):
            out.append(Text("  " + "   ".join(pairs[start : start + per_line]), style=_STYLE.get(kind, "")))
    out.append(Text(""))
    return Group(*out)


def rich_tables(runs: list[dict[str, Any]], width: int | None = None) -> list[Any]:
    """Renderables for the terminal: per data set the result table, the side-by-side
    comparison of the headline metrics, then the errors.

    Each takes the first layout that fits ``width`` columns (None: no limit). Results: one
    table; metrics and timings as two tables; one block per row. Side by side: one table;
    one table per metric; one block per category.
    """
    from rich.text import Text

    out: list[Any] = []
    n_seeds = len(seeds_of(runs))
    n_names = 3 if n_seeds > 1 else 2  # category, detector (, seeds)
    for dataset, ds_runs in by_dataset(runs).items():
        header, rows = table_rows(ds_runs)
        title = f"pyimgano benchmark: {dataset}" + (f" (mean ± std over {n_seeds} seeds)" if n_seeds > 1 else "")
        n_metrics = n_names + len(table_columns(ds_runs))
        whole = [_rich_table(title, header, rows, list(range(len(header))))]
        split = [_rich_table(title, header, rows, list(range(n_metrics))),
                 _rich_table(f"time and memory: {dataset}", header, rows,
                             [*range(n_names), *range(n_metrics, len(header))])]
        if _fits(whole, width):
            out += whole
        elif _fits(split, width):
            out += split
        else:
            out.append(blocks(title, header, rows, width))
        out += _side_by_side(ds_runs, dataset, width)
        few = few_shot_rows(ds_runs)
        if few:
            names = 4 if n_seeds > 1 else 3
            title = f"few-shot: {dataset} (K-shot beside 0-shot on the same images)"
            table = _rich_table(title, few[0], few[1], list(range(len(few[0]))), n_names=names)
            out.append(table if _fits([table], width) else blocks(title, few[0], few[1], width, n_names=names))
    for run in errors(runs):
        out.append(Text(f"error: {where(run, n_seeds > 1)}: {run['error']}", style="red"))
    return out


def _side_by_side(runs: list[dict[str, Any]], dataset: str, width: int | None) -> list[Any]:
    """Per category, the headline metrics (image AUROC, pixel AUROC, AUPRO...) of each
    detector: one table, else one table per metric, else blocks; nothing with one detector."""
    from rich import box
    from rich.table import Table

    labels = detector_labels(runs)
    compared = {metric: comparison_rows(runs, metric, labels) for metric in headline_keys(runs)}
    compared = {metric: c for metric, c in compared.items() if c is not None}
    if not compared:
        return []
    titles = {c.key: c.title for c in describe_keys(list(compared))}
    first = next(iter(compared.values()))
    detectors = first[0][1:]
    n_seeds = len(seeds_of(runs))
    seeds = f", mean over {n_seeds} seeds" if n_seeds > 1 else ""
    table = Table(title=f"side by side ({dataset}{seeds})", box=box.SIMPLE_HEAD, header_style="bold")
    table.add_column("category")
    for metric in compared:
        for detector in detectors:
            table.add_column(f"{titles[metric]}\n{detector}", justify="right")
    for i, row in enumerate(first[1]):
        cells = [row[0]]
        for metric in compared:
            cells += compared[metric][1][i][1:]
        if row[0] == "mean":
            table.add_section()
        table.add_row(*cells, style="bold" if row[0] == "mean" else None)
    if _fits([table], width):
        return [table]
    out = []
    for metric, (header, rows) in compared.items():
        kinds = [("mean" if r[0] == "mean" else "run", r) for r in rows]
        one = _rich_table(f"{titles[metric]} side by side ({dataset}{seeds})", header, kinds,
                          list(range(len(header))), n_names=1)
        out.append(one if _fits([one], width) else
                   blocks(f"{titles[metric]} side by side ({dataset}{seeds})", header, kinds, width, n_names=1))
    return out


# -- few-shot ----------------------------------------------------------------------------------------
FEW_SHOT_FIGURES = tuple((key, title) for key, title, _, _ in deployed_columns())


def few_shot_runs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The few-shot runs (K > 0) among ``runs``."""
    return [r for r in runs if shots_of(r)]


def _zero_shot_value(run: dict[str, Any], key: str) -> float | None:
    zero = (run.get("few_shot") or {}).get("zero_shot") or {}
    if key.startswith(DEPLOYED):
        return (zero.get("deployed") or {}).get(key[len(DEPLOYED):])
    return (zero.get("metrics") or {}).get(key)


def _tuned_summary(runs: list[dict[str, Any]]) -> str:
    """The post-processing the tuning chose most often over the seeds (how often), or why
    only the image threshold was tuned."""
    from collections import Counter

    from pyimgano.pipeline.fewshot import describe_tuned

    if all((r["few_shot"] or {}).get("image_only") for r in runs):
        return "image threshold only"
    chosen = Counter(describe_tuned(r["few_shot"]["tuned"]) for r in runs if not r["few_shot"].get("image_only"))
    text, count = chosen.most_common(1)[0]
    return text + (f" ({count}/{len(runs)})" if len(runs) > 1 else "")


def few_shot_rows(runs: list[dict[str, Any]]) -> tuple[list[str], list[tuple[str, list[str]]]] | None:
    """The few-shot table of one data set: per (category, detector, K), the zero-shot pipeline
    and the few-shot pipeline on the same evaluation images side by side (deployed figures,
    then the headline threshold-free metrics), mean ± std over seeds, the tuned
    post-processing and the tuning time; mean rows per (detector, K). None without few-shot runs."""
    few = [r for r in few_shot_runs(runs) if r.get("few_shot")]
    if not few:
        return None
    base = detector_labels([{**r, "few_shot": None} for r in runs])
    stripped = {id(r): {**r, "few_shot": None} for r in few}
    several = len(seeds_of(few)) > 1
    keys = [f"{DEPLOYED}{k}" for k, _ in FEW_SHOT_FIGURES] + headline_keys(few)
    titles = [t for _, t in FEW_SHOT_FIGURES] + [c.title for c in describe_keys(headline_keys(few))]
    header = ["category", "detector", "K", *(["seeds"] if several else [])]
    for title in titles:
        header += [f"{title} 0-shot", f"{title} K-shot"]
    header += ["tuned post-processing", "tune s"]
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for run in few:
        label = label_of(stripped[id(run)], base)
        if run["few_shot"].get("trained"):
            label += " (trained)"
        groups.setdefault((run["category"], label, shots_of(run)), []).append(run)

    def cells_of(members: list[dict[str, Any]], per_seed: bool = False) -> list[str]:
        """mean ± std over the ok runs (a mean row: ± std of the per-seed means, as the main table)."""
        ok = [r for r in members if r["status"] == "ok"]
        by_seed: dict[Any, list[dict[str, Any]]] = {}
        for run in ok:
            by_seed.setdefault(run.get("seed"), []).append(run)
        out = []
        for key in keys:
            for value_fn in (_zero_shot_value, value_of):
                values = [value_fn(r, key) for r in ok]
                spread = (_std([_mean([value_fn(r, key) for r in rs]) for rs in by_seed.values()]) if per_seed
                          else _std(values))
                out.append(fmt_spread(_mean(values), spread if several else None))
        tune = _mean([(r["few_shot"].get("tuned") or {}).get("tuning_s") for r in ok])
        return out + [_tuned_summary(ok) if ok else "error", fmt_seconds(tune)]

    rows: list[tuple[str, list[str]]] = []
    for (category, label, k), members in sorted(groups.items(), key=lambda g: (g[0][0], g[0][1], g[0][2])):
        ok = [r for r in members if r["status"] == "ok"]
        seeds = [f"{len(ok)}/{len(members)}"] if several else []
        rows.append(("run" if ok else "error", [category, label, str(k), *seeds, *cells_of(members)]))
    by_detector: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for (_, label, k), members in groups.items():
        by_detector.setdefault((label, k), []).extend(members)
    for (label, k), members in sorted(by_detector.items()):
        ok = [r for r in members if r["status"] == "ok"]
        seeds = [str(len(seeds_of(ok)))] if several else []
        rows.append(("mean", ["mean", label, str(k), *seeds, *cells_of(members, per_seed=True)]))
    return header, rows


def few_shot_note(runs: list[dict[str, Any]]) -> str:
    """What the few-shot table shows, for summary.md and report.html."""
    return ("Few-shot runs: K defective test images per run (drawn with the run's seed, spread over defect types) "
            "tuned the post-processing and both thresholds (with the normal validation images) and were removed "
            "from the evaluation; each K-shot figure sits beside the zero-shot pipeline's on exactly the same "
            "images (0-shot), so the two columns compare like with like. Threshold-free metrics change only where "
            "the tuned post-processing changed the maps (or the detector was trained with the shots: "
            "\"(trained)\"). docs/few-shot.md has the protocol.")
