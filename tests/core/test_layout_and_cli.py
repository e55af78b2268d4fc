"""Repository layout, the core without heavy libraries, and the command line basics."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from pyimgano_testutils import REPO_ROOT, run_cli

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

DISTS = {"pyimgano-core": "pyimgano", "pyimgano-datasets": "pyimgano_datasets",
         "pyimgano-faiss": "pyimgano_faiss", "pyimgano-anomalib": "pyimgano_anomalib"}


@pytest.mark.parametrize("folder, package", sorted(DISTS.items()))
def test_each_distribution_has_its_own_project_and_src_layout(folder, package):
    project = tomllib.loads((REPO_ROOT / folder / "pyproject.toml").read_text())["project"]
    assert project["name"] == folder and "version" in project["dynamic"]  # from VERSION (tests/packaging)
    assert (REPO_ROOT / folder / "src" / package / "__init__.py").is_file()
    assert "pyimgano" in project["entry-points"]


def test_core_dependencies_are_light():
    deps = " ".join(tomllib.loads((REPO_ROOT / "pyimgano-core/pyproject.toml").read_text())["project"]["dependencies"])
    for heavy in ("torch", "faiss", "anomalib", "timm", "lightning"):
        assert heavy not in deps


# distribution name -> the module it provides, for the core's dependencies
IMPORT_NAMES = {"numpy": "numpy", "pydantic": "pydantic", "pluggy": "pluggy", "pillow": "PIL", "scipy": "scipy",
                "rich": "rich", "tomli": "tomli", "ray": "ray", "onnxruntime": "onnxruntime", "openvino": "openvino",
                "matplotlib": "matplotlib", "packaging": "packaging", "fastapi": "fastapi", "uvicorn": "uvicorn",
                "python-multipart": "python_multipart", "prometheus-client": "prometheus_client"}


def test_core_declares_only_what_it_imports():
    """Every dependency of pyimgano-core (extras included) is imported somewhere in ``pyimgano``."""
    import re

    project = tomllib.loads((REPO_ROOT / "pyimgano-core/pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    source = "\n".join(p.read_text() for p in (REPO_ROOT / "pyimgano-core/src/pyimgano").rglob("*.py"))
    for requirement in requirements:
        dist = re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0).lower()
        assert dist in IMPORT_NAMES, f"{dist}: add its module name to IMPORT_NAMES"
        module = IMPORT_NAMES[dist]
        assert re.search(rf"^\s*(import|from) {module}\b", source, flags=re.M), f"pyimgano never imports {module}"


def test_core_works_when_heavy_libraries_cannot_be_imported(example_plugin_site):
    """Simulates `pip install pyimgano-core` alone: torch, faiss and anomalib are absent."""
    code = textwrap.dedent(f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in ('torch', 'faiss', 'anomalib', 'lightning', 'timm'):
                    raise ImportError('blocked: ' + name)
        sys.meta_path.insert(0, Block())
        sys.path.insert(0, {str(example_plugin_site)!r})
        import numpy as np, pyimgano
        from pyimgano.cli import main
        assert main(['list-plugins', '--json']) == 0
        det = pyimgano.create_detector('example:mad', image_size=16)
        det.fit([np.full((20, 20, 3), 100, np.uint8)] * 3)
        print('SCORE', det.decision_function([np.full((20, 20, 3), 200, np.uint8)])[0])
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "SCORE" in result.stdout


def test_cli_help_version_and_module_entry():
    result = run_cli("--help")
    assert result.returncode == 0 and "list-plugins" in result.stdout
    assert run_cli("--version").stdout.startswith("pyimgano ")
    result = run_cli()
    assert result.returncode == 0 and "usage" in result.stdout.lower()


def test_cli_unknown_command_and_flag_are_clear_errors():
    result = run_cli("no-such-command")
    assert result.returncode == 2 and "invalid choice" in result.stderr
    result = run_cli("list-plugins", "--jsn")
    assert result.returncode == 2 and "--jsn" in result.stderr


def test_console_script_is_installed():
    from pathlib import Path

    script = Path(sys.executable).parent / "pyimgano"
    exe = script if script.exists() else "pyimgano"
    result = subprocess.run([str(exe), "list-plugins", "--json"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and '"plugins"' in result.stdout
