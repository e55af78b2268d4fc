"""Start-up time of ``pyimgano list-plugins --json`` against ``python -c "import pydantic"``.

    .venv/bin/python benchmarks/bench_startup.py                 # 10 runs each
    .venv/bin/python benchmarks/bench_startup.py --runs 20 --max-ratio 2

Every command runs as a fresh process of this interpreter, the commands taking turns so
that load on the machine falls on all of them alike. Printed per command: the median wall
time, the median CPU time of the process (user + system, steadier on a busy machine) and
both as a ratio to ``import pydantic``.

``list-plugins --json`` and ``--help`` run three ways (see ``pyimgano.listing``):
``warm``, reading the saved plugin listing (what every run but the first after a change
does); ``cold``, into an empty cache folder, so the run discovers every plugin and saves
the listing; ``no cache``, with ``PYIMGANO_NO_PLUGIN_CACHE=1``. The last row is the floor
of any listing that discovers: a script that imports pluggy, scans the ``pyimgano`` entry
points and defines and validates one pydantic model, nothing else. The cache lives in a
temporary folder, never the user's. Before timing, the script checks that the warm
output is byte for byte the no-cache output. One warm-up run of each comes first and is
not counted; the children run without ``PYTHONDONTWRITEBYTECODE``, so they use bytecode
caches as an installed package does. ``--max-ratio`` makes the script exit 1 when the warm
list-plugins wall-time ratio exceeds it.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
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


LIST = "list-plugins --json"
WARM_LIST = f"{LIST} (warm)"


def commands() -> dict[str, tuple[list[str], str]]:
    """Name -> (argv, cache mode: "warm", "cold", "off" or "" for commands that do not list)."""
    pyimgano = pyimgano_command()
    listing = [*pyimgano, "list-plugins", "--json"]
    helping = [*pyimgano, "--help"]
    return {
        'python -c "import pydantic"': ([sys.executable, "-c", "import pydantic"], ""),
        WARM_LIST: (listing, "warm"),
        f"{LIST} (cold)": (listing, "cold"),
        f"{LIST} (no cache)": (listing, "off"),
        "pyimgano --help (warm)": (helping, "warm"),
        "pyimgano --help (cold)": (helping, "cold"),
        "floor: entry points + 1 model": ([sys.executable, "-c", FLOOR], ""),
    }


class CacheFolders:
    """The environment of each cache mode: a warm folder kept, a new empty one per cold run."""

    def __init__(self, base: dict[str, str], root: Path) -> None:
        self.base, self.root, self.count = base, root, 0
        self.warm = {**base, "PYIMGANO_CACHE_DIR": str(root / "warm")}

    def env(self, mode: str) -> dict[str, str]:
        if mode == "warm":
            return self.warm
        if mode == "cold":
            self.count += 1
            return {**self.base, "PYIMGANO_CACHE_DIR": str(self.root / f"cold-{self.count}")}
        if mode == "off":
            return {**self.base, "PYIMGANO_NO_PLUGIN_CACHE": "1"}
        return self.base


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run of ``argv``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def check_warm_output(folders: CacheFolders) -> None:
    """The saved listing is read back and prints byte for byte what discovery prints."""
    import json

    listing = [*pyimgano_command(), "list-plugins", "--json"]
    fresh = subprocess.run(listing, env=folders.env("off"), capture_output=True, check=True).stdout
    saved_dir = Path(folders.warm["PYIMGANO_CACHE_DIR"]) / "plugins"
    for _ in range(5):  # nothing is saved while a file is younger than two seconds (new bytecode caches)
        subprocess.run(listing, env=folders.warm, capture_output=True, check=True)
        if list(saved_dir.glob("listing-*.json")):
            break
        time.sleep(1)
    else:
        raise SystemExit("error: no listing was saved (a plugin failed, or files keep changing)")
    warm = subprocess.run(listing, env=folders.warm, capture_output=True, check=True).stdout
    if warm != fresh:
        raise SystemExit("error: list-plugins --json from the saved listing differs from discovery's")
    plugins = json.loads(fresh)["plugins"]
    print(f"warm output identical to discovery's ({len(plugins)} plugins: {', '.join(p['name'] for p in plugins)})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="runs of each command (default 10)")
    parser.add_argument("--max-ratio", type=float,
                        help="exit 1 when the warm list-plugins takes more than this x import pydantic")
    args = parser.parse_args(argv)

    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYIMGANO_NO_PLUGIN_CACHE", None)
    cmds = commands()
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        folders = CacheFolders(env, Path(tmp))
        for argv, mode in cmds.values():  # warm-up: page cache, bytecode caches, the warm listing
            run_once(argv, folders.env(mode))
        check_warm_output(folders)
        walls: dict[str, list[float]] = {name: [] for name in cmds}
        cpus: dict[str, list[float]] = {name: [] for name in cmds}
        for _ in range(args.runs):
            for name, (argv, mode) in cmds.items():
                wall, cpu = run_once(argv, folders.env(mode))
                walls[name].append(wall)
                cpus[name].append(cpu)

    wall_base = statistics.median(next(iter(walls.values())))
    cpu_base = statistics.median(next(iter(cpus.values())))
    print(f"median of {args.runs} runs each, commands taking turns ({os.cpu_count()} CPUs, {sys.executable})")
    print(f"{'command':36s} {'wall s':>8s} {'ratio':>6s} {'cpu s':>8s} {'ratio':>6s}")
    for name in cmds:
        wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
        print(f"{name:36s} {wall:8.3f} {wall / wall_base:5.2f}x {cpu:8.3f} {cpu / cpu_base:5.2f}x")
    ratio = statistics.median(walls[WARM_LIST]) / wall_base
    print(f"{WARM_LIST} / import pydantic: {ratio:.2f}x (wall)")
    if args.max_ratio is not None and ratio > args.max_ratio:
        print(f"error: {ratio:.2f}x is above --max-ratio {args.max_ratio}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
