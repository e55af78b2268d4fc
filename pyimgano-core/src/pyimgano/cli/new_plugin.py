"""``pyimgano new-plugin NAME --out DIR``: a working plugin distribution from the template."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="plugin name: lower-case letters, digits, '_' (the entry-point name)")
    parser.add_argument("--out", default=".", help="folder to create pyimgano-NAME in (default: .)")
    parser.add_argument("--force", action="store_true", help="write into an existing non-empty folder")


def run(args: argparse.Namespace) -> int:
    from pyimgano.testing.template import new_plugin

    try:
        project = new_plugin(args.name, args.out, force=args.force)
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"created {project}")
    print("next:")
    print(f"  pip install -e {project}[test]")
    print(f"  pyimgano check-plugin {args.name}")
    print(f"  pytest {project / 'tests'}")
    return 0
