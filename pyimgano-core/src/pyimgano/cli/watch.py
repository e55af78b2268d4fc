"""``pyimgano watch IN --model DIR --out OUT``: score every image a camera writes into IN,
exactly once, over kills and restarts (:mod:`pyimgano.service.watch`; docs/serve.md).

The model folder is loaded as ``pyimgano predict`` loads it. SIGTERM or Ctrl-C ends the
watch once the batch being scored is filed (exit 0); a kill at any moment loses nothing.
"""

from __future__ import annotations

import argparse
import signal

from pyimgano.cli.options import add_model_options
from pyimgano.service.settings import WatchSettings, settings_from_args

EPILOG = """\
examples:
  pyimgano watch /srv/camera1 --model model/ --out /srv/inspected/camera1
  pyimgano watch incoming/ --model exported/ --out results/ --once --settle-s 0

Each image of IN (top level; hidden files and other extensions are left alone), once its
size has not changed for --settle-s seconds, is scored and appended to OUT/results.csv and
OUT/results.jsonl (score, label, margin, p-value, regions...), its heatmap and mask written
to OUT/heatmaps/ and OUT/masks/, and the image moved to OUT/done/, or to OUT/failed/ with
NAME.reason.txt when it cannot be read or scored.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("inbox", metavar="IN", help="the folder images appear in")
    parser.add_argument("--model", required=True, metavar="MODEL_DIR",
                        help="a folder saved by pyimgano fit or written by pyimgano export")
    parser.add_argument("--out", required=True, metavar="OUT", help="where results and filed images go")
    parser.add_argument("--once", action="store_true", help="score what IN holds, then exit (instead of watching)")
    add_model_options(parser, WatchSettings)


def run(args: argparse.Namespace) -> int:
    from pyimgano.pipeline import load
    from pyimgano.service.watch import Watcher, check_folders

    settings = settings_from_args(WatchSettings, args)
    check_folders(args.inbox, args.out)
    pipe = load(args.model)
    watcher = Watcher(pipe, args.inbox, args.out, settings, log=lambda line: print(line, flush=True))
    previous = {sig: signal.signal(sig, lambda *_: watcher.stop()) for sig in (signal.SIGTERM, signal.SIGINT)}
    print(f"watching {watcher.inbox} with {pipe.traits.name} from {args.model}; results in {watcher.out}"
          + ("" if args.once else "; SIGTERM or Ctrl-C to stop"), flush=True)
    try:
        filed = watcher.run(once=args.once)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(f"stopped: {filed} image(s) filed into {watcher.out}", flush=True)
    return 0
