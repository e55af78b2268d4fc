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
# what `./dev.sh dist` builds: the install line users type and the four it ties together
DISTRIBUTIONS = ("pyimgano", "pyimgano-core", "pyimgano-datasets", "pyimgano-faiss", "pyimgano-anomalib")
# the README's install lines, as tests/release and .github/workflows/release.yml install them from the
# wheels: line -> (distribution whose wheel is installed, its extras, the plugins the line gives)
INSTALL_LINES = {
    "pyimgano": ("pyimgano", "", ("core",)),
    "pyimgano[faiss,datasets]": ("pyimgano", "faiss,datasets", ("core", "datasets", "faiss")),
    "pyimgano[anomalib,faiss]": ("pyimgano", "anomalib,faiss", ("anomalib", "core", "faiss")),
    "pyimgano-core[onnx]": ("pyimgano-core", "onnx", ("core",)),
}


# The only dependencies a test may skip for: the core's optional extras (pyimgano-core[ray],
# [onnx], [openvino], [report], [serve]) and the exporters' own tools. Every first-party distribution
# and what it requires (torch, timm, faiss, anomalib...) is installed by requirements-dev.txt,
# so a test imports them plainly and a broken install fails the suite.
OPTIONAL_MODULES = frozenset({"ray", "onnx", "onnxruntime", "onnxscript", "openvino", "matplotlib", "fastapi"})
NO_SKIP_ENV = "PYIMGANO_NO_SKIP"  # CI sets it: a missing optional dependency fails instead of skipping


def optional(module: str):
    """Import an optional dependency (one of :data:`OPTIONAL_MODULES`); the test is skipped
    when it is missing, except under ``PYIMGANO_NO_SKIP=1`` (CI), where that is a failure."""
    import importlib

    from pyimgano.errors import env_flag

    if module not in OPTIONAL_MODULES:
        raise ValueError(f"{module} is not an optional dependency; import it plainly")
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if env_flag(NO_SKIP_ENV):
            pytest.fail(f"{module} is not installed, and {NO_SKIP_ENV}=1 allows no skip: {exc}")
        pytest.skip(f"optional dependency {module} is not installed ({exc})")


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
    site: Path, dist_name: str, version: str, entry_points: dict[str, str], modules: dict[str, str],
    requires: tuple[str, ...] = (),
) -> Path:
    """Write a minimal installed distribution (dist-info + modules) into ``site``.

    ``entry_points`` maps entry-point names of the ``pyimgano`` group to ``module``
    values; ``modules`` maps module names to their source; ``requires`` are its
    ``Requires-Dist`` lines (``"pyimgano-core>=0.1,<0.2"``).
    """
    site.mkdir(parents=True, exist_ok=True)
    info = site / f"{dist_name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    requirements = "".join(f"Requires-Dist: {r}\n" for r in requires)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: {version}\n{requirements}")
    lines = ["[pyimgano]"] + [f"{name} = {value}" for name, value in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for module, source in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))
    return site


def clean_env() -> dict[str, str]:
    """This process's environment for a command run in another virtual environment: nothing that
    would make it see this one (PYTHONPATH, PYTHONHOME, VIRTUAL_ENV), and pip quiet and non-interactive."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


def wheel_of(dist_dir: Path, distribution: str) -> Path:
    """The one wheel of ``distribution`` in ``dist_dir`` (``pyimgano-core`` -> ``pyimgano_core-0.1.0-...whl``)."""
    stem = distribution.replace("-", "_")
    wheels = [w for w in dist_dir.glob(f"{stem}-*.whl") if w.name.split("-")[0] == stem]
    assert len(wheels) == 1, f"{distribution}: {wheels}"
    return wheels[0]


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
def headless_chromium(width: int = 1280, height: int = 900) -> Iterator[object]:
    """A selenium WebDriver on Debian's headless Chromium (``chromium`` and ``chromium-driver``
    packages), with a fresh profile and no network of its own (no updates, sync or QUIC);
    the test is skipped when Chromium is not installed (a failure under ``PYIMGANO_NO_SKIP=1``)."""
    import shutil
    import tempfile

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from pyimgano.errors import env_flag

    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        missing = f"{CHROMIUM} and {CHROMEDRIVER} are needed (apt-get install chromium chromium-driver)"
        if env_flag(NO_SKIP_ENV):
            pytest.fail(f"{missing}, and {NO_SKIP_ENV}=1 allows no skip")
        pytest.skip(missing)

    profile = tempfile.mkdtemp(prefix="pyimgano-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def benchtest_module():
    """``tests/benchmark/benchtest.py`` (the fake benchmark plugin and toy data), imported once by path."""
    import importlib.util

    if "benchtest" not in sys.modules:
        path = Path(__file__).resolve().parent / "benchmark" / "benchtest.py"
        spec = importlib.util.spec_from_file_location("benchtest", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["benchtest"] = module
        spec.loader.exec_module(module)
    return sys.modules["benchtest"]
