"""The ``pyimgano`` command line.

Each sub-command lives in its own module with ``add_arguments(parser)`` and
``run(args) -> int``; only the chosen command's module is imported, so ``--help`` and
``list-plugins`` stay fast however many plugins are installed.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

from pyimgano import __version__
from pyimgano.errors import PyimganoError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "list-plugins": ("pyimgano.cli.list_plugins", "list installed plugins and what they register"),
    "check-plugin": ("pyimgano.cli.check_plugin", "run the conformance checks against a plugin or component"),
    "new-plugin": ("pyimgano.cli.new_plugin", "create a plugin distribution from the template"),
    "benchmark": ("pyimgano.cli.benchmark", "benchmark detectors on data sets: metrics, tables, report.html"),
    "fit": ("pyimgano.cli.fit", "train a detector on a folder of good images and save it"),
    "predict": ("pyimgano.cli.predict", "score images with a saved model: CSV, heatmaps, masks"),
    "datasets": ("pyimgano.cli.datasets", "list data sets; show, check, download or prepare one on disk"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyimgano",
        description="Visual anomaly detection for industrial inspection: benchmark, fit and predict.",
    )
    parser.add_argument("--version", action="version", version=f"pyimgano {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            module = import_module(module_name)
            module.add_arguments(sub_parser)
            sub_parser.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except PyimganoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
