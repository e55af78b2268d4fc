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
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from multiprocessing import connection as mp_connection
from typing import Any, Protocol

from pyimgano.benchmark.config import ConfigError, JobSpec
from pyimgano.benchmark.job import ProgressFn, empty_run, run_job

EXECUTORS: dict[str, str] = {
    "local": "pyimgano.benchmark.executors:LocalExecutor",
    "ray": "pyimgano.benchmark.ray_executor:RayExecutor",
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

    Pool workers are started with ``spawn`` (no inherited torch/OpenMP state), take one
    job at a time, and each is pinned to its own share of the CPUs (with its math
    libraries limited to that many threads) so that N jobs do not fight over the cores. A worker that dies (segfault, out of
    memory) fails only the job it was running, and a fresh worker takes its place.
    """

    def __init__(self, workers: int = 1, threads_per_worker: int | None = None) -> None:
        if workers < 1:
            raise ConfigError(f"--jobs must be at least 1, got {workers}")
        self.workers = workers
        self.threads_per_worker = threads_per_worker or max(1, _usable_cpus() // workers)

    def map_unordered(
        self, jobs: Sequence[JobSpec], progress: ProgressFn | None = None
    ) -> Iterator[tuple[JobSpec, dict[str, Any]]]:
        if self.workers == 1 or len(jobs) <= 1:
            for spec in jobs:
                yield spec, run_job(spec, progress)
            return
        yield from self._pool(list(jobs), progress)

    def _pool(self, jobs: list[JobSpec], progress: ProgressFn | None) -> Iterator[tuple[JobSpec, dict[str, Any]]]:
        """A small process pool that knows which job each worker runs, so a dead worker
        fails exactly its own job and is replaced."""
        ctx = multiprocessing.get_context("spawn")
        events = ctx.Queue()
        drain = _Drain(events, progress)
        drain.start()
        pending = list(jobs)
        workers: list[_Worker] = []
        try:
            slots = _cpu_slots(min(self.workers, len(jobs)))
            workers = [_Worker(ctx, events, self.threads_per_worker, cpus) for cpus in slots]
            while pending or any(w.job is not None for w in workers):
                for worker in workers:
                    if worker.job is None and pending:
                        worker.start_job(pending.pop(0))
                busy = [w for w in workers if w.job is not None]
                ready = mp_connection.wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
                for worker in busy:
                    if worker.conn not in ready and worker.process.sentinel not in ready:
                        continue
                    spec, outcome = worker.collect()
                    if outcome is None:  # the process died: fail its job, start a fresh worker
                        outcome = crashed_outcome(
                            spec, "worker process died (crash or out of memory) while running this job"
                        )
                        replacement = _Worker(ctx, events, self.threads_per_worker, worker.cpus)
                        workers[workers.index(worker)] = replacement
                    yield spec, outcome
        finally:
            for worker in workers:
                worker.stop()
            drain.stop()


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cpu_slots(n_workers: int) -> list[list[int] | None]:
    """Disjoint CPU sets, one per worker (None where the platform cannot pin or CPUs are too few)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return [None] * n_workers
    if len(cpus) < n_workers:
        return [None] * n_workers
    size = len(cpus) // n_workers
    return [cpus[i * size : (i + 1) * size] for i in range(n_workers)]


# -- worker side ---------------------------------------------------------------------------
_events: Any = None


class _Worker:
    """One worker process of the pool and the job it is running."""

    def __init__(self, ctx: Any, events: Any, threads: int, cpus: list[int] | None = None) -> None:
        self.cpus = cpus
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_loop, args=(child, events, threads, cpus), daemon=True)
        self.process.start()
        child.close()
        self.job: JobSpec | None = None

    def start_job(self, spec: JobSpec) -> None:
        self.job = spec
        self.conn.send(spec.model_dump(mode="json"))

    def collect(self) -> tuple[JobSpec, dict[str, Any] | None]:
        """The finished job and its outcome (None when the process died)."""
        spec, self.job = self.job, None
        assert spec is not None
        try:
            if self.conn.poll():
                return spec, self.conn.recv()
        except (EOFError, OSError):
            pass
        return spec, None

    def stop(self) -> None:
        try:
            if self.process.is_alive() and self.job is None:
                self.conn.send(None)
                self.process.join(timeout=5)
        except (OSError, ValueError):
            pass
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)
        self.conn.close()


def _worker_loop(conn: Any, events: Any, threads: int, cpus: list[int] | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    _init_worker(events, threads)
    if cpus and hasattr(os, "sched_setaffinity"):
        try:  # libraries that size their thread pools from the affinity mask then agree with us
            os.sched_setaffinity(0, cpus)
        except OSError:
            pass
    while True:
        try:
            spec = conn.recv()
        except EOFError:
            return
        if spec is None:
            return
        conn.send(_run_in_worker(spec))


def _init_worker(events: Any, threads: int) -> None:
    global _events
    _events = events
    events.cancel_join_thread()  # progress events are disposable: never block exit on them
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
