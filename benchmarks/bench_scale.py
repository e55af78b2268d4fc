"""Benchmark grids: local executor vs Ray on this machine, and a model of a 100-node run.

Measures, in one process and one run (the machine may be shared: compare ratios):

1. the wall time of one small grid with ``--executor local`` (serial and ``--jobs 2``) and
   ``--executor ray`` on a local Ray instance with this machine's CPUs (Ray start-up is
   reported apart);
2. Ray's own cost per task: bulk throughput of no-op tasks, the submit-to-result round trip
   of one task, the first job on a fresh worker (imports) vs a warm one;
3. the driver's cost per arriving result (record + results.json/CSV/summary/report
   rewritten) as the number of finished runs grows, because the driver handles results one
   at a time;

then feeds those figures into :func:`simulate`, an event simulation of the 810-fit grid
(MVTec AD 15 + VisA 12 categories x 10 detectors x 3 seeds) on N nodes. Job durations come
from the grid's measured per-job times, scaled by the ``--duration-model`` table (see
docs/scaling.md for the assumptions).

``--driver-writes`` measures only the driver's write cost on the 810-fit grid itself:
``run_benchmark`` expands the real grid (the MVTec AD and VisA categories, ten anomalib
detectors' real parameters, seeds 0 1 2) and a stand-in executor hands it 810 synthetic
results; the driver saves each record and rewrites results.json, CSV, summary.md and
report.html every ``--flush-interval`` seconds (0: after every result, the old behaviour).

    .venv/bin/python benchmarks/bench_scale.py --json scale.json
    .venv/bin/python benchmarks/bench_scale.py --simulate-only scale.json --nodes 100
    .venv/bin/python benchmarks/bench_scale.py --driver-writes --flush-interval 0 10
"""

from __future__ import annotations

import argparse
import heapq
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_PLUGIN = REPO / "tests" / "plugins" / "pyimgano-example"

# The 810-fit grid: (detector class, number of detectors, GPU?, duration relative to one
# faiss:patchcore CPU fit+score of a category at the measured scale). See docs/scaling.md.
DURATION_MODEL = {
    "memory-bank (PatchCore-like, CPU)": {"detectors": 4, "gpus": 0, "relative": 1.0, "spread": 0.5},
    "statistical (PaDiM-like, CPU)": {"detectors": 2, "gpus": 0, "relative": 0.5, "spread": 0.5},
    "trained (EfficientAD/FastFlow/STFPM, GPU)": {"detectors": 4, "gpus": 1, "relative": 6.0, "spread": 0.7},
}
CATEGORIES = 15 + 12
SEEDS = 3


# -- 1. the grid --------------------------------------------------------------------------------
def _install_example(site: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "--target", str(site), str(EXAMPLE_PLUGIN)], check=True)


def grid_config(out: Path, cache: Path, detector: str, n_train: int, image_size: int):
    from pyimgano.benchmark.config import BenchmarkConfig, DatasetEntry, DetectorEntry

    if detector == "example:mad":
        detectors = [DetectorEntry(name="example:mad", params={"sigma": s}) for s in (0.0, 1.0, 2.0)]
    else:
        detectors = [DetectorEntry(name=detector, params={"backbone": "efficientnet_lite0", "coreset_ratio": 0.1,
                                                          "image_size": image_size})]
    options = {"cache_dir": str(cache), "image_size": image_size, "n_train": n_train}
    return BenchmarkConfig(detectors=detectors, datasets=[DatasetEntry(name="synthetic", options=options)],
                           out=str(out), overlays=0)


def time_grid(config, executor) -> tuple[float, list[dict]]:
    from rich.console import Console

    from pyimgano.benchmark.runner import run_benchmark

    t0 = time.perf_counter()
    outcome = run_benchmark(config, executor=executor, console=Console(file=io.StringIO()), show_progress=False)
    wall = time.perf_counter() - t0
    if outcome.n_errors:
        raise SystemExit(f"grid had errors: {[r['error'] for r in outcome.runs if r['error']]}")
    return wall, outcome.records


# -- 2. Ray's own overhead ------------------------------------------------------------------------
def _noop(x):
    return x


def ray_overhead(ray, n_bulk: int = 1000, n_serial: int = 50) -> dict:
    noop = ray.remote(num_cpus=1)(_noop)
    ray.get([noop.remote(i) for i in range(20)])  # warm workers
    t0 = time.perf_counter()
    ray.get([noop.remote(i) for i in range(n_bulk)])
    bulk = (time.perf_counter() - t0) / n_bulk
    rtts = []
    for i in range(n_serial):
        t0 = time.perf_counter()
        ray.get(noop.remote(i))
        rtts.append(time.perf_counter() - t0)
    return {"bulk_s_per_task": bulk, "round_trip_s_median": statistics.median(rtts),
            "round_trip_s_p90": sorted(rtts)[int(0.9 * len(rtts))]}


# -- 3. the driver's cost per result -----------------------------------------------------------------
def driver_cost(records: list[dict], sizes=(10, 100, 400, 810)) -> dict:
    """Seconds the driver spends per arriving result when ``n`` runs are already finished."""
    from pyimgano.benchmark.results import ResultStore
    from pyimgano.benchmark.runner import write_outputs

    costs = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = ResultStore(tmp)
        store.out.mkdir(exist_ok=True)
        for n in sizes:
            fake = []
            for i in range(n):
                record = json.loads(json.dumps(records[i % len(records)]))
                record["run"]["category"] = f"{record['run']['category']}-{i}"
                fake.append(record)
            t0 = time.perf_counter()
            write_outputs(store, fake)
            costs[n] = time.perf_counter() - t0
    return costs


# -- 3b. the driver's write cost on the 810-fit grid, every result vs throttled ------------------------
GRID_DETECTORS = ["anomalib:patchcore", "anomalib:padim", "anomalib:efficient_ad", "anomalib:fastflow",
                  "anomalib:stfpm", "anomalib:cflow", "anomalib:dfkde", "anomalib:dfm",
                  "anomalib:reverse_distillation", "anomalib:draem"]


def grid_810(out: Path, flush_interval: float, seeds=(0, 1, 2)):
    """The issue's grid: MVTec AD 15 + VisA 12 categories x 10 detectors x 3 seeds (a root
    that is never read: the stand-in executor does not load data)."""
    from pyimgano.benchmark.config import BenchmarkConfig, DatasetEntry, DetectorEntry
    from pyimgano.plugins import get_registry

    registry = get_registry()
    datasets = [DatasetEntry(name=name, root=f"/data/{name}", categories=list(registry.resolve("dataset", name)[0]
                                                                              .categories)) for name in ("mvtec", "visa")]
    return BenchmarkConfig(detectors=[DetectorEntry(name=d) for d in GRID_DETECTORS], datasets=datasets,
                           seeds=list(seeds), out=str(out), overlays=0, flush_interval=flush_interval)


class SyntheticResults:
    """An executor that runs nothing: each job's outcome is made up (metrics, 100 test
    scores, the extras a real job records), handed over every ``arrival_s`` seconds."""

    def __init__(self, arrival_s: float = 0.0, n_test: int = 100) -> None:
        self.arrival_s = arrival_s
        self.n_test = n_test

    def map_unordered(self, jobs, progress=None):
        from pyimgano.benchmark.job import empty_run

        rng = random.Random(0)
        for spec in jobs:
            if self.arrival_s:
                time.sleep(self.arrival_s)
            run = empty_run(spec).model_dump(mode="json")
            run["metrics"] = {m: rng.uniform(0.7, 1.0) for m in run["metrics"]}
            run["timing"] = {"fit_s": rng.uniform(5, 600), "predict_s": rng.uniform(2, 60), "images_per_s": 5.0}
            run.update(peak_rss_mb=rng.uniform(800, 6000), n_train=200, n_test=self.n_test)
            scores = [{"image": f"/data/{spec.dataset_label}/{spec.category}/test/x/{i:03d}.png", "label": i % 2,
                       "defect_type": "good" if i % 2 == 0 else "crack", "score": rng.random()}
                      for i in range(self.n_test)]
            extra = {"job_id": spec.job_id, "host": "node", "pid": 1, "notes": [], "wall_s": 1.0,
                     "load_train_s": 0.5, "load_test_s": 0.2, "thresholds": {"image": 0.5, "pixel": 0.4}}
            yield spec, {"run": run, "scores": scores, "overlays": [], "extra": extra}


def driver_writes(flush_interval: float, arrival_s: float = 0.0) -> dict:
    """Seconds the driver spends on 810 results: records, aggregate rewrites, in total."""
    from rich.console import Console

    from pyimgano.benchmark import runner
    from pyimgano.benchmark.results import ResultStore

    spent = {"write_outputs": 0.0, "flushes": 0, "save_outcome": 0.0, "largest_flush_s": 0.0}
    real_write, real_save = runner.write_outputs, ResultStore.save_outcome

    def timed_write(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return real_write(*args, **kwargs)
        finally:
            took = time.perf_counter() - t0
            spent["write_outputs"] += took
            spent["flushes"] += 1
            spent["largest_flush_s"] = max(spent["largest_flush_s"], took)

    def timed_save(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return real_save(self, *args, **kwargs)
        finally:
            spent["save_outcome"] += time.perf_counter() - t0

    runner.write_outputs, ResultStore.save_outcome = timed_write, timed_save
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = grid_810(Path(tmp) / "out", flush_interval)
            t0 = time.perf_counter()
            outcome = runner.run_benchmark(config, executor=SyntheticResults(arrival_s),
                                           console=Console(file=io.StringIO()), show_progress=False)
            wall = time.perf_counter() - t0
            n = len(outcome.records)
            sizes = {p.name: p.stat().st_size for p in Path(tmp, "out").glob("*.*")}
    finally:
        runner.write_outputs, ResultStore.save_outcome = real_write, real_save
    waited = n * arrival_s
    return {"flush_interval_s": flush_interval, "arrival_s": arrival_s, "results": n, "wall_s": wall,
            "driver_s": wall - waited, "driver_s_per_result": (wall - waited) / n, **spent,
            "file_bytes": sizes}


def rewrite_curve(sizes=(10, 100, 400, 810), repeats: int = 3) -> dict:
    """Best-of-``repeats`` seconds of one ``write_outputs`` with the first n results of the grid."""
    from rich.console import Console

    from pyimgano.benchmark.results import ResultStore
    from pyimgano.benchmark.runner import run_benchmark, write_outputs

    curve = {}
    with tempfile.TemporaryDirectory() as tmp:
        config = grid_810(Path(tmp) / "out", 3600.0)
        records = run_benchmark(config, executor=SyntheticResults(), console=Console(file=io.StringIO()),
                                show_progress=False).records
        store = ResultStore(config.out)
        for n in sizes:
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                write_outputs(store, records[:n])
                times.append(time.perf_counter() - t0)
            curve[n] = min(times)
    return curve


def print_driver_writes(rows: list[dict]) -> None:
    print("driver write cost, 810-result grid (27 categories x 10 detectors x 3 seeds), synthetic results:")
    for r in rows:
        print(f"  flush_interval {r['flush_interval_s']:5.1f} s, results every {r['arrival_s'] * 1000:4.0f} ms: "
              f"driver {r['driver_s']:7.1f} s in all = {r['driver_s_per_result'] * 1000:6.1f} ms per result "
              f"({r['flushes']} rewrites, {r['write_outputs']:.1f} s; largest {r['largest_flush_s']:.2f} s; "
              f"records {r['save_outcome']:.1f} s)")


# -- the model ---------------------------------------------------------------------------------------
def make_jobs(base_s: float, seed: int = 0) -> list[dict]:
    """The 810 jobs with durations drawn around ``base_s`` x each class's relative cost."""
    rng = random.Random(seed)
    jobs = []
    for name, cls in DURATION_MODEL.items():
        for _ in range(cls["detectors"] * CATEGORIES * SEEDS):
            jobs.append({"class": name, "gpus": cls["gpus"],
                         "duration": base_s * cls["relative"] * rng.lognormvariate(0.0, cls["spread"])})
    rng.shuffle(jobs)
    return jobs


def simulate(jobs: list[dict], nodes: int, cpu_slots: int, gpu_slots: int, task_overhead_s: float,
             cold_start_s: float, driver_cost_s, flush_interval_s: float | None = None,
             record_s: float = 0.0) -> dict:
    """Event simulation of a Ray run: FIFO dispatch to the first free slot of the right kind.

    Each task pays ``task_overhead_s`` (scheduling round trip) and, on the first task of a
    slot, ``cold_start_s`` (worker start + imports). The driver takes results one at a time,
    spending ``record_s`` on each and ``driver_cost_s(n_finished)`` on a rewrite of the
    result files: after every result (``flush_interval_s`` None), or only when that many
    seconds passed since the last rewrite, plus one at the end. The grid ends when the last
    result is written.
    """
    free = {"cpu": [(0.0, i) for i in range(nodes * cpu_slots)], "gpu": [(0.0, i) for i in range(nodes * gpu_slots)]}
    warm: set[tuple[str, int]] = set()
    for heap in free.values():
        heapq.heapify(heap)
    finishes = []
    for job in jobs:
        kind = "gpu" if job["gpus"] else "cpu"
        if not free[kind]:
            raise ValueError(f"no {kind} slots")
        start, slot = heapq.heappop(free[kind])
        cost = job["duration"] + task_overhead_s + (0.0 if (kind, slot) in warm else cold_start_s)
        warm.add((kind, slot))
        heapq.heappush(free[kind], (start + cost, slot))
        finishes.append(start + cost)
    driver_free, last_rewrite, pending = 0.0, float("-inf"), False
    for n, done in enumerate(sorted(finishes)):
        driver_free = max(driver_free, done) + record_s
        pending = True
        if flush_interval_s is None or driver_free - last_rewrite >= flush_interval_s:
            last_rewrite = driver_free
            driver_free += driver_cost_s(n)
            pending = False
    if pending:
        driver_free += driver_cost_s(len(finishes))
    total_work = sum(j["duration"] for j in jobs)
    return {"nodes": nodes, "makespan_s": driver_free, "last_job_done_s": max(finishes),
            "serial_work_s": total_work, "longest_job_s": max(j["duration"] for j in jobs),
            "lower_bound_s": max(max(j["duration"] for j in jobs),
                                 sum(j["duration"] for j in jobs if j["gpus"]) / (nodes * gpu_slots),
                                 sum(j["duration"] for j in jobs if not j["gpus"]) / (nodes * cpu_slots))}


def interpolate(costs: dict) -> callable:
    points = sorted((int(k), v) for k, v in costs.items())

    def cost(n: int) -> float:
        for (n0, c0), (n1, c1) in zip(points, points[1:]):
            if n <= n1:
                return c0 + (c1 - c0) * max(0, n - n0) / (n1 - n0)
        return points[-1][1] * n / points[-1][0]

    return cost


def print_model(measured: dict, nodes_list: list[int], base_job_s: float | None = None,
                driver: dict | None = None) -> list[dict]:
    """The model; ``driver`` (a ``--driver-writes`` measurement) adds the throttled driver."""
    base = base_job_s or measured["patchcore_job_s"]
    overhead = measured["ray"]["round_trip_s_median"]
    walls = measured["grid"]["wall_s"]
    # a fresh worker process: its start-up is outside any task, so take it from the grid walls too
    cold = max(measured["cold_start_s"],
               (walls["ray (cold workers)"] - walls["ray (warm workers)"]) / max(1, measured["cpus"]))
    cost = interpolate(measured["driver_cost_s"])
    variants = [("every result, grid's rewrite cost", cost, None, 0.0)]
    if driver:  # the throttled driver, with the grid run's (slower) and this run's rewrite costs
        rewrite = interpolate(driver["rewrite_s"])
        throttled = [r for r in driver["driver_writes"] if r["flush_interval_s"] > 0]
        record = max(r["save_outcome"] / r["results"] for r in driver["driver_writes"])
        variants.append(("every result, measured rewrite cost", rewrite, None, record))
        for interval in sorted({r["flush_interval_s"] for r in throttled}):
            variants.append((f"every {interval:g} s, grid's rewrite cost", cost, interval, record))
            variants.append((f"every {interval:g} s, measured rewrite cost", rewrite, interval, record))
    jobs = make_jobs(base)
    rows = []
    print(f"\nmodel of the 810-fit grid: base job {base:.1f} s, Ray round trip {overhead * 1000:.1f} ms, "
          f"cold worker {cold:.1f} s, driver rewrite {cost(810) * 1000:.0f} ms at 810 runs (as measured with "
          "the full grid)")
    for nodes in nodes_list:
        for label, driver_cost, interval, record_s in variants:
            row = simulate(jobs, nodes, cpu_slots=4, gpu_slots=1, task_overhead_s=overhead, cold_start_s=cold,
                           driver_cost_s=driver_cost, flush_interval_s=interval, record_s=record_s)
            row["efficiency"] = row["lower_bound_s"] / row["makespan_s"]
            row["driver"] = label
            row["flush_interval_s"] = interval
            rows.append(row)
            print(f"  {nodes:4d} node(s) x (4 CPU slots + 1 GPU), {label:38s}: {row['makespan_s'] / 60:8.1f} min "
                  f"(last job done {row['last_job_done_s'] / 60:7.1f} min, lower bound "
                  f"{row['lower_bound_s'] / 60:7.1f} min, efficiency {row['efficiency']:.2f}; "
                  f"serial work {row['serial_work_s'] / 3600:.1f} h)")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detector", default="example:mad", help="grid detector: example:mad or faiss:patchcore")
    parser.add_argument("--patchcore-train", type=int, default=16, help="train images per category for the "
                        "faiss:patchcore job-duration measurement")
    parser.add_argument("--n-train", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--json", help="write the measurements and the model here")
    parser.add_argument("--simulate-only", metavar="JSON", help="rerun the model from a saved measurement")
    parser.add_argument("--base-job-s", type=float, help="model: duration of the reference job (default: measured)")
    parser.add_argument("--driver-writes", action="store_true",
                        help="only measure the driver's write cost for the 810-result grid (see above)")
    parser.add_argument("--flush-interval", type=float, nargs="+", default=[0.0, 10.0],
                        help="with --driver-writes: the intervals to compare (0: rewrite after every result)")
    parser.add_argument("--arrival-ms", type=float, nargs="+", default=[0.0],
                        help="with --driver-writes: milliseconds between arriving results (0: back to back)")
    parser.add_argument("--driver-json", metavar="JSON",
                        help="with --simulate-only: a --driver-writes measurement, to model the throttled driver")
    args = parser.parse_args()
    if args.driver_writes:
        rows = []
        for arrival in args.arrival_ms:
            for interval in args.flush_interval:
                rows.append(driver_writes(interval, arrival / 1000))
                print_driver_writes(rows[-1:])
        curve = rewrite_curve()
        print("one rewrite of results.json, CSV, summary.md, report.html: " + ", ".join(
            f"{v * 1000:.0f} ms at {k} results" for k, v in curve.items()))
        if args.json:
            Path(args.json).write_text(json.dumps({"driver_writes": rows, "rewrite_s": curve}, indent=2))
        return
    if args.simulate_only:
        measured = json.loads(Path(args.simulate_only).read_text())
        driver = json.loads(Path(args.driver_json).read_text()) if args.driver_json else None
        print_model(measured, args.nodes, args.base_job_s, driver)
        return

    from pyimgano.benchmark.executors import LocalExecutor
    from pyimgano.benchmark.ray_executor import RayExecutor
    from pyimgano.plugins import reset_registry

    measured: dict = {"cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        site = tmp / "site"
        _install_example(site)
        sys.path.insert(0, str(site))
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
        reset_registry()
        cache = tmp / "cache"
        config = lambda out, det=args.detector, n=args.n_train: grid_config(tmp / out, cache, det, n,  # noqa: E731
                                                                            args.image_size)
        time_grid(config("warm"), LocalExecutor())  # generates the synthetic images once

        walls = {}
        walls["local serial"], records = time_grid(config("serial"), LocalExecutor())
        walls["local --jobs 2"], _ = time_grid(config("jobs2"), LocalExecutor(workers=2))
        import ray

        t0 = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        measured["ray_init_s"] = time.perf_counter() - t0
        walls["ray (cold workers)"], ray_records = time_grid(config("ray"), RayExecutor())
        walls["ray (warm workers)"], _ = time_grid(config("ray2"), RayExecutor())
        measured["ray"] = ray_overhead(ray)
        n_jobs = len(records)
        measured["grid"] = {"detector": args.detector, "jobs": n_jobs, "wall_s": walls,
                            "job_wall_s_serial": [r["extra"]["wall_s"] for r in records],
                            "job_wall_s_ray": [r["extra"]["wall_s"] for r in ray_records]}
        # per-job cost of a fresh worker: the first job vs the same job on a warm worker
        first = ray_records[0]["extra"]["cluster"]["task_wall_s"]
        warm_same = ray_records[0]["extra"]["wall_s"]
        measured["cold_start_s"] = max(0.0, first - warm_same)

        # the reference job duration: faiss:patchcore on one synthetic category
        pc_wall, pc_records = time_grid(grid_config(tmp / "pc", cache, "faiss:patchcore", args.patchcore_train,
                                                    256), RayExecutor())
        measured["patchcore_job_s"] = statistics.mean(r["extra"]["wall_s"] for r in pc_records)
        measured["patchcore_first_task_s"] = pc_records[0]["extra"]["cluster"]["task_wall_s"]
        measured["cold_start_s"] = max(measured["cold_start_s"],
                                       measured["patchcore_first_task_s"] - pc_records[0]["extra"]["wall_s"])
        ray.shutdown()
        measured["driver_cost_s"] = driver_cost(records)

    print(f"grid: {args.detector}, {n_jobs} jobs on synthetic ({args.image_size} px, {args.n_train} train images), "
          f"{measured['cpus']} CPUs")
    base = walls["local serial"]
    for name, wall in walls.items():
        print(f"  {name:22s} {wall:7.2f} s   x{wall / base:.2f} of serial")
    print(f"Ray start-up (ray.init, local instance): {measured['ray_init_s']:.1f} s (not in the walls above)")
    r = measured["ray"]
    print(f"Ray no-op tasks: {r['bulk_s_per_task'] * 1000:.2f} ms each in bulk; round trip median "
          f"{r['round_trip_s_median'] * 1000:.2f} ms, p90 {r['round_trip_s_p90'] * 1000:.2f} ms")
    print(f"fresh Ray worker (imports) adds {measured['cold_start_s']:.1f} s to its first job")
    print(f"faiss:patchcore job (synthetic, 256 px, {args.patchcore_train} train): "
          f"{measured['patchcore_job_s']:.1f} s")
    print("driver cost per result: " + ", ".join(f"{v * 1000:.0f} ms at {k} runs"
                                                  for k, v in measured["driver_cost_s"].items()))
    measured["model"] = print_model(measured, args.nodes)
    if args.json:
        Path(args.json).write_text(json.dumps(measured, indent=2, default=str))


if __name__ == "__main__":
    main()
