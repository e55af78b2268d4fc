"""The ``pyimgano`` command line.

Every sub-command is registered by a plugin through ``pyimgano_register_commands`` (the
core's own ones by the built-in plugin, ``pyimgano._builtin``) as a
:class:`pyimgano.CommandSpec` whose factory has ``add_arguments(parser)`` and
``run(args) -> int``. Only the chosen command's factory is imported, so ``--help`` and
``list-plugins`` stay fast however many plugins are installed.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from pyimgano import __version__
from pyimgano.errors import PyimganoError

if TYPE_CHECKING:
    from pyimgano.plugins import Registry

# Commands of the project's other distributions: when one is missing, say what to install.
COMMAND_DISTRIBUTIONS = {"datasets": "pyimgano-datasets"}


def build_parser(registry: Registry, command: str | None = None) -> argparse.ArgumentParser:
    """The parser with every registered command; only ``command``'s options are added."""
    parser = argparse.ArgumentParser(
        prog="pyimgano",
        description="Visual anomaly detection for industrial inspection: benchmark, fit and predict.",
    )
    parser.add_argument("--version", action="version", version=f"pyimgano {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, providers in registry.commands().items():
        spec = providers[0][0]
        help_text = spec.summary
        if len(providers) > 1:
            help_text = f"(conflict: registered by plugins {', '.join(repr(rec.name) for _, rec in providers)})"
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            implementation = registry.load_command(name)
            implementation.add_arguments(sub_parser)
            sub_parser.set_defaults(_run=implementation.run)
    return parser


def missing_command(name: str, registry: Registry) -> str | None:
    """One line on why a command is missing, when that is known (None: a plain unknown name)."""
    from pyimgano.plugins import BUILTIN_PLUGIN

    dist = COMMAND_DISTRIBUTIONS.get(name)
    if dist is None:
        core = next((r for r in registry.plugins if r.name == BUILTIN_PLUGIN), None)
        if core is not None and core.status != "ok":
            return f"no command {name!r}: {core.provider()} is {core.status}: {_first_line(core.error)}"
        return None
    for record in registry.plugins:
        if record.distribution == dist:
            if record.status != "ok":
                return (f"'pyimgano {name}' comes from {dist}, whose plugin {record.name!r} is {record.status}: "
                        f"{_first_line(record.error)}")
            return f"{dist} {record.version or '?'} does not provide 'pyimgano {name}'; upgrade it: pip install -U {dist}"
    return f"'pyimgano {name}' needs the {dist} distribution: pip install {dist}"


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else "no reason given"


def main(argv: list[str] | None = None) -> int:
    from pyimgano.plugins import get_registry

    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    registry = get_registry(strict=False)  # strict mode fails the commands that use plugins
    known = registry.commands()
    try:
        if command is not None and command not in known:
            message = missing_command(command, registry)
            if message:
                print(f"error: {message}", file=sys.stderr)
                return 2
        parser = build_parser(registry, command if command in known else None)
        args = parser.parse_args(argv)
        if not getattr(args, "command", None):
            parser.print_help()
            return 0
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except PyimganoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
