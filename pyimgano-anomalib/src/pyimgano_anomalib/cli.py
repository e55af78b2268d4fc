"""``pyimgano anomalib-files``: which files anomalib models would download, where to fetch
them, where to put them and which parameter points at them (light: no torch)."""

from __future__ import annotations

import argparse
import json

from pyimgano.cli.options import add_json_option
from pyimgano_anomalib.offline import FILES, format_offline_files, offline_files


def add_arguments(parser: argparse.ArgumentParser) -> None:
    models = sorted({f.model for f in FILES})
    parser.add_argument("model", nargs="?", choices=models, help="only this model's files")
    add_json_option(parser, "the files")


def run(args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps(offline_files(args.model), indent=2))
    else:
        print(format_offline_files(args.model), end="")
    return 0
