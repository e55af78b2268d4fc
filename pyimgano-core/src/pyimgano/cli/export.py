"""``pyimgano export``: write a saved model as an ONNX graph (or OpenVINO IR) for the torch-free runtime."""

from __future__ import annotations

import argparse
import json

EPILOG = """\
examples:
  pyimgano export --model model/ --out model-onnx/
  pyimgano export --model model/ --format openvino --out model-ov/
  pyimgano export --list

The folder holds the graph, pyimgano-export.json (input geometry, outputs, source detector,
threshold, checksums) and pyimgano-model.json, so that on a machine with only
pip install 'pyimgano-core[onnx]' (no torch):
  pyimgano predict --model model-onnx/ images/ --out predictions/
Before the folder is written, the runtime and the source detector score two generated images
and must agree (scores within 1e-4 relative); --no-check skips that. See docs/deploy.md.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pyimgano.cli.options import add_json_option
    from pyimgano.specs import EXPORT_FORMATS

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("--model", metavar="MODEL_DIR", help="a directory saved by pyimgano fit (or Detector.save)")
    parser.add_argument("--out", metavar="DIR", help="the export folder (replaced when the export is complete)")
    parser.add_argument("--format", default=EXPORT_FORMATS[0], choices=EXPORT_FORMATS,
                        help=f"graph format (default {EXPORT_FORMATS[0]})")
    parser.add_argument("--no-check", action="store_true", help="do not compare the runtime with the source detector")
    parser.add_argument("--list", action="store_true", help="list the detectors that can be exported, and exit")
    add_json_option(parser, "the exportable detectors (with --list) or the export's summary")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from pyimgano.errors import InvalidParams
    from pyimgano.export import export_model, exportable_detectors
    from pyimgano.runtime.manifest import read_manifest

    if args.list:
        found = exportable_detectors()
        if args.json:
            print(json.dumps({name: list(formats) for name, formats in found.items()}, indent=2))
        else:
            for name, formats in found.items():
                print(f"{name}: {', '.join(formats)}")
        return 0
    if not args.model or not args.out:
        raise InvalidParams("pyimgano export needs --model MODEL_DIR and --out DIR (or --list)")
    console = Console(stderr=True)
    with console.status("exporting...") as status:
        out = export_model(args.model, args.out, format=args.format, check=not args.no_check,
                           log=lambda message: status.update(message + "..."))
    manifest = read_manifest(out)
    size = sum(entry.bytes for entry in manifest.files.values())
    if args.json:
        print(json.dumps({"out": str(out), "graph": manifest.graph, "bytes": size,
                          "source": manifest.source.model_dump(), "check": manifest.check,
                          "notes": manifest.notes}, indent=2))
        return 0
    line = f"exported {manifest.source.detector} to {out} ({manifest.export_format}: {manifest.graph}, {size / 2**20:.1f} MiB)"
    check = manifest.check
    if check:
        line += f"; checked on {len(check['images'])} images: scores within {check['max_score_rel_diff']:.1e} relative"
        if check.get("max_map_abs_diff") is not None:
            line += f", maps within {check['max_map_abs_diff']:.1e}"
    print(line)
    for note in manifest.notes:
        print(f"note: {note}")
    return 0
