"""The ``pyimgano`` command line.

Every sub-command is registered by a plugin through ``pyimgano_register_commands`` (the
core's own ones by the built-in plugin, ``pyimgano._builtin``) as a
:class:`pyimgano.CommandSpec` whose factory has ``add_arguments(parser)`` and
``run(args) -> int``. The parser is built from the plugin listing (:mod:`pyimgano.listing`),
read from its cache when nothing changed, and only the chosen command's factory is
imported, so ``--help`` and ``list-plugins`` import no plugin however many are installed.
"""

from __future__ import annotations

import argparse
import sys

from pyimgano import __version__
from pyimgano.errors import PyimganoError
from pyimgano.listing import BUILTIN_PLUGIN, PluginListing, get_listing

# Commands of the project's other distributions: when one is missing, say what to install.
COMMAND_DISTRIBUTIONS = {"datasets": "pyimgano-datasets"}


def build_parser(listing: PluginListing, command: str | None = None) -> argparse.ArgumentParser:
    """The parser with every registered command; only ``command``'s options are added."""
    parser = argparse.ArgumentParser(
        prog="pyimgano",
        description="Visual anomaly detection for industrial inspection: benchmark, fit and predict.",
    )
    parser.add_argument("--version", action="version", version=f"pyimgano {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, providers in listing.commands().items():
        spec = providers[0][0]
        help_text = spec.summary
        if len(providers) > 1:
            help_text = f"(conflict: registered by plugins {', '.join(repr(rec.name) for _, rec in providers)})"
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            implementation = listing.load_command(name)
            implementation.add_arguments(sub_parser)
            sub_parser.set_defaults(_run=implementation.run)
    return parser


def missing_command(name: str, listing: PluginListing) -> str | None:
    """One line on why a command is missing, when that is known (None: a plain unknown name)."""
    dist = COMMAND_DISTRIBUTIONS.get(name)
    if dist is None:
        core = next((r for r in listing.plugins if r.name == BUILTIN_PLUGIN), None)
        if core is not None and core.status != "ok":
            return f"no command {name!r}: {core.provider()} is {core.status}: {_first_line(core.error)}"
        return None
    for record in listing.plugins:
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
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    listing = get_listing()  # strict mode fails the commands that use plugins, not the parser
    known = listing.commands()
    try:
        if command is not None and command not in known:
            message = missing_command(command, listing)
            if message:
                print(f"error: {message}", file=sys.stderr)
                return 2
        parser = build_parser(listing, command if command in known else None)
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
