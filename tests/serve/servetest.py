"""Helpers of the serve and watch tests: a ``pyimgano serve`` process on a free loopback
port, Prometheus samples, the fake plugin's environment."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pyimgano_testutils import benchtest_module

benchtest = benchtest_module()


def cli_env(site: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("PYIMGANO_STRICT_PLUGINS", "PYIMGANO_DISABLE_PLUGINS", "PYIMGANO_API_KEY"):
        env.pop(key, None)
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    env.update(extra or {})
    return env


class Server:
    def __init__(self, process: subprocess.Popen, url: str) -> None:
        self.process, self.url = process, url

    def stop(self, timeout: float = 30) -> tuple[int, str, str]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, out, err


@contextmanager
def serving(model: Path, site: Path, *args: str, env: dict[str, str] | None = None,
            ready: bool = True) -> Iterator[Server]:
    """``pyimgano serve --model MODEL --port 0 ARGS`` until the block ends (SIGTERM)."""
    import httpx

    from pyimgano_testutils import optional

    optional("fastapi")  # the serve extra
    process = subprocess.Popen([sys.executable, "-m", "pyimgano", "serve", "--model", str(model), "--port", "0",
                                *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=cli_env(site, env))
    try:
        line = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        if match is None:
            process.kill()
            raise AssertionError(f"serve did not start: {line}{process.stderr.read()}")
        server = Server(process, f"http://127.0.0.1:{match.group(1)}")
        deadline = time.monotonic() + 30
        while ready and httpx.get(server.url + "/readyz").status_code != 200:
            assert time.monotonic() < deadline and process.poll() is None, "serve never became ready"
            time.sleep(0.05)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()


def metric(text: str, name: str, **labels: str) -> float:
    """A sample's value from Prometheus text (0 when absent)."""
    wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if key == wanted or (labels and key.startswith(name + "{") and
                             all(f'{k}="{v}"' in key for k, v in labels.items())):
            return float(value)
    return 0.0
