"""``pyimgano list-plugins``: every plugin, its status and what it registers.

It reads the plugin listing (:mod:`pyimgano.listing`): from its cache when nothing
discovery depends on changed, so a warm listing imports no plugin and no pydantic.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pyimgano.cli.options import add_json_option

    add_json_option(parser, "the plugins")


def run(args: argparse.Namespace) -> int:
    from pyimgano.cli import current_listing

    listing = current_listing()  # strict mode: still show what was found, then fail
    strict_error = listing.strict_error
    records = listing.rows()
    if args.json:
        print(json.dumps({"plugins": records}, indent=2))
    else:
        _print_table(records)
    if strict_error:
        print(f"error: {strict_error}", file=sys.stderr)
        return 1
    return 0


def _print_table(records: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="pyimgano plugins", show_lines=True)
    for column in ("plugin", "distribution", "version", "status", "registers"):
        table.add_column(column)
    styles = {"ok": "green", "error": "bold red", "blocked": "yellow"}
    for rec in records:
        parts = []
        for kind in ("detectors", "datasets", "metrics", "postprocessors", "commands"):
            if rec[kind]:
                parts.append(f"{kind}: {', '.join(rec[kind])}")
        if rec["error"]:
            parts.append(f"[red]{rec['error']}[/red]")
        table.add_row(
            rec["name"],
            rec["distribution"] or "-",
            rec["version"] or "-",
            f"[{styles[rec['status']]}]{rec['status']}[/]",
            "\n".join(parts) or "-",
        )
    Console(soft_wrap=False).print(table)
