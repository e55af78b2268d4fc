"""Plugin discovery for the command line, in a child interpreter with a time bound.

When the saved listing (:mod:`pyimgano.listing`) cannot be used, the command line must
import every plugin to list them. Done in its own process, one plugin could take every
command down: one that hangs at import would hang them all, one that prints at import
would mix its text into ``list-plugins --json``, one that ends the interpreter would end
the command. So the command line discovers in a child interpreter:

- the child's standard output is its standard error, so whatever a plugin writes (Python
  ``print`` or C code) reaches the user's terminal and never the command's output; the
  child answers on a pipe of its own;
- the child names each plugin before importing it; when no word comes for
  ``PYIMGANO_PLUGIN_TIMEOUT`` seconds (default :data:`DEFAULT_TIMEOUT`), the child is
  killed, the plugin it was importing is recorded as an error naming it, and discovery
  starts again without it; a plugin whose import ends the child is recorded the same way;
- the plugins given up on are skipped by this process's own registry too
  (:func:`pyimgano.listing.unresponsive_plugins`), so the command that follows (``fit``,
  ``predict``) does not hang on them, and each is named in one ``warning:`` line.

A listing with such a plugin is never saved (it has an error), so every command pays
the timeout until the plugin is fixed or blocked (``PYIMGANO_DISABLE_PLUGINS``), as the
warning says. ``PYIMGANO_PLUGIN_TIMEOUT=0`` discovers in this process, as library code
always does. A child that fails before any plugin is named (it cannot start, or pyimgano
itself fails to import there) is no plugin's fault: discovery then runs in this process.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

from pyimgano.listing import DISABLE_ENV, PluginListing, discover_here, import_finders, mark_unresponsive

TIMEOUT_ENV = "PYIMGANO_PLUGIN_TIMEOUT"
DEFAULT_TIMEOUT = 30.0  # seconds one plugin's import may take (and the child's start)
_MAX_ATTEMPTS = 16  # a fresh child per plugin given up on; beyond this, discover here

# The child reads its request first, so it imports pyimgano from the parent's sys.path.
_CHILD = ("import json, sys; request = json.loads(sys.stdin.readline()); sys.path[:] = request['path']; "
          "from pyimgano.discovery import child_main; child_main(request)")


def plugin_timeout() -> float:
    """``PYIMGANO_PLUGIN_TIMEOUT`` in seconds (0: discover in this process)."""
    from pyimgano.errors import PyimganoError

    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 3600:  # NaN fails too
        raise PyimganoError(f"{TIMEOUT_ENV}={raw!r}: expected seconds from 0 (no child process) to 3600")
    return value


def discover_bounded(discover: Callable[[], Any], search_path: list[str]) -> tuple[PluginListing, dict[str, Any]]:
    """The listing and its file snapshot (:func:`pyimgano.listing.discover_here`), found by a
    child interpreter with a time bound per plugin; ``discover()`` returns this process's
    registry, the fallback."""
    timeout = plugin_timeout()
    if timeout == 0:
        return discover_here(discover, search_path)
    given_up: dict[tuple[str, str], str] = {}
    for _ in range(_MAX_ATTEMPTS):
        outcome = _run_child(search_path, given_up, timeout)
        if outcome is None:
            break  # no plugin to blame: discover here
        if "listing" in outcome and (outcome["finders"] != import_finders() or outcome.get("core") != _core_version()):
            # this process imports through other machinery than a fresh interpreter, or its core is
            # not the one a fresh interpreter loads (the version the plugins are checked against):
            # discover here
            break
        if "listing" in outcome:
            mark_unresponsive(given_up)
            listing = PluginListing.from_data(outcome["listing"], outcome["strict_error"])
            _warn(listing, given_up)
            return listing, outcome["files"]
        given_up[(outcome["plugin"], outcome["module"])] = outcome["reason"]
    mark_unresponsive(given_up)
    return discover_here(discover, search_path)


def _core_version() -> str:
    import pyimgano

    return str(pyimgano.__version__)


def _warn(listing: PluginListing, given_up: dict[tuple[str, str], str]) -> None:
    for plugin in listing.plugins:
        if (plugin.name, plugin.module) in given_up:
            print(f"warning: {plugin.provider()}: {plugin.error}", file=sys.stderr)


def _run_child(search_path: list[str], given_up: dict[tuple[str, str], str], timeout: float) -> dict[str, Any] | None:
    """One discovery child: its answer (``listing``), the plugin to give up on (``plugin``,
    ``module``, ``reason``), or None when it failed before naming a plugin."""
    request = {"path": search_path, "given_up": [[name, module, reason] for (name, module), reason in given_up.items()]}
    try:
        child = subprocess.Popen([sys.executable, "-c", _CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True, encoding="utf-8", errors="replace")
    except OSError:
        return None
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_read_lines, args=(child.stdout, lines), daemon=True)
    reader.start()
    current: dict[str, str] | None = None
    answer: dict[str, Any] | None = None
    try:
        child.stdin.write(json.dumps(request) + "\n")
        child.stdin.close()
        while True:
            try:
                line = lines.get(timeout=timeout)
            except queue.Empty:
                if current is None:
                    return None
                return {**current, "reason": (f"import of {current['module']!r} did not finish within {timeout:g} s "
                                              f"({TIMEOUT_ENV}); skipped: fix it, or block it with "
                                              f"{DISABLE_ENV}={current['plugin']}")}
            if line is None:
                break
            try:
                message = json.loads(line)
            except ValueError:
                return None
            if "plugin" in message:
                current = message
            else:
                answer = message
        try:
            status = child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:  # answered, yet something a plugin started keeps it alive
            status = 0 if answer is not None else -9  # killed below
        if answer is not None and status == 0:
            return answer
        if current is None:
            return None
        return {**current, "reason": f"import of {current['module']!r} ended the discovery process "
                                     f"({_status_text(status)}); skipped: fix it, or block it with "
                                     f"{DISABLE_ENV}={current['plugin']}"}
    except OSError:
        return None
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()


def _read_lines(stream: Any, lines: queue.Queue[str | None]) -> None:
    try:
        for line in stream:
            lines.put(line)
    except (OSError, ValueError):
        pass
    lines.put(None)


def _status_text(status: int) -> str:
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exit status {status}"


def child_main(request: dict[str, Any]) -> None:
    """The discovery child: report each plugin before importing it, then the listing."""
    finders = import_finders()  # before any plugin: what the parent compares with its own
    answer = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # a plugin's output, Python's or C's, goes to stderr
    sys.stdout = sys.stderr

    def say(message: dict[str, Any]) -> None:
        answer.write(json.dumps(message) + "\n")
        answer.flush()

    mark_unresponsive({(name, module): reason for name, module, reason in request["given_up"]})

    def discover() -> Any:
        from pyimgano.plugins import Registry

        return Registry().load(progress=lambda ep: say({"plugin": ep.name, "module": ep.value}))

    listing, files = discover_here(discover, request["path"])
    say({"listing": listing.to_data(), "strict_error": listing.strict_error, "files": files,
         "finders": finders, "core": _core_version()})
    answer.close()
    sys.stderr.flush()
    os._exit(0)  # nothing a plugin started (a thread, an atexit hook) keeps the child alive
