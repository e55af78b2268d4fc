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
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from multiprocessing import connection as mp_connection
from typing import Any, Protocol

from pyimgano.atomic import sigterm_exits
from pyimgano.benchmark.config import ConfigError, JobSpec
from pyimgano.benchmark.job import ProgressFn, empty_run, run_job

EXECUTORS: dict[str, str] = {
    "local": "pyimgano.benchmark.executors:LocalExecutor",
    "ray": "pyimgano.benchmark.ray_executor:RayExecutor",
}

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
PR_SET_PDEATHSIG = 1  # linux/prctl.h


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


def crashed_outcome(spec: JobSpec, message: str, **extra: Any) -> dict[str, Any]:
    """The outcome of a job whose worker died or was stopped (no result came back)."""
    run = empty_run(spec).failed(message).model_dump(mode="json")
    return {"run": run, "scores": [], "overlays": [], "extra": {"job_id": spec.job_id, **extra}}


class LocalExecutor:
    """Jobs in worker processes on this machine (``workers`` at a time), or in this process.

    By default every job runs in a worker process, also with one worker, so that a plugin
    that crashes the interpreter (a segfault, ``abort()``, running out of memory) fails
    only its own job: it is recorded as an error naming the signal, and a fresh worker
    takes the next job. ``job_timeout`` (seconds; None or 0: none) stops a job that runs
    longer, recorded as an error too. Workers stop when the driver dies, however it dies.
    ``isolate=False`` runs the jobs one by one in this process (for debuggers and
    profilers): no crash isolation and no timeout.

    Workers are started with ``spawn`` (no inherited torch/OpenMP state), take one job at a
    time and, when there are several, each is pinned to its own share of the CPUs (with its
    math libraries limited to that many threads) so that N jobs do not fight over the cores.
    """

    def __init__(
        self,
        workers: int = 1,
        threads_per_worker: int | None = None,
        *,
        isolate: bool = True,
        job_timeout: float | None = None,
    ) -> None:
        if workers < 1:
            raise ConfigError(f"--jobs must be at least 1, got {workers}")
        if job_timeout is not None and not job_timeout >= 0:
            raise ConfigError(f"--job-timeout must be 0 (none) or a number of seconds, got {job_timeout}")
        if not isolate and workers > 1:
            raise ConfigError(f"--in-process runs one job at a time; it cannot run --jobs {workers}")
        if not isolate and job_timeout:
            raise ConfigError(
                f"--in-process cannot stop a job after job_timeout ({job_timeout:g} s); "
                "give --job-timeout 0 to run without it"
            )
        self.workers = workers
        self.isolate = isolate
        self.job_timeout = job_timeout or None
        if threads_per_worker is None and workers > 1:
            threads_per_worker = max(1, _usable_cpus() // workers)
        self.threads_per_worker = threads_per_worker  # None: the libraries' own defaults

    def map_unordered(
        self, jobs: Sequence[JobSpec], progress: ProgressFn | None = None
    ) -> Iterator[tuple[JobSpec, dict[str, Any]]]:
        if not self.isolate:
            for spec in jobs:
                yield spec, run_job(spec, progress)
            return
        if jobs:
            yield from self._pool(list(jobs), progress)

    def _pool(self, jobs: list[JobSpec], progress: ProgressFn | None) -> Iterator[tuple[JobSpec, dict[str, Any]]]:
        """A small process pool that knows which job each worker runs, so a dead or stopped
        worker fails exactly its own job and is replaced. Each worker talks to the driver
        over its own pipe (progress, then the outcome): nothing is shared between workers
        that a killed one could leave locked."""
        ctx = multiprocessing.get_context("spawn")
        pending = list(jobs)
        workers: list[_Worker] = []
        with sigterm_exits(SIGTERM_MESSAGE):
            try:
                n_workers = min(self.workers, len(jobs))
                slots = _cpu_slots(n_workers) if n_workers > 1 else [None]
                workers = [_Worker(ctx, self.threads_per_worker, cpus) for cpus in slots]
                while pending or any(w.job is not None for w in workers):
                    for worker in workers:
                        if worker.job is None and pending:
                            worker.start_job(pending.pop(0))
                    busy = [w for w in workers if w.job is not None]
                    wait_s = None
                    if self.job_timeout is not None:
                        wait_s = max(0.0, min(w.started + self.job_timeout for w in busy) - time.monotonic())
                    ready = mp_connection.wait([w.conn for w in busy] + [w.process.sentinel for w in busy], wait_s)
                    now = time.monotonic()
                    for worker in busy:
                        spec = worker.job
                        if worker.conn in ready or worker.process.sentinel in ready:
                            message = worker.receive()
                            if message is not None and message[0] == "progress":
                                _report(progress, message[1])
                                continue
                            worker.job = None
                            if message is None:  # the process died: fail its job, start a fresh worker
                                error, extra = worker.death()
                                outcome = crashed_outcome(spec, error, **extra)
                            else:
                                outcome = message[1]
                        elif self.job_timeout is not None and now - worker.started >= self.job_timeout:
                            worker.kill()
                            outcome = crashed_outcome(
                                spec,
                                f"timed out after {self.job_timeout:g} s (job_timeout); its worker process was stopped",
                                timed_out_s=self.job_timeout,
                            )
                        else:
                            continue
                        if not worker.process.is_alive():
                            worker.stop()
                            workers[workers.index(worker)] = _Worker(ctx, self.threads_per_worker, worker.cpus)
                        yield spec, outcome
            finally:
                for worker in workers:
                    worker.stop()


def _report(progress: ProgressFn | None, event: tuple[str, str, int, int]) -> None:
    if progress is not None:
        try:
            progress(*event)
        except Exception:  # noqa: BLE001 - a display problem must not stop the run
            pass


SIGNAL_HINTS = {
    "SIGSEGV": "a crash in native code",
    "SIGBUS": "a crash in native code",
    "SIGILL": "a crash in native code",
    "SIGFPE": "a crash in native code",
    "SIGABRT": "aborted, e.g. by a failed check in native code",
    "SIGKILL": "killed from outside, often for running out of memory",
}


def describe_exit(exitcode: int | None) -> tuple[str, dict[str, Any]]:
    """How a worker process ended, for the job's error (and extras for its record)."""
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = SIGNAL_HINTS.get(name)
        text = f"killed by {name} ({-exitcode}{': ' + hint if hint else ''})"
        return text, {"signal": name}
    if exitcode is None:
        return "ended without a result", {}
    return f"exited with status {exitcode}", {"exit_code": exitcode}


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
class _Worker:
    """One worker process of the pool and the job it is running."""

    def __init__(self, ctx: Any, threads: int | None, cpus: list[int] | None = None) -> None:
        self.cpus = cpus
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_loop, args=(child, threads, cpus), daemon=True)
        self.process.start()
        child.close()
        self.job: JobSpec | None = None
        self.started = 0.0

    def start_job(self, spec: JobSpec) -> None:
        self.job = spec
        self.started = time.monotonic()
        try:
            self.conn.send(spec.model_dump(mode="json"))
        except OSError:
            pass  # the worker is gone: its sentinel fires and the job is recorded as crashed

    def receive(self) -> tuple[str, Any] | None:
        """The worker's next message, ``("progress", event)`` or ``("done", outcome)``; None when it died."""
        try:
            if self.conn.poll():
                return self.conn.recv()
        except (EOFError, OSError):
            pass
        return None

    def death(self) -> tuple[str, dict[str, Any]]:
        """The error message of the job this dead worker was running, and record extras."""
        self.process.join(timeout=5)
        how, extra = describe_exit(self.process.exitcode)
        return f"worker process died while running this job: {how}", extra

    def kill(self) -> None:
        """Stop the process and anything it started, now."""
        self.job = None
        if self.process.is_alive():
            try:
                os.killpg(self.process.pid, signal.SIGKILL)  # the worker leads its own process group
            except (AttributeError, OSError):
                self.process.kill()
        self.process.join(timeout=5)

    def stop(self) -> None:
        try:
            if self.process.is_alive() and self.job is None:
                self.conn.send(None)
                self.process.join(timeout=5)
        except (OSError, ValueError):
            pass
        if self.process.is_alive():
            self.kill()
        self.conn.close()


def _worker_loop(conn: Any, threads: int | None, cpus: list[int] | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    _die_with_parent()
    if hasattr(os, "setpgid"):
        try:  # a group of its own: a stopped job takes the processes it started with it
            os.setpgid(0, 0)
        except OSError:
            pass
    if threads is not None:
        for name in THREAD_ENV:
            os.environ.setdefault(name, str(threads))
    if cpus and hasattr(os, "sched_setaffinity"):
        try:  # libraries that size their thread pools from the affinity mask then agree with us
            os.sched_setaffinity(0, cpus)
        except OSError:
            pass

    def send_progress(job_id: str, stage: str, completed: int, total: int) -> None:
        conn.send(("progress", (job_id, stage, completed, total)))

    while True:
        try:
            spec = conn.recv()
        except EOFError:
            return
        if spec is None:
            return
        conn.send(("done", _run_in_worker(spec, send_progress)))


def _die_with_parent() -> None:
    """End this worker when the driver ends, even by SIGKILL: the kernel's parent-death
    signal on Linux, and elsewhere a thread that waits on the parent's sentinel."""
    parent = multiprocessing.parent_process()
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if parent is None:
        return
    if os.getppid() != parent.pid:  # the driver died before the signal was armed
        os._exit(1)
    sentinel = getattr(parent, "sentinel", None)
    if sentinel is not None:

        def watch() -> None:
            mp_connection.wait([sentinel])
            os._exit(1)

        threading.Thread(target=watch, name="pyimgano-parent-watch", daemon=True).start()


SIGTERM_MESSAGE = "terminated: stopping the workers; finished runs are saved"


def _run_in_worker(spec: dict[str, Any], progress: ProgressFn) -> dict[str, Any]:
    torch = sys.modules.get("torch")
    if torch is not None and os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    return run_job(JobSpec.model_validate(spec), progress)
