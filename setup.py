"""The ``pyimgano`` distribution: what ``pip install pyimgano`` and its extras bring.

Its version and every requirement are derived from ``VERSION``, the one place a release
number is written: each distribution of the project is asked for in the release's
compatible range (``~=X.Y.Z``: that release or a later patch release of the same minor), so
the install line ties the five distributions of one release together while each plugin
stays installable on its own.
"""

from pathlib import Path

from setuptools import setup

VERSION = (Path(__file__).resolve().parent / "VERSION").read_text(encoding="ascii").strip()
CORE = "pyimgano-core"
# extra -> the plugin distribution it brings
PLUGIN_EXTRAS = {"datasets": "pyimgano-datasets", "faiss": "pyimgano-faiss", "anomalib": "pyimgano-anomalib"}
# extras passed through to pyimgano-core's own extras of the same name (pyimgano-core/pyproject.toml)
CORE_EXTRAS = ("onnx", "openvino", "ray", "report", "serve")


def _in_release(distribution: str) -> str:
    return f"{distribution}~={VERSION}"


extras = {name: [_in_release(dist)] for name, dist in PLUGIN_EXTRAS.items()}
extras.update({name: [_in_release(f"{CORE}[{name}]")] for name in CORE_EXTRAS})
extras["all"] = sorted({req for reqs in extras.values() for req in reqs})

setup(version=VERSION, install_requires=[_in_release(CORE)], extras_require=extras)
