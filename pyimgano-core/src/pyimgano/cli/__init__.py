"""The ``pyimgano`` command line.

Every sub-command is registered by a plugin through ``pyimgano_register_commands`` (the
core's own ones by the built-in plugin, ``pyimgano._builtin``) as a
:class:`pyimgano.CommandSpec` whose factory has ``add_arguments(parser)`` and
``run(args) -> int``. The parser is built from the plugin listing (:mod:`pyimgano.listing`),
read from its cache when nothing changed, and only the chosen command's factory is
imported, so ``--help`` and ``list-plugins`` import no plugin however many are installed.

Every failure is one line on stderr and an exit status (``docs/reliability.md``): 0 done,
1 done but some work failed (a benchmark run, a check), 2 bad usage or input, 3 a file
could not be written or read (a full disk, no permission), 4 an unexpected error (a bug in
pyimgano or a plugin), 130 Ctrl-C, 143 SIGTERM. ``--debug`` or ``PYIMGANO_DEBUG=1`` adds
the traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from pyimgano import __version__
from pyimgano.errors import OutputExists, PyimganoError, env_flag, os_reason
from pyimgano.listing import BUILTIN_PLUGIN, PluginListing, get_listing
from pyimgano.openmp import apply_wait_policy

# Commands of the project's other distributions: when one is missing, say what to install.
COMMAND_DISTRIBUTIONS = {"datasets": "pyimgano-datasets"}
DEBUG_ENV = "PYIMGANO_DEBUG"
EXIT_FAILED, EXIT_USAGE, EXIT_IO, EXIT_INTERNAL, EXIT_INTERRUPTED = 1, 2, 3, 4, 130


class UsageError(PyimganoError, ValueError):
    """The command line is wrong (an unknown option, a bad value): exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are raised, so that ``main`` prints them in one line like any error."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


class _VersionAction(argparse.Action):
    """``--version``: :func:`version_text` as it is (argparse's own action would re-wrap the lines)."""

    def __init__(self, option_strings: list[str], dest: str, listing: PluginListing, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)
        self.listing = listing

    def __call__(self, parser, namespace, values, option_string=None) -> NoReturn:
        print(version_text(self.listing))
        parser.exit(0)


def build_parser(listing: PluginListing, command: str | None = None) -> argparse.ArgumentParser:
    """The parser with every registered command; only ``command``'s options are added."""
    parser = _Parser(
        prog="pyimgano",
        description="Visual anomaly detection for industrial inspection: benchmark, fit and predict.",
    )
    parser.add_argument("--version", action=_VersionAction, listing=listing,
                        help="show the version of pyimgano-core and of every plugin, then exit")
    parser.add_argument("--debug", action="store_true",
                        help=f"on an error, show its traceback (also {DEBUG_ENV}=1); before or after the command")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, providers in listing.commands().items():
        spec = providers[0][0]
        help_text = spec.summary
        if len(providers) > 1:
            help_text = f"(conflict: registered by plugins {', '.join(repr(rec.name) for _, rec in providers)})"
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            implementation = listing.load_command(name)
            implementation.add_arguments(sub_parser)
            sub_parser.set_defaults(_run=implementation.run)
            if "--debug" not in sub_parser._option_string_actions:
                sub_parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                                        help=f"on an error, show its traceback (also {DEBUG_ENV}=1)")
    return parser


def discover_registry() -> object:
    """Discover the plugins (strict mode is left to the commands that use them)."""
    from pyimgano.plugins import get_registry

    return get_registry(strict=False)


def current_listing() -> PluginListing:
    """The plugin listing of this process: saved, or found by a discovery child with a time
    bound per plugin (:mod:`pyimgano.discovery`; :func:`discover_registry` when it cannot)."""
    return get_listing(_discover_bounded)


def _discover_bounded(search_path: list[str]) -> tuple[PluginListing, dict]:
    from pyimgano.discovery import discover_bounded  # imported only when the saved listing cannot serve

    return discover_bounded(discover_registry, search_path)


def version_text(listing: PluginListing) -> str:
    """What ``pyimgano --version`` prints: the core's version, then one line per plugin (name,
    distribution, version, and the status when it is not ok, with the first line of its error)."""
    rows = [(r.name, r.distribution or "-", r.version or "-", r.status, r.error) for r in listing.plugins]
    widths = [max([len(row[i]) for row in rows] + [0]) for i in range(3)]
    lines = [f"pyimgano {__version__} (Python {sys.version.split()[0]})"]
    for name, dist, version, status, error in rows:
        line = f"  {name:<{widths[0]}}  {dist:<{widths[1]}}  {version:<{widths[2]}}"
        if status != "ok":
            line += f"  {status}: {_first_line(error)}"
        lines.append(line.rstrip())
    return "\n".join(lines)


def missing_command(name: str, listing: PluginListing) -> str | None:
    """One line on why a command is missing, when that is known (None: a plain unknown name)."""
    dist = COMMAND_DISTRIBUTIONS.get(name)
    if dist is None:
        core = next((r for r in listing.plugins if r.name == BUILTIN_PLUGIN), None)
        if core is not None and core.status != "ok":
            return f"no command {name!r}: {core.provider()} is {core.status}: {_first_line(core.error)}"
        return None
    for record in listing.plugins:
        if record.distribution == dist:
            if record.status != "ok":
                return (f"'pyimgano {name}' comes from {dist}, whose plugin {record.name!r} is {record.status}: "
                        f"{_first_line(record.error)}")
            return f"{dist} {record.version or '?'} does not provide 'pyimgano {name}'; upgrade it: pip install -U {dist}"
    return f"'pyimgano {name}' needs the {dist} distribution: pip install {dist}"


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else "no reason given"


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status. No failure escapes as a traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    apply_wait_policy()  # before torch or faiss is loaded (pyimgano.openmp)
    debug = "--debug" in argv or env_flag(DEBUG_ENV)
    sigint = _SigintWatch()
    try:
        return _run(argv)
    except KeyboardInterrupt as exc:
        return report_interrupt(exc, sigint.seen, debug)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line and an exit status
        if _interrupted(exc):
            return report_interrupt(exc, sigint.seen, debug)
        return report_error(exc, debug)
    finally:
        sigint.restore()


class _SigintWatch:
    """Notes whether SIGINT (Ctrl-C) arrived, raising KeyboardInterrupt as Python's own handler
    does: a KeyboardInterrupt without one was raised by code, a bug to be named."""

    def __init__(self) -> None:
        import signal

        self.seen = False
        self.previous = None
        try:
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                self.previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave the handler alone
            pass

    def _handle(self, signum: int, frame: object) -> None:
        self.seen = True
        raise KeyboardInterrupt

    def restore(self) -> None:
        import signal

        if self.previous is not None:
            try:
                signal.signal(signal.SIGINT, self.previous)
            except ValueError:
                pass


def report_interrupt(exc: BaseException, sigint: bool | None, debug: bool = False) -> int:
    """A Ctrl-C (``sigint`` true, or unknown: None) is ``interrupted``, exit 130; a
    KeyboardInterrupt that code raised without one is a bug: one ``error:`` line naming the
    plugin and the function that raised it, exit 4."""
    if sigint or sigint is None:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    where = _raised_in(exc)
    text = f"KeyboardInterrupt raised by {where} without a Ctrl-C" if where else "KeyboardInterrupt raised without a Ctrl-C"
    print(f"error: {text} (unexpected: run with --debug or {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
    return EXIT_INTERNAL


def _plugin_packages() -> dict[str, object]:
    """Each third-party plugin by the top-level packages of its module and its components'
    factories (from the registry when this process loaded it, else the listing)."""
    from pyimgano.listing import provider_label

    packages: dict[str, object] = {}
    registry = sys.modules["pyimgano.plugins"].loaded_registry() if "pyimgano.plugins" in sys.modules else None
    records = registry.plugins if registry is not None else current_listing().plugins
    for record in records:
        if record.name == BUILTIN_PLUGIN:
            continue
        modules = [record.module]
        for specs in (getattr(record, "components", None) or {}).values():
            modules += [spec.factory for spec in specs if isinstance(getattr(spec, "factory", None), str)]
        for module in modules:
            package = module.partition(":")[0].strip().split(".")[0]
            if package and package != "pyimgano":
                packages.setdefault(package, provider_label(record.name, record.distribution, record.version))
    return packages


def _raised_in(exc: BaseException) -> str | None:
    """``plugin 'x' (dist version) in module.function``: the innermost frame of ``exc`` (or of
    the KeyboardInterrupt it grew from) in a plugin's package; else the innermost function."""
    while not isinstance(exc, KeyboardInterrupt) and (exc.__cause__ or exc.__context__) is not None:
        exc = exc.__cause__ or exc.__context__
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    if not frames:
        return None
    packages = _plugin_packages()
    for frame in reversed(frames):
        module = frame.f_globals.get("__name__", "?")
        plugin = packages.get(module.split(".")[0])
        if plugin is not None:
            return f"{plugin} in {module}.{frame.f_code.co_name}"
    frame = frames[-1]
    return f"{frame.f_globals.get('__name__', '?')}.{frame.f_code.co_name}"


def _interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` grew out of a Ctrl-C: Python wraps a KeyboardInterrupt that arrives while
    a class is being created (e.g. during an import) in a RuntimeError."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def _run(argv: list[str]) -> int:
    command = next((a for a in argv if not a.startswith("-")), None)
    listing = current_listing()  # strict mode fails the commands that use plugins, not the parser
    known = listing.commands()
    if command is not None and command not in known:
        message = missing_command(command, listing)
        if message:
            raise UsageError(message)
    parser = build_parser(listing, command if command in known else None)
    args = parser.parse_args(argv)
    from pyimgano.cli.options import apply_deprecated

    apply_deprecated(args)  # old spellings of options, for one release
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    return int(args._run(args) or 0)


def report_error(exc: BaseException, debug: bool = False) -> int:
    """Print ``exc`` as one ``error:`` line on stderr (the traceback first when ``debug``); its exit status.

    A pyimgano error (bad usage or input, an output path that must not be replaced) is 2; a
    file system error (:class:`OSError`, :class:`pyimgano.OutputError` included) 3; anything else, which pyimgano did not
    anticipate, 4, with its type and a hint on how to see the traceback.
    """
    if debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, OutputExists):  # an output path to choose again: usage, not the file system
        status, text = EXIT_USAGE, str(exc)
    elif isinstance(exc, OSError):
        status, text = EXIT_IO, str(exc) if isinstance(exc, PyimganoError) else os_reason(exc)
    elif isinstance(exc, PyimganoError):
        status, text = EXIT_USAGE, str(exc)
    else:
        status = EXIT_INTERNAL
        text = f"{type(exc).__name__}: {exc}"
        if not debug:
            text += f" (unexpected: run with --debug or {DEBUG_ENV}=1 for the traceback)"
    print("error: " + " ".join(text.split()), file=sys.stderr)
    return status
