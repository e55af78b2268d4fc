"""``pyimgano serve``: keep a saved pipeline loaded and score images over HTTP (docs/serve.md).

The model folder is loaded as ``pyimgano predict`` loads it (:func:`pyimgano.pipeline.load`:
a torch model or an exported one on the torch-free runtime); the service itself is
:mod:`pyimgano.service.app`. SIGTERM (or Ctrl-C) stops accepting connections, answers the
requests already accepted, and exits 0.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import socket
import sys
from pathlib import Path

from pyimgano.cli.options import add_model_options
from pyimgano.errors import InvalidParams
from pyimgano.service.settings import API_KEY_ENV, ServeSettings, settings_from_args

EXTRA_HINT = "pyimgano serve needs the serve extra: pip install 'pyimgano-core[serve]'"

EPILOG = f"""\
examples:
  pyimgano serve --model model/
  pyimgano serve --model exported/ --host 0.0.0.0 --port 8080 --api-key-file /etc/pyimgano/key

  curl -F image=@part.png http://127.0.0.1:8000/v1/predict

Endpoints: POST /v1/predict (?maps=true adds heatmap and mask PNGs), GET /v1/model,
/metrics (Prometheus), /healthz, /readyz; the review page at /, the OpenAPI page at /docs.
The API key (--api-key-file, or the {API_KEY_ENV} variable) is then required on every
endpoint but /healthz and /readyz, as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("--model", required=True, metavar="MODEL_DIR",
                        help="a folder saved by pyimgano fit or written by pyimgano export")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1, this machine only; 0.0.0.0 for every interface)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one, printed)")
    parser.add_argument("--api-key-file", metavar="FILE",
                        help=f"a file whose first line is the API key (else the {API_KEY_ENV} variable, if set)")
    parser.add_argument("--warmup-image", metavar="IMAGE",
                        help="the image scored before /readyz says ready (default: a grey image of the "
                             "calibration images' size)")
    add_model_options(parser, ServeSettings)


def read_api_key(path: str | None) -> str | None:
    """The API key: the first line of ``path``, else ``$PYIMGANO_API_KEY``, else None."""
    from pyimgano.userfiles import read_text

    if path is None:
        key = os.environ.get(API_KEY_ENV, "").strip()
        return key or None
    lines = read_text(Path(path).expanduser(), InvalidParams).splitlines()
    key = lines[0].strip() if lines else ""
    if not key:
        raise InvalidParams(f"--api-key-file {path}: the first line is empty; write the API key there")
    return key


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, api_key: str | None) -> str | None:
    """One line when ``host`` reaches beyond this machine and no API key guards the model."""
    if is_loopback(host) or api_key is not None:
        return None
    return (f"warning: listening on {host} (not this machine only) without an API key: anyone who reaches it can "
            f"use the model; set --api-key-file or {API_KEY_ENV}")


def listen(host: str, port: int) -> socket.socket:
    """A bound, listening socket (so that port 0 gives a port we can print)."""
    if not 0 <= port <= 65535:
        raise InvalidParams(f"--port {port}: must be between 0 and 65535")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise InvalidParams(f"--host {host}: not an address of this machine ({exc.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise InvalidParams(f"--host {host} --port {port}: cannot listen there ({exc.strerror})") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from pyimgano.service.app import create_app
    except ImportError as exc:
        raise InvalidParams(f"{EXTRA_HINT} ({exc})") from None
    from pyimgano.images import read_image
    from pyimgano.pipeline import load

    settings = settings_from_args(ServeSettings, args)
    api_key = read_api_key(args.api_key_file)
    warmup = read_image(args.warmup_image) if args.warmup_image else None
    sock = listen(args.host, args.port)  # before the model loads: a taken port fails at once
    pipe = load(args.model)
    fatal: list[BaseException] = []

    def stop(exc: BaseException) -> None:
        fatal.append(exc)
        server.should_exit = True

    app = create_app(pipe, args.model, settings, api_key=api_key, warmup=warmup, on_fatal=stop)
    config = uvicorn.Config(app, log_level="warning", access_log=False, limit_concurrency=settings.max_connections,
                            timeout_keep_alive=5, timeout_graceful_shutdown=settings.timeout_s + 5)
    server = uvicorn.Server(config)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    # uvicorn re-raises the signal that stopped it once it has drained; with a handler of our
    # own (which also stops a server not started yet), SIGTERM ends in exit status 0
    previous = signal.signal(signal.SIGTERM, lambda *_: setattr(server, "should_exit", True))
    warning = exposure_warning(args.host, api_key)
    if warning:
        print(warning, file=sys.stderr)
    print(f"serving {pipe.traits.name} from {args.model} on http://{shown}:{port} (review page /, API /docs); "
          "SIGTERM or Ctrl-C to stop", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)
        sock.close()
    if fatal:
        raise InvalidParams(f"warm-up failed, the model cannot score: {fatal[0]}")
    print("stopped: every accepted request was answered", flush=True)
    return 0
