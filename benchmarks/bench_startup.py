"""Start-up time of ``pyimgano list-plugins --json`` against ``python -c "import pydantic"``.

    .venv/bin/python benchmarks/bench_startup.py                 # 10 runs each
    .venv/bin/python benchmarks/bench_startup.py --runs 20 --max-ratio 2

Every command runs as a fresh process of this interpreter, the commands taking turns so
that load on the machine falls on all of them alike. Printed per command: the median wall
time, the median CPU time of the process (user + system, steadier on a busy machine) and
both as a ratio to ``import pydantic``. The last row is the floor of any listing that
reads entry points and validates pydantic specs: a script that imports pluggy, scans the
``pyimgano`` entry points and defines and validates one pydantic model, nothing else. One
warm-up run of each comes first and is not counted; the children run without
``PYTHONDONTWRITEBYTECODE``, so they use bytecode caches as an installed package does.
``--max-ratio`` makes the script exit 1 when list-plugins' wall-time ratio exceeds it.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

FLOOR = """
from importlib import metadata
import pluggy
from pydantic import BaseModel, Field
metadata.entry_points(group="pyimgano")
class Params(BaseModel):
    k: int = Field(1, ge=0)
Params(k=2)
"""


def pyimgano_command() -> list[str]:
    """The console script next to this interpreter (what users run), else ``-m pyimgano``."""
    script = Path(sys.executable).parent / "pyimgano"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    found = shutil.which("pyimgano")
    return [found] if found else [sys.executable, "-m", "pyimgano"]


def commands() -> dict[str, list[str]]:
    pyimgano = pyimgano_command()
    return {
        'python -c "import pydantic"': [sys.executable, "-c", "import pydantic"],
        "pyimgano list-plugins --json": [*pyimgano, "list-plugins", "--json"],
        "pyimgano --help": [*pyimgano, "--help"],
        "floor: entry points + 1 model": [sys.executable, "-c", FLOOR],
    }


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run of ``argv``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="runs of each command (default 10)")
    parser.add_argument("--max-ratio", type=float, help="exit 1 when list-plugins takes more than this x import pydantic")
    args = parser.parse_args(argv)

    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    cmds = commands()
    for cmd in cmds.values():  # warm-up: page cache and bytecode caches
        run_once(cmd, env)
    walls: dict[str, list[float]] = {name: [] for name in cmds}
    cpus: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(args.runs):
        for name, cmd in cmds.items():
            wall, cpu = run_once(cmd, env)
            walls[name].append(wall)
            cpus[name].append(cpu)

    wall_base = statistics.median(next(iter(walls.values())))
    cpu_base = statistics.median(next(iter(cpus.values())))
    print(f"median of {args.runs} runs each, commands taking turns ({os.cpu_count()} CPUs, {sys.executable})")
    print(f"{'command':32s} {'wall s':>8s} {'ratio':>6s} {'cpu s':>8s} {'ratio':>6s}")
    for name in cmds:
        wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
        print(f"{name:32s} {wall:8.3f} {wall / wall_base:5.2f}x {cpu:8.3f} {cpu / cpu_base:5.2f}x")
    ratio = statistics.median(walls["pyimgano list-plugins --json"]) / wall_base
    print(f"list-plugins --json / import pydantic: {ratio:.2f}x (wall)")
    if args.max_ratio is not None and ratio > args.max_ratio:
        print(f"error: {ratio:.2f}x is above --max-ratio {args.max_ratio}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
