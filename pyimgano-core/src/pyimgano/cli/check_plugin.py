"""``pyimgano check-plugin``: run the conformance kit against an installed plugin."""

from __future__ import annotations

import argparse
import json
from typing import Any


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pyimgano.cli.options import add_json_option, add_set_option

    parser.add_argument("target", metavar="NAME_OR_COMPONENT",
                        help="a plugin name (checks all its components) or one component, 'plugin:name'")
    add_set_option(parser, "a parameter (repeatable) on top of the spec's check_params: key=value for every "
                           "component that has it, NAME.key=value for one; values are JSON where they parse")
    parser.add_argument("--known-failure", dest="known", action="append", type=_key_value, default=[],
                        metavar="CHECK=REASON", help="declare a check known to fail, with the reason")
    parser.add_argument("--check", dest="checks", action="append", metavar="CHECK",
                        help="run only this check (repeatable)")
    parser.add_argument("--root", help="data set root folder (for data set plugins)")
    parser.add_argument("--category", help="data set category (default: the first)")
    add_json_option(parser, "the results")


def run(args: argparse.Namespace) -> int:
    from pyimgano.cli.options import parse_assignment
    from pyimgano.testing.plugins import check_plugin, summarize

    params: dict[str, object] = {}
    component_params: dict[str, dict[str, object]] = {}
    for item in args.assignments:
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


MIN_MESSAGE_WIDTH = 40  # narrower than this, the table gives way to one block per component


def _print_table(target: str, results: list, counts: dict[str, int], console: Any = None) -> None:
    """A table where the console leaves the message column room; else, for 80-column
    terminals, pipes and CI logs, one block per component with each message on its own
    lines, so no message is cut into word fragments."""
    from rich.console import Console

    from pyimgano.terminal import natural_width

    console = console or Console(soft_wrap=False)
    title = f"pyimgano check-plugin {target}"
    longest = max((len(r.message) for r in results), default=0)
    room = console.width - natural_width(_table(title, results, with_message=False)) - 3  # 3: padding, border
    if longest == 0 or room >= min(longest, MIN_MESSAGE_WIDTH):
        console.print(_table(title, results, with_message=True))
    else:
        _print_blocks(console, title, results)
    order = ("passed", "failed", "known failure", "fixed", "not applicable")
    console.print(", ".join(f"{counts[s]} {s}" for s in order if counts.get(s)) or "no checks ran")


def _table(title: str, results: list, with_message: bool) -> Any:
    from rich.table import Table

    table = Table(title=title)
    for column in ("component", "check", "status", "s"):
        table.add_column(column, justify="right" if column == "s" else "left", no_wrap=True)
    if with_message:
        table.add_column("message", overflow="fold")
    for r in results:
        cells = [r.component, r.check, f"[{_STYLES[r.status]}]{r.status}[/]", f"{r.seconds:.2f}"]
        table.add_row(*cells, *([r.message.replace("[", "\\[")] if with_message else []))
    return table


def _print_blocks(console: Any, title: str, results: list) -> None:
    import textwrap

    from rich.text import Text

    console.print(Text(title, style="bold italic"))
    check_w = max(len(r.check) for r in results)
    status_w = max(len(r.status) for r in results)
    component = None
    for r in results:
        if r.component != component:
            component = r.component
            console.print(Text(component, style="bold"))
        line = Text("  ")
        line.append(r.status.ljust(status_w), style=_STYLES[r.status])
        line.append(f"  {r.check.ljust(check_w)}  {r.seconds:.2f} s")
        console.print(line, soft_wrap=True)
        if r.message:  # words stay whole (a path longer than the line too: the terminal wraps it)
            text = textwrap.fill(r.message, max(20, console.width - 4), initial_indent="    ",
                                 subsequent_indent="    ", break_long_words=False, break_on_hyphens=False)
            console.print(Text(text), soft_wrap=True)
