"""Where benchmark jobs run.

An executor takes job specs and yields ``(spec, outcome)`` pairs as jobs finish, in any
order; the driver writes each outcome to disk as it arrives. The job itself is
:func:`pyimgano.benchmark.job.run_job`, a plain function of a serialisable spec, so a new
executor (a cluster, a queue) only has to ship specs out and outcomes back.

``EXECUTORS`` maps the ``--executor`` names to ``"module:attr"`` factories, imported
only when chosen; every factory accepts ``workers=N`` and keyword options.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol

from pyimgano.benchmark.config import ConfigError, JobSpec
from pyimgano.benchmark.job import ProgressFn, empty_run, run_job

EXECUTORS: dict[str, str] = {
    "local": "pyimgano.benchmark.executors:LocalExecutor",
}

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class Executor(Protocol):
    """What the driver needs from an executor."""

    def map_unordered(
        self, jobs: Sequence[JobSpec], progress: ProgressFn | None = None
    ) -> Iterator[tuple[JobSpec, dict[str, Any]]]:
        """Run every job; yield ``(spec, run_job outcome)`` as each one finishes."""
        ...


def create_executor(name: str, **options: Any) -> Executor:
    """Build an executor by name (``local``; others come from :data:`EXECUTORS`)."""
    from importlib import import_module

    target = EXECUTORS.get(name)
    if target is None:
        raise ConfigError(f"unknown executor {name!r}; available: {', '.join(sorted(EXECUTORS))}")
    module_name, _, attr = target.partition(":")
    return getattr(import_module(module_name), attr)(**options)


def crashed_outcome(spec: JobSpec, message: str) -> dict[str, Any]:
    """The outcome of a job whose worker died (no result came back)."""
    run = empty_run(spec)
    run.update(status="error", error=message)
    return {"run": run, "scores": [], "overlays": [], "extra": {"job_id": spec.job_id}}


class LocalExecutor:
    """Serial in this process (``workers=1``) or a pool of ``workers`` processes.

    Pool workers are started with ``spawn`` (no inherited torch/OpenMP state) and each
    limits its math libraries to ``cpu_count // workers`` threads so that N jobs do not
    fight over the cores. A worker that dies (segfault, out of memory) fails only the jobs
    it was running; a new pool takes the remaining ones.
    """

    def __init__(self, workers: int = 1, threads_per_worker: int | None = None) -> None:
        if workers < 1:
            raise ConfigError(f"--jobs must be at least 1, got {workers}")
        self.workers = workers
        self.threads_per_worker = threads_per_worker or max(1, (os.cpu_count() or 1) // workers)

    def map_unordered(
        self, jobs: Sequence[JobSpec], progress: ProgressFn | None = None
    ) -> Iterator[tuple[JobSpec, dict[str, Any]]]:
        if self.workers == 1 or len(jobs) <= 1:
            for spec in jobs:
                yield spec, run_job(spec, progress)
            return
        yield from self._pool(list(jobs), progress)

    def _pool(self, jobs: list[JobSpec], progress: ProgressFn | None) -> Iterator[tuple[JobSpec, dict[str, Any]]]:
        ctx = multiprocessing.get_context("spawn")
        events = ctx.Queue()
        drain = _Drain(events, progress)
        drain.start()
        pending = list(jobs)
        try:
            while pending:
                with ProcessPoolExecutor(
                    max_workers=min(self.workers, len(pending)),
                    mp_context=ctx,
                    initializer=_init_worker,
                    initargs=(events, self.threads_per_worker),
                ) as pool:
                    futures: dict[Future, JobSpec] = {pool.submit(_run_in_worker, spec.model_dump()): spec for spec in pending}
                    pending = []
                    broken = False
                    while futures:
                        done, _ = wait(futures, return_when=FIRST_COMPLETED)
                        for future in done:
                            spec = futures.pop(future)
                            try:
                                yield spec, future.result()
                            except BrokenProcessPool:
                                broken = True
                                pending.append(spec)
                            except Exception as exc:  # noqa: BLE001 - e.g. an outcome that does not pickle
                                yield spec, crashed_outcome(spec, f"worker: {type(exc).__name__}: {exc}")
                    if broken:
                        # every job still queued in the dead pool failed with it; the ones that
                        # were running are the suspects: run each again alone to find out which
                        yield from self._isolate(pending, ctx, events)
                        pending = []
        finally:
            drain.stop()

    def _isolate(self, jobs: list[JobSpec], ctx: Any, events: Any) -> Iterator[tuple[JobSpec, dict[str, Any]]]:
        for spec in jobs:
            with ProcessPoolExecutor(
                max_workers=1, mp_context=ctx, initializer=_init_worker, initargs=(events, self.threads_per_worker)
            ) as pool:
                try:
                    yield spec, pool.submit(_run_in_worker, spec.model_dump()).result()
                except BrokenProcessPool:
                    yield spec, crashed_outcome(
                        spec, "worker process died (crash or out of memory) while running this job"
                    )


# -- worker side ---------------------------------------------------------------------------
_events: Any = None


def _init_worker(events: Any, threads: int) -> None:
    global _events
    _events = events
    for name in THREAD_ENV:
        os.environ.setdefault(name, str(threads))


def _send_progress(job_id: str, stage: str, completed: int, total: int) -> None:
    if _events is not None:
        _events.put((job_id, stage, completed, total))


def _run_in_worker(spec: dict[str, Any]) -> dict[str, Any]:
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    return run_job(JobSpec.model_validate(spec), _send_progress)


class _Drain(threading.Thread):
    """Forwards progress events from worker processes to the driver's callback."""

    def __init__(self, events: Any, progress: Callable[..., None] | None) -> None:
        super().__init__(daemon=True)
        self.events = events
        self.progress = progress
        self._stop_flag = threading.Event()

    def run(self) -> None:
        while not self._stop_flag.is_set():
            try:
                event = self.events.get(timeout=0.1)
            except (queue.Empty, EOFError, OSError):
                continue
            if self.progress is not None:
                try:
                    self.progress(*event)
                except Exception:  # noqa: BLE001 - a display problem must not stop the run
                    pass

    def stop(self) -> None:
        self._stop_flag.set()
        self.join(timeout=2)
