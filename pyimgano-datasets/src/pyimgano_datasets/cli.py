"""``pyimgano datasets``: registered data sets, what a root holds, layout checks, downloads.

The plugin registers this module as the ``datasets`` command (``pyimgano_register_commands``
in :mod:`pyimgano_datasets.plugin`); it is imported only when the command runs.

    pyimgano datasets                               # registered data sets
    pyimgano datasets --root DIR [--dataset NAME]   # categories and counts (layout guessed)
    pyimgano datasets check NAME --root DIR         # every problem, in one run
    pyimgano datasets download visa --root DIR      # fetch, verify, unpack
    pyimgano datasets prepare visa --root DIR --out DIR2   # VisA -> MVTec layout
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pyimgano.cli.options import add_json_option

    parser.add_argument("--root", type=Path, help="show the categories and counts of the data set in DIR")
    parser.add_argument("--dataset", help="show this data set (with --root: default guessed from the layout)")
    parser.add_argument("--category", help="only this category")
    add_json_option(parser, "what is shown")
    sub = parser.add_subparsers(dest="action", metavar="ACTION")

    check = sub.add_parser("check", help="list every problem of a data set on disk")
    check.add_argument("name", help="data set name, e.g. mvtec, visa, btad, folder")
    _shared(check)
    check.add_argument("--quick", action="store_true", help="list files and read headers only (no full decode)")

    download = sub.add_parser("download", help="download and unpack a data set (VisA); licence instructions otherwise")
    download.add_argument("name", help="visa (public archive), mvtec or btad (licence instructions)")
    _shared(download)
    download.add_argument("--url", help="archive URL (a mirror); needs --sha256")
    download.add_argument("--sha256", help="expected SHA-256 of the archive")
    download.add_argument("--keep-archive", action="store_true", help="keep the archive after unpacking")
    download.add_argument("--no-progress", action="store_true", help="no progress bar")

    prepare = sub.add_parser("prepare", help="write a data set in the MVTec layout (visa)")
    prepare.add_argument("name", choices=["visa"], help="data set to convert")
    _shared(prepare)
    prepare.add_argument("--out", type=Path, required=True, help="output folder (MVTec layout)")
    prepare.add_argument("--copy", action="store_true", help="copy images instead of hard-linking them")


def _shared(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: a --root given before the action is not overwritten by this default
    parser.add_argument("--root", type=Path, default=argparse.SUPPRESS, help="data set folder")
    parser.add_argument("--category", default=argparse.SUPPRESS, help="only this category")
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable JSON")


def run(args: argparse.Namespace) -> int:
    action = getattr(args, "action", None)
    if action == "check":
        return _check(args)
    if action == "download":
        return _download(args)
    if action == "prepare":
        return _prepare(args)
    if args.root is not None or args.dataset:
        return _show(args)
    return _list(args)


# -- listing ---------------------------------------------------------------------------
def _list(args: argparse.Namespace) -> int:
    from pyimgano.plugins import get_registry

    rows = []
    for qualified, (spec, record) in sorted(get_registry().components("dataset").items()):
        rows.append(
            {
                "name": spec.name,
                "qualified_name": qualified,
                "plugin": record.name,
                "summary": spec.summary,
                "needs_root": spec.needs_root,
                "categories": list(spec.categories),
            }
        )
    if args.json:
        print(json.dumps({"datasets": rows}, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="pyimgano data sets")
    for column in ("name", "plugin", "root", "summary"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["name"], row["plugin"], "required" if row["needs_root"] else "optional", row["summary"])
    Console(soft_wrap=False).print(table)
    return 0


def guess_dataset(root: Path) -> str:
    """The data set name a folder's layout suggests (visa, btad, mvtec or folder)."""
    if (root / "split_csv" / "1cls.csv").is_file():
        return "visa"
    subdirs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")] if root.is_dir() else []
    if any((p / "train" / "ok").is_dir() for p in subdirs):
        return "btad"
    if any((p / "train").is_dir() or (p / "test").is_dir() for p in subdirs):
        return "mvtec"
    return "folder"


def _open(name: str, root: Path | None, category: str | None) -> Any:
    from pyimgano.factories import load_dataset

    return load_dataset(name, root=root, category=category)


def _show(args: argparse.Namespace) -> int:
    name = args.dataset or guess_dataset(args.root)
    # root stays None for data sets that need none (synthetic: its cache)
    dataset = _open(name, args.root, args.category)
    info = dataset.info
    if args.json:
        print(json.dumps({"dataset": name, **json.loads(info.model_dump_json())}, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{name} at {info.root or args.root or '-'}")
    for column in ("category", "train good", "test good", "test defect", "defect types"):
        table.add_column(column, justify="right" if column.startswith(("train", "test")) else "left")
    totals = [0, 0, 0]
    for cat in info.categories:
        counts = info.counts.get(cat, {})
        values = [counts["train"].good if "train" in counts else 0]
        values += [counts["test"].good, counts["test"].defect] if "test" in counts else [0, 0]
        totals = [t + v for t, v in zip(totals, values)]
        table.add_row(cat, *map(str, values), ", ".join(info.defect_types.get(cat, [])))
    if len(info.categories) > 1:
        table.add_row("[b]total[/b]", *map(str, totals), "")
    Console(soft_wrap=False).print(table)
    print(f"masks: {'yes' if info.has_masks else 'no'}")
    return 0


# -- check -----------------------------------------------------------------------------
def _check(args: argparse.Namespace) -> int:
    from pyimgano.errors import DatasetError

    root = getattr(args, "root", None)
    category = getattr(args, "category", None)
    as_json = getattr(args, "json", False)
    try:
        dataset = _open(args.name, root, category)
        problems = [str(p) for p in dataset.check(read_pixels=not args.quick)]
        n_images = 0 if problems else sum(
            len(dataset.samples(split, cat)) for cat in dataset.categories for split in ("train", "test")
        )
    except DatasetError as exc:
        problems, n_images = [str(exc).strip()], 0
    if as_json:
        print(json.dumps({"dataset": args.name, "root": str(root) if root else None, "problems": problems}, indent=2))
    elif problems:
        print(f"{len(problems)} problem(s) in {args.name} data set at {root}:")
        for problem in problems:
            print(f"  - {problem}")
    else:
        print(f"{args.name} data set at {root}: no problems in {n_images} images")
    return 1 if problems else 0


# -- download / prepare ----------------------------------------------------------------
def _download(args: argparse.Namespace) -> int:
    from pyimgano_datasets.download import LICENCE_INSTRUCTIONS, download

    if args.name in LICENCE_INSTRUCTIONS:
        print(LICENCE_INSTRUCTIONS[args.name])
        return 1
    root = getattr(args, "root", None)
    if root is None:
        print("error: --root DIR is required (where to unpack the data set)", file=sys.stderr)
        return 2
    found = download(
        args.name,
        root,
        url=args.url,
        sha256=args.sha256,
        keep_archive=args.keep_archive,
        progress=not args.no_progress,
    )
    print(f"{args.name} is ready at {found}; use it with --root {found}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from pyimgano_datasets.visa import prepare_visa

    root = getattr(args, "root", None)
    if root is None:
        print("error: --root DIR (the VisA folder with split_csv/) is required", file=sys.stderr)
        return 2
    out = prepare_visa(root, args.out, link=not args.copy)
    print(f"wrote the MVTec layout to {out}; use it with: pyimgano datasets --root {out} --dataset mvtec")
    return 0
