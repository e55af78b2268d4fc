"""Run benchmark jobs as Ray tasks (``pyimgano benchmark --executor ray``).

Install with ``pip install "pyimgano-core[ray]"``. Ray is imported only when a
:class:`RayExecutor` runs, never by ``import pyimgano``.

- Each :class:`~pyimgano.benchmark.config.JobSpec` becomes one Ray task that calls
  :func:`pyimgano.benchmark.job.run_job` on a worker. The task receives the spec (detector
  name, parameters, data set name, root, category, options), never pixels: every node must
  see the data set root at the same path (a shared file system) and have the same plugins
  installed. A worker that cannot read the root fails its job with a message naming the
  node, instead of a loader traceback.
- Resource requests come from the detector spec's
  :class:`~pyimgano.specs.DetectorCapabilities`: ``cpus`` -> ``num_cpus``, ``gpus`` ->
  ``num_gpus``, ``memory_mb`` -> ``memory``. A request no node of the cluster can satisfy
  fails that job at once rather than waiting forever.
- A task whose worker process dies (crash, out of memory, lost node) is retried by Ray up to
  ``max_retries`` times; ``run_job`` itself never raises, so a detector's own exceptions are
  results (``status: "error"``), not retries.
- Results stream back with ``ray.wait`` and are yielded as they finish, so the driver writes
  each to ``--out`` at once; an interrupted driver cancels what is still queued and keeps
  every finished result, and a rerun skips them (the driver's usual resume).
- The run log: each outcome's ``extra["cluster"]`` says which node ran it, its wall time,
  peak memory, attempts and retries, and the resources it asked for; with ``log_path`` the
  same entries are appended, one JSON line per job, as results arrive.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pyimgano.benchmark.config import ConfigError, JobSpec
from pyimgano.benchmark.executors import crashed_outcome
from pyimgano.benchmark.job import ProgressFn, empty_run, run_job

MIB = 1024 * 1024


def resource_request(spec: JobSpec) -> dict[str, Any]:
    """Ray task options (``num_cpus``, ``num_gpus``, ``memory``) for one job, from its detector spec."""
    from pyimgano.plugins import get_registry

    det_spec, _ = get_registry().resolve("detector", spec.detector)
    caps = det_spec.capabilities
    request: dict[str, Any] = {"num_cpus": float(caps.cpus), "num_gpus": float(caps.gpus)}
    if caps.memory_mb:
        request["memory"] = int(caps.memory_mb) * MIB
    return request


def unsatisfiable(request: dict[str, Any], nodes: list[dict[str, float]]) -> str | None:
    """Why no node of the cluster can run a task with this request (None when one can)."""
    wanted = {"CPU": request.get("num_cpus", 0), "GPU": request.get("num_gpus", 0), "memory": request.get("memory", 0)}
    for node in nodes:
        if all(node.get(name, 0.0) >= amount for name, amount in wanted.items()):
            return None
    want = ", ".join(_describe_amount(k, v) for k, v in wanted.items() if v)
    have = "; ".join(", ".join(_describe_amount(k, node.get(k, 0.0)) for k in wanted) for node in nodes) or "no nodes"
    return f"no node of the Ray cluster has {want} (nodes: {have})"


def _describe_amount(name: str, amount: float) -> str:
    if name == "memory":
        return f"{amount / MIB:.0f} MiB memory"
    return f"{amount:g} {name}"


class RayExecutor:
    """Runs benchmark jobs as Ray tasks on a local or remote Ray cluster.

    ``address``: ``None`` starts a private local cluster (or uses the one this process
    already joined with ``ray.init``), ``"auto"`` joins the cluster of this machine, and
    ``"ray://host:10001"`` or ``"host:6379"`` joins a remote one. ``workers`` (``--jobs``)
    is accepted for symmetry with the local executor and ignored: Ray runs as many jobs at
    once as the cluster's resources allow. ``runtime_env`` is handed to ``ray.init``; by
    default the driver's ``PYTHONPATH`` is forwarded to the workers. Plugins must be
    importable on every node (installed there, or on a shared path).
    """

    def __init__(
        self,
        workers: int = 1,
        address: str | None = None,
        max_retries: int = 2,
        log_path: str | os.PathLike | None = None,
        runtime_env: dict[str, Any] | None = None,
        init_options: dict[str, Any] | None = None,
    ) -> None:
        if max_retries < 0:
            raise ConfigError(f"max_retries must be 0 or more, got {max_retries}")
        self.address = address
        self.max_retries = max_retries
        self.log_path = Path(log_path) if log_path else None
        self.runtime_env = runtime_env
        self.init_options = dict(init_options or {})

    # -- cluster -------------------------------------------------------------------------------
    def _connect(self) -> tuple[Any, bool]:
        """The ray module and whether this executor started (and must stop) the connection."""
        try:
            import ray
        except ImportError:
            raise ConfigError(
                "--executor ray needs Ray: pip install 'pyimgano-core[ray]'"
            ) from None
        if ray.is_initialized():
            return ray, False
        options = {"address": self.address, "log_to_driver": False, **self.init_options}
        runtime_env = self.runtime_env
        if runtime_env is None and os.environ.get("PYTHONPATH"):
            # plugins found through the driver's PYTHONPATH: the same path on the workers
            # (right on a shared file system; paths a node lacks are ignored by Python)
            runtime_env = {"env_vars": {"PYTHONPATH": os.environ["PYTHONPATH"]}}
        if runtime_env is not None:
            options["runtime_env"] = runtime_env
        if self.address is None:
            options.setdefault("include_dashboard", False)
        try:
            ray.init(**options)
        except ConnectionError as exc:
            raise ConfigError(f"cannot reach the Ray cluster at {self.address!r}: {exc}") from None
        return ray, True

    # -- the seam --------------------------------------------------------------------------------
    def map_unordered(
        self, jobs: Sequence[JobSpec], progress: ProgressFn | None = None
    ) -> Iterator[tuple[JobSpec, dict[str, Any]]]:
        """Submit every job as a Ray task; yield ``(spec, outcome)`` as each finishes."""
        if not jobs:
            return
        ray, started = self._connect()
        ledger = None
        pending: dict[Any, tuple[JobSpec, dict[str, Any]]] = {}
        try:
            nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
            ledger = ray.remote(num_cpus=0)(AttemptLedger).remote()
            task = ray.remote(run_remote_job)
            for spec in jobs:
                request = resource_request(spec)
                reason = unsatisfiable(request, nodes)
                if reason is not None:
                    outcome = crashed_outcome(spec, f"cannot schedule on Ray: {reason}")
                    outcome["extra"]["cluster"] = {"requested": request, "attempts": 0, "retries": 0}
                    yield spec, self._logged(spec, outcome)
                    continue
                ref = task.options(
                    **request, max_retries=self.max_retries, retry_exceptions=False, name=spec.job_id
                ).remote(spec.model_dump(mode="json"), request, ledger)
                pending[ref] = (spec, request)
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    spec, request = pending.pop(ref)
                    yield spec, self._logged(spec, self._collect(ray, ref, spec, request, ledger))
        finally:
            for ref in pending:  # interrupted driver: drop queued and running jobs
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - best effort while shutting down
                    pass
            if ledger is not None:
                try:
                    ray.kill(ledger)
                except Exception:  # noqa: BLE001
                    pass
            if started:
                ray.shutdown()

    def _collect(self, ray: Any, ref: Any, spec: JobSpec, request: dict[str, Any], ledger: Any) -> dict[str, Any]:
        try:
            return ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - retries exhausted, node lost, task cancelled
            attempts = ray.get(ledger.attempts.remote(spec.job_id))
            message = (
                f"Ray worker died while running this job ({type(exc).__name__}) after "
                f"{len(attempts)} attempt(s), max_retries={self.max_retries}"
            )
            outcome = crashed_outcome(spec, message)
            outcome["extra"]["cluster"] = {
                "requested": request,
                "attempts": len(attempts),
                "retries": max(0, len(attempts) - 1),
                "nodes": attempts,
            }
            return outcome

    def _logged(self, spec: JobSpec, outcome: dict[str, Any]) -> dict[str, Any]:
        if self.log_path is not None:
            run, extra = outcome["run"], outcome["extra"]
            entry = {
                "job_id": extra.get("job_id"),
                "seed": spec.seed,
                "status": run["status"],
                "error": run["error"],
                "wall_s": extra.get("wall_s"),
                "peak_rss_mb": run["peak_rss_mb"],
                **extra.get("cluster", {}),
            }
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with self.log_path.open("a") as log:
                log.write(json.dumps(entry, default=str) + "\n")
        return outcome


class AttemptLedger:
    """A tiny Ray actor: counts the attempts of each job and where they ran.

    Ray does not tell a task which attempt it is; a task reports its start here and learns
    its attempt number, so the run log can show retries and the nodes they happened on.
    """

    def __init__(self) -> None:
        self._attempts: dict[str, list[dict[str, str]]] = {}

    def start(self, job_id: str, node: dict[str, str]) -> int:
        self._attempts.setdefault(job_id, []).append(node)
        return len(self._attempts[job_id])

    def attempts(self, job_id: str) -> list[dict[str, str]]:
        return self._attempts.get(job_id, [])


def node_identity() -> dict[str, str]:
    """Which node and process this is (Ray node id, IP, host name, pid)."""
    identity = {"hostname": platform.node(), "pid": str(os.getpid())}
    try:
        import ray

        context = ray.get_runtime_context()
        identity["node_id"] = context.get_node_id()
        identity["node_ip"] = ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001 - outside Ray: host name and pid are enough
        pass
    return identity


def unreadable_root(root: str | None) -> str | None:
    """Why this process cannot read a data set root (None when it can, or when there is none)."""
    if not root:
        return None
    path = Path(root)
    if not path.exists():
        return "it does not exist on this node"
    if not path.is_dir():
        return "it is not a folder"
    if not os.access(path, os.R_OK | os.X_OK):
        return "permission denied"
    return None


def run_remote_job(spec: dict[str, Any], request: dict[str, Any], ledger: Any = None) -> dict[str, Any]:
    """The body of one Ray task: check the data root, run the job, attach the run-log entry."""
    started = time.perf_counter()
    node = node_identity()
    job = JobSpec.model_validate(spec)
    attempt = 1
    if ledger is not None:
        import ray

        attempt = ray.get(ledger.start.remote(job.job_id, node))
    torch = sys.modules.get("torch")
    if torch is not None and request.get("num_cpus"):
        torch.set_num_threads(max(1, int(request["num_cpus"])))
    reason = unreadable_root(job.root)
    if reason is not None:
        where = node.get("node_ip") or node["hostname"]
        run = empty_run(job).failed(
            f"worker on node {where} cannot read the data set root {job.root!r}: {reason}. "
            "Every Ray node must see the data at the same path (shared file system or a "
            "synced copy); see docs/scaling.md"
        ).model_dump(mode="json")
        outcome: dict[str, Any] = {"run": run, "scores": [], "overlays": [], "extra": {"job_id": job.job_id}}
    else:
        outcome = run_job(job)
    assigned = {}
    try:
        import ray

        assigned = {k: float(v) for k, v in ray.get_runtime_context().get_assigned_resources().items()}
    except Exception:  # noqa: BLE001
        pass
    outcome["extra"]["cluster"] = {
        **node,
        "attempts": attempt,
        "retries": attempt - 1,
        "requested": request,
        "assigned": assigned,
        "task_wall_s": time.perf_counter() - started,
        "peak_rss_mb": outcome["run"]["peak_rss_mb"],
    }
    return outcome
