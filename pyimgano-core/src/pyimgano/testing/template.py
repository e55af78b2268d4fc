"""Create a new plugin distribution from the template shipped with pyimgano-core.

The template (``pyimgano/testing/templates/plugin``) is a working plugin: one detector, its
entry point, and a test running the conformance kit. ``{{...}}`` placeholders in file
contents are filled in, the ``src/package`` folder is renamed to the import package, and
the ``.tmpl`` suffix (which keeps the files from being imported or collected) is dropped.
"""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path

from pyimgano import __version__
from pyimgano.atomic import atomic_write

PLUGIN_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def template_root() -> Path:
    """The template folder inside the installed pyimgano package."""
    return Path(str(resources.files("pyimgano.testing") / "templates" / "plugin"))


def template_values(name: str) -> dict[str, str]:
    if not PLUGIN_NAME_RE.match(name):
        raise ValueError(
            f"plugin name {name!r} must be lower-case letters, digits and '_', starting with a letter "
            "(it becomes the entry-point name and the prefix of qualified names, 'name:component')"
        )
    major, minor = (int(part) for part in __version__.split(".")[:2])
    next_version = f"{major}.{minor + 1}" if major == 0 else f"{major + 1}"
    return {
        "plugin": name,
        "dist": f"pyimgano-{name.replace('_', '-')}",
        "package": f"pyimgano_{name}",
        "core_min": f"{major}.{minor}",
        "core_next": next_version,
    }


def render(text: str, values: dict[str, str]) -> str:
    out = text
    for key, value in values.items():
        out = out.replace("{{" + key + "}}", value)
    left = re.findall(r"\{\{\w+\}\}", out)
    if left:
        raise ValueError(f"template placeholders without a value: {sorted(set(left))}")
    return out


def new_plugin(name: str, out: str | os.PathLike = ".", *, force: bool = False) -> Path:
    """Write the plugin distribution ``pyimgano-NAME`` under ``out``; returns its folder."""
    values = template_values(name)
    project = Path(out) / values["dist"]
    if project.exists() and any(project.iterdir()) and not force:
        raise FileExistsError(f"{project} exists and is not empty; choose another --out or pass --force")
    root = template_root()
    files = sorted(p for p in root.rglob("*.tmpl") if p.is_file())
    if not files:
        raise FileNotFoundError(f"no template files under {root}; is pyimgano-core installed with its package data?")
    for source in files:
        parts = list(source.relative_to(root).parts)
        parts = [values["package"] if (i == 1 and parts[0] == "src" and part == "package") else part
                 for i, part in enumerate(parts)]
        target = project.joinpath(*parts).with_suffix("")
        atomic_write(target, render(source.read_text(encoding="utf-8"), values))  # --force replaces files whole
    return project
