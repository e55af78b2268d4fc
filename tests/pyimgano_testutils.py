"""Helpers shared by the test suite (importable as ``pyimgano_testutils``)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
EXAMPLE_PLUGIN = REPO_ROOT / "tests" / "plugins" / "pyimgano-example"


def shared_path(*parts: str) -> Path:
    """A path under ../shared; the test is skipped when it is absent (a user's clone)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not available")
    return path


@contextmanager
def plugin_on_path(*sites: Path, modules: tuple[str, ...]) -> Iterator[None]:
    """Make the plugins installed in ``sites`` discoverable in this process (and in spawned
    workers) for the block; afterwards the sites leave ``sys.path``, the modules whose names
    start with one of ``modules`` are forgotten and the registry is rebuilt on next use."""
    from pyimgano.plugins import reset_registry

    for site in sites:
        sys.path.insert(0, str(site))
    reset_registry()
    try:
        yield
    finally:
        for site in sites:
            sys.path.remove(str(site))
        for name in [m for m in sys.modules if m.startswith(modules)]:
            del sys.modules[name]
        reset_registry()


def make_fake_distribution(
    site: Path, dist_name: str, version: str, entry_points: dict[str, str], modules: dict[str, str]
) -> Path:
    """Write a minimal installed distribution (dist-info + modules) into ``site``.

    ``entry_points`` maps entry-point names of the ``pyimgano`` group to ``module``
    values; ``modules`` maps module names to their source.
    """
    site.mkdir(parents=True, exist_ok=True)
    info = site / f"{dist_name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: {version}\n")
    lines = ["[pyimgano]"] + [f"{name} = {value}" for name, value in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for module, source in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))
    return site


def install_with_pip(project: Path, target: Path) -> Path:
    """pip-install a local project (no deps, no build isolation) into a target folder."""
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(target), str(project)],
        check=True,
        capture_output=True,
    )
    return target


def run_cli(*args: str, pythonpath: list[Path] | None = None, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``python -m pyimgano ARGS`` in a subprocess."""
    full_env = dict(os.environ)
    for key in ("PYIMGANO_STRICT_PLUGINS", "PYIMGANO_DISABLE_PLUGINS"):
        full_env.pop(key, None)
    if pythonpath:
        full_env["PYTHONPATH"] = os.pathsep.join([str(p) for p in pythonpath] + [full_env.get("PYTHONPATH", "")])
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "pyimgano", *args], capture_output=True, text=True, env=full_env, timeout=timeout
    )


CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@contextmanager
def headless_chromium() -> Iterator:
    """A selenium WebDriver on headless Chromium (Debian's ``chromium`` and ``chromedriver``),
    with a fresh profile and nothing that reaches the network by itself; the test is
    skipped when Chromium is not installed."""
    import tempfile

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (requirements-dev.txt)")
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="pyimgano-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     f"--user-data-dir={profile}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
        try:
            yield driver
        finally:
            driver.quit()
