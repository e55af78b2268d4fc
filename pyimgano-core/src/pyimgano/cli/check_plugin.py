"""``pyimgano check-plugin``: run the conformance kit against an installed plugin."""

from __future__ import annotations

import argparse
import json


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="NAME_OR_COMPONENT",
                        help="a plugin name (checks all its components) or one component, 'plugin:name'")
    parser.add_argument("--set", dest="params", action="append", default=[], metavar="KEY=VALUE",
                        help="a parameter (repeatable) on top of the spec's check_params: key=value for every "
                             "component that has it, NAME.key=value for one; values are JSON where they parse")
    parser.add_argument("--known-failure", dest="known", action="append", type=_key_value, default=[],
                        metavar="CHECK=REASON", help="declare a check known to fail, with the reason")
    parser.add_argument("--check", dest="checks", action="append", metavar="CHECK",
                        help="run only this check (repeatable)")
    parser.add_argument("--root", help="data set root folder (for data set plugins)")
    parser.add_argument("--category", help="data set category (default: the first)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def run(args: argparse.Namespace) -> int:
    from pyimgano.benchmark.config import parse_assignment
    from pyimgano.testing.plugins import check_plugin, summarize

    params: dict[str, object] = {}
    component_params: dict[str, dict[str, object]] = {}
    for item in args.params:
        name, key, value = parse_assignment(item)
        (component_params.setdefault(name, {}) if name else params)[key] = value
    results = check_plugin(
        args.target,
        params=params,
        component_params=component_params,
        known_failures=dict(args.known),
        root=args.root,
        category=args.category,
        checks=args.checks,
    )
    counts = summarize(results)
    if args.json:
        print(json.dumps({"target": args.target, "summary": counts, "results": [r.as_dict() for r in results]},
                         indent=2))
    else:
        _print_table(args.target, results, counts)
    return 1 if counts.get("failed") else 0


_STYLES = {"passed": "green", "failed": "bold red", "known failure": "yellow", "fixed": "cyan",
           "not applicable": "dim"}


def _print_table(target: str, results: list, counts: dict[str, int]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"pyimgano check-plugin {target}")
    for column in ("component", "check", "status", "s", "message"):
        table.add_column(column, justify="right" if column == "s" else "left", overflow="fold",
                         no_wrap=column != "message")
    for r in results:
        table.add_row(r.component, r.check, f"[{_STYLES[r.status]}]{r.status}[/]", f"{r.seconds:.2f}",
                      r.message.replace("[", "\\["))
    console = Console(soft_wrap=False)
    console.print(table)
    order = ("passed", "failed", "known failure", "fixed", "not applicable")
    console.print(", ".join(f"{counts[s]} {s}" for s in order if counts.get(s)) or "no checks ran")
