"""The benchmark driver: expand the grid, skip what is done, run the rest, write as it goes."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyimgano.atomic import atomic_write
from pyimgano.benchmark import tables
from pyimgano.benchmark.config import BenchmarkConfig, ConfigError, JobSpec, expand_jobs
from pyimgano.benchmark.executors import Executor, LocalExecutor
from pyimgano.benchmark.job import metric_keys
from pyimgano.benchmark.results import ResultStore
from pyimgano.errors import OutputError, os_reason


@dataclass
class BenchmarkOutcome:
    """What a benchmark produced: the job records (grid order) and the files written."""

    out: Path
    records: list[dict[str, Any]]
    skipped: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def runs(self) -> list[dict[str, Any]]:
        return [r["run"] for r in self.records]

    @property
    def n_errors(self) -> int:
        return sum(r["run"]["status"] == "error" for r in self.records)


def write_outputs(store: ResultStore, records: list[dict[str, Any]], command: str | None = None) -> dict[str, Path]:
    """results.json, results.csv, summary.md and report.html of the records so far."""
    from pyimgano.benchmark.report import render_report

    runs = [r["run"] for r in records]
    files = {"results": store.write_results(records)}
    files["csv"] = store.out / "results.csv"
    atomic_write(files["csv"], tables.results_csv(runs))
    files["summary"] = store.out / "summary.md"
    atomic_write(files["summary"], tables.summary_markdown(runs))
    files["report"] = store.out / "report.html"
    atomic_write(files["report"], render_report(records, store.out, command=command))
    return files


def run_benchmark(
    config: BenchmarkConfig,
    *,
    executor: Executor | None = None,
    console: Any = None,
    command: str | None = None,
    show_progress: bool = True,
) -> BenchmarkOutcome:
    """Run the grid of ``config`` into ``config.out``; finished ok runs there are skipped.

    Each job's outcome is written the moment it arrives (its scores, overlays and record,
    ``jobs/<job id>.json``), so stopping the benchmark at any point keeps every finished
    run. results.json, CSV, summary.md and report.html are rebuilt from the records: after
    the first result, then at most every ``config.flush_interval`` seconds (0: after every
    result), and always at the end, also when the run stops on an error or Ctrl-C. A rerun
    skips what the records say is done, even if a hard kill left those files stale.
    ``config.force`` reruns everything.
    """
    if not config.out:
        raise ConfigError("no output folder; give --out DIR")
    jobs = expand_jobs(config)
    several_seeds = len(config.seed_list) > 1
    store = ResultStore(config.out)
    with _writing(store.out, "nothing was run"):
        store.out.mkdir(parents=True, exist_ok=True)
        atomic_write(store.out / "config.json", config.model_dump_json(indent=2) + "\n")
    executor = executor or LocalExecutor(workers=config.jobs, job_timeout=config.job_timeout)
    console = console or _console()

    done: dict[str, dict[str, Any]] = {}
    todo: list[JobSpec] = []
    for job in jobs:
        record = None if config.force else store.finished(job, metric_keys(job))
        if record is not None:
            done[job.key] = record
        else:
            todo.append(job)
    outcome = BenchmarkOutcome(
        out=store.out, records=[], skipped=[job.describe(several_seeds) for job in jobs if job.key in done]
    )
    seeds_note = f" ({len(config.seed_list)} seeds)" if several_seeds else ""
    console.print(
        f"[bold]pyimgano benchmark[/]: {len(jobs)} run(s){seeds_note} into {store.out}"
        + (f"; {len(done)} already finished there (skipped; --force reruns them)" if done else ""),
        soft_wrap=True,  # never break a path: the terminal wraps the line if it must
    )

    grid_keys = [job.key for job in jobs]  # a key is a hash of the spec: computed once, not per rewrite

    def ordered() -> list[dict[str, Any]]:
        return [done[key] for key in grid_keys if key in done]

    flusher = _Flusher(lambda: write_outputs(store, ordered(), command), config.flush_interval, console)
    seed_of = {job.job_id: job.seed for job in todo} if several_seeds else {}
    kept = "the runs recorded before it are on disk; free space and rerun the same command (they are skipped)"
    try:
        with _ProgressDisplay(console, len(todo), enabled=show_progress and bool(todo), seeds=seed_of) as display:
            for spec, result in executor.map_unordered(todo, display.update):
                with _writing(store.out, kept, f"the outcome of {spec.describe(several_seeds)} could not be saved"):
                    record = store.save_outcome(spec, result)
                done[spec.key] = record
                display.finished(spec, record, several_seeds)
                flusher.result_arrived()
    except BaseException:
        flusher.close(quiet=True)
        raise
    summary_kept = (f"every run is recorded in {store.out / 'jobs'} and the files written before are intact; "
                    "free space and rerun the same command to write them (finished runs are skipped)")
    with _writing(store.out, summary_kept, "the benchmark finished, but its results and report could not be written"):
        outcome.files = flusher.close()
        outcome.records = ordered()
        if not outcome.files:  # nothing ran (everything was done): the files still follow this grid
            outcome.files = write_outputs(store, outcome.records, command)
    return outcome


@contextlib.contextmanager
def _writing(out: Path, kept: str, what: str = "could not write the benchmark's files") -> Iterator[None]:
    """An :class:`OSError` inside (a full disk) becomes one :class:`OutputError` line: what, why, what is kept."""
    try:
        yield
    except OutputError:
        raise
    except OSError as exc:
        raise OutputError(f"{out}: {what} ({os_reason(exc)}); {kept}") from None


class _Flusher:
    """Rewrites the whole-benchmark files after a result, at most every ``interval`` seconds.

    The first result is written at once; later ones wait until ``interval`` seconds passed
    since the last rewrite began. :meth:`close` writes whatever is still pending, also when
    an exception (Ctrl-C included) ends the run: the job records hold every result anyway.
    """

    def __init__(self, write: Any, interval: float, console: Any = None, clock: Any = time.monotonic) -> None:
        self.write = write
        self.interval = interval
        self.console = console
        self.clock = clock
        self.next_at = float("-inf")
        self.pending = False
        self.files: dict[str, Path] = {}
        self.flushes = 0

    def result_arrived(self) -> None:
        """A result is recorded: rewrite the files if it is time. A failure to rewrite them
        (a full disk) is a warning: the records hold the results, the files are retried."""
        self.pending = True
        if self.clock() >= self.next_at:
            try:
                self.flush()
            except OSError as exc:
                self.next_at = self.clock() + self.interval
                if self.console is not None:
                    self.console.print(f"[yellow]warning: results and report not updated ({os_reason(exc)}); "
                                       "the run records are saved, the files are written again later[/]",
                                       soft_wrap=True)

    def flush(self) -> None:
        started = self.clock()
        self.files = self.write()
        self.flushes += 1
        self.pending = False
        self.next_at = started + self.interval

    def close(self, quiet: bool = False) -> dict[str, Path]:
        """Write what is pending; ``quiet``: a failure to write gives way to the exception in flight."""
        if self.pending:
            try:
                self.flush()
            except Exception:
                if not quiet:
                    raise
        return self.files


def print_summary(outcome: BenchmarkOutcome, console: Any = None) -> None:
    """The result tables and where the report is."""
    console = console or _console()
    for renderable in tables.rich_tables(outcome.runs, width=console.width):
        console.print(renderable)
    console.print(f"results: {outcome.files['results']}", soft_wrap=True)
    console.print(f"report:  [bold]{outcome.files['report'].resolve()}[/]", soft_wrap=True)


def _console() -> Any:
    """Rich console; wide when output goes to a file or pipe, so logs keep whole tables."""
    from rich.console import Console

    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(width=200)
    return console


def one_line(run: dict[str, Any], with_seed: bool = False) -> str:
    """A log line for a finished run."""
    where = tables.where(run, with_seed)
    if run["status"] == "error":
        return f"[red]✗ {where}: {run['error']}[/]"
    m, t = run["metrics"], run["timing"]
    parts = [f"{c.title} {tables.fmt(m[c.key])}" for c in tables.metric_columns([run])
             if c.headline and (c.level == "image" or m[c.key] is not None)]
    parts += [f"{c.title} {tables.fmt(tables.value_of(run, c.key))}" for c in tables.DEPLOYED_COLUMNS
              if tables.value_of(run, c.key) is not None]
    parts += [f"fit {tables.fmt_seconds(t['fit_s'])} s", f"{tables.fmt(t['images_per_s'], 1)} img/s"]
    return f"[green]✓[/] {where}: " + ", ".join(parts)


class _ProgressDisplay:
    """Rich progress bars: the whole benchmark, plus one bar per running job (load, fit, score)."""

    STAGES = {"load": "loading train images", "fit": "fitting", "score": "scoring test images",
              "metrics": "metrics and overlays"}

    def __init__(self, console: Any, total: int, enabled: bool = True, seeds: dict[str, int] | None = None) -> None:
        self.console = console
        self.total = total
        self.enabled = enabled
        self.seeds = seeds or {}  # job id -> seed, shown when the grid has several seeds
        self.progress: Any = None
        self.tasks: dict[str, Any] = {}
        self.done: set[str] = set()
        self.lock = threading.Lock()  # progress events come from a drain thread with --jobs

    def __enter__(self) -> _ProgressDisplay:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self.progress.start()
            self.overall = self.progress.add_task("[bold]benchmark", total=self.total)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()
        if exc and exc[0] is KeyboardInterrupt:
            self.console.print("[yellow]interrupted: finished runs are saved; rerun the same command to go on[/]")

    def update(self, job_id: str, stage: str, completed: int, total: int) -> None:
        with self.lock:
            self._update(job_id, stage, completed, total)

    def _update(self, job_id: str, stage: str, completed: int, total: int) -> None:
        if self.progress is None or job_id in self.done:
            return  # events of a finished job can arrive late from a worker
        name = job_id.rsplit("__", 1)[0].replace("__", " ")
        if job_id in self.seeds:
            name += f" seed {self.seeds[job_id]}"
        description = f"  {name}: {self.STAGES.get(stage, stage)}"
        indeterminate = stage in ("fit", "metrics") and completed < total
        if job_id not in self.tasks:
            self.tasks[job_id] = self.progress.add_task(description, total=None if indeterminate else total)
        self.progress.update(
            self.tasks[job_id], description=description, completed=completed, total=None if indeterminate else total
        )

    def finished(self, spec: JobSpec, record: dict[str, Any], with_seed: bool = False) -> None:
        line = one_line(record["run"], with_seed)
        notes = [n for n in record.get("extra", {}).get("notes", []) if not n.startswith("pixel metrics")]
        with self.lock:
            self.done.add(spec.job_id)
            if self.progress is not None:
                task = self.tasks.pop(spec.job_id, None)
                if task is not None:
                    self.progress.remove_task(task)
                self.progress.advance(self.overall)
        self.console.print(line)
        for note in notes:
            self.console.print(f"  [dim]note: {note}[/]")
