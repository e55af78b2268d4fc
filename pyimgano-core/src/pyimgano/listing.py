"""What ``pyimgano --help`` and ``pyimgano list-plugins`` show, without importing any plugin.

Listing needs each plugin's row (name, distribution, version, status, what it registers)
and each command's name, summary and factory string: no validator, no plugin module. A
:class:`PluginListing` holds exactly that, taken from the real registry
(:mod:`pyimgano.plugins`). The command line saves it in the user cache, as npe2 keeps
plugin manifests, and a later process whose environment matches reads it back: listing
then imports neither pydantic, pluggy nor any plugin module. The saved listing is keyed on
everything that can change discovery's result:

- the interpreter (executable, version), pyimgano's version, ``sys.path``, the import
  finders (``sys.meta_path``, ``sys.path_hooks``) and every ``PYIMGANO_*`` environment
  variable (``PYIMGANO_DISABLE_PLUGINS``, ``PYIMGANO_STRICT_PLUGINS``...);
- modification time and size of each ``sys.path`` folder (installing, removing or
  upgrading a distribution adds or renames an entry there) and of every distribution's
  ``entry_points.txt`` and ``METADATA`` (an entry point or version edited in place);
- the same for every file and folder of pyimgano and of each plugin's package (an
  editable install changes without a version bump) and for every module discovery
  imported (a dependency installed in editable mode).

A listing with a broken plugin is never saved, so installing a missing dependency fixes
the plugin at once; nor is one from a file changed less than two seconds before
discovery (a second change could keep its timestamp). Creating components, checking and
benchmarking always use the real registry.

Environment: ``PYIMGANO_NO_PLUGIN_CACHE=1`` turns the cache off; it lives in
``$PYIMGANO_CACHE_DIR/plugins``, by default ``$XDG_CACHE_HOME/pyimgano/plugins`` or
``~/.cache/pyimgano/plugins``. A folder that cannot be written means no cache, silently.

This module imports only the standard library's lightest parts; keep it so.
"""

from __future__ import annotations

import json
import os
import sys
import time
import zlib
from collections import namedtuple
from collections.abc import Callable
from typing import Any

from pyimgano import __version__
from pyimgano._lazy import import_object
from pyimgano.errors import ComponentNotFound, NameConflict, PluginError, env_flag, short_error

BUILTIN_PLUGIN = "core"
DISABLE_ENV = "PYIMGANO_DISABLE_PLUGINS"
NO_CACHE_ENV = "PYIMGANO_NO_PLUGIN_CACHE"
CACHE_DIR_ENV = "PYIMGANO_CACHE_DIR"

CACHE_FORMAT = 1
_UNKEYED_ENV = {NO_CACHE_ENV, CACHE_DIR_ENV}  # they choose the cache, not what discovery finds
_SETTLE_NS = 2_000_000_000  # a file changed this shortly before discovery is not trusted by timestamp
_KEEP_FILES = 32  # saved listings kept (one per interpreter and sys.path); the oldest go first


def provider_label(name: str, distribution: str | None, version: str | None) -> str:
    """How messages name a plugin: ``plugin 'faiss' (pyimgano-faiss 0.1.0)``."""
    return f"plugin {name!r} ({distribution or 'no distribution'} {version or '?'})"


ListedCommand = namedtuple("ListedCommand", "name summary factory")
ListedCommand.__doc__ = "A sub-command as the parser needs it: name, one-line summary, factory reference."


class ListedPlugin:
    """One plugin as listing shows it: its ``list-plugins --json`` row and its commands."""

    __slots__ = ("commands", "module", "row")

    def __init__(self, module: str, row: dict[str, Any], commands: list[ListedCommand]) -> None:
        self.module = module  # the entry point's value
        self.row = row  # PluginRecord.as_dict()
        self.commands = commands

    @property
    def name(self) -> str:
        return self.row["name"]

    @property
    def distribution(self) -> str | None:
        return self.row["distribution"]

    @property
    def version(self) -> str | None:
        return self.row["version"]

    @property
    def status(self) -> str:
        return self.row["status"]

    @property
    def error(self) -> str | None:
        return self.row["error"]

    def provider(self) -> str:
        return provider_label(self.name, self.distribution, self.version)


class PluginListing:
    """The installed plugins in discovery order (core first), for listing and dispatch."""

    def __init__(self, plugins: list[ListedPlugin], strict_error: str | None = None, from_cache: bool = False) -> None:
        self.plugins = plugins
        self.strict_error = strict_error  # why PYIMGANO_STRICT_PLUGINS fails this discovery, if it does
        self.from_cache = from_cache

    @classmethod
    def from_registry(cls, registry: Any) -> PluginListing:
        plugins = [
            ListedPlugin(record.module, record.as_dict(),
                         [ListedCommand(spec.name, spec.summary, spec.factory) for spec in record.commands])
            for record in registry.plugins
        ]
        return cls(plugins, registry.strict_error())

    def to_data(self) -> list[dict[str, Any]]:
        """The plugins as JSON data (the saved listing's ``plugins``; a discovery child's answer)."""
        return [{"module": p.module, "row": p.row, "commands": p.commands} for p in self.plugins]

    @classmethod
    def from_data(cls, data: list[dict[str, Any]], strict_error: str | None = None,
                  from_cache: bool = False) -> PluginListing:
        """The listing :meth:`to_data` wrote (KeyError, TypeError: not such data)."""
        plugins = [ListedPlugin(p["module"], p["row"], [ListedCommand(*command) for command in p["commands"]])
                   for p in data]
        return cls(plugins, strict_error, from_cache)

    @property
    def cacheable(self) -> bool:
        """No plugin failed: a broken plugin is rediscovered every time, never served saved."""
        return all(plugin.status != "error" for plugin in self.plugins)

    def rows(self) -> list[dict[str, Any]]:
        return [plugin.row for plugin in self.plugins]

    def commands(self) -> dict[str, list[tuple[ListedCommand, ListedPlugin]]]:
        """Every command of a working plugin, by name, in discovery order.

        A name with more than one provider is a conflict, reported by :meth:`resolve_command`.
        """
        out: dict[str, list[tuple[ListedCommand, ListedPlugin]]] = {}
        for plugin in self.plugins:
            if plugin.status == "ok":
                for command in plugin.commands:
                    out.setdefault(command.name, []).append((command, plugin))
        return out

    def resolve_command(self, name: str) -> tuple[ListedCommand, ListedPlugin]:
        """The one plugin command called ``name``; :class:`NameConflict` names every provider."""
        providers = self.commands().get(name)
        if not providers:
            raise ComponentNotFound(f"no command named {name!r}; available: {', '.join(self.commands()) or 'none'}")
        if len(providers) > 1:
            names = " and ".join(plugin.provider() for _, plugin in providers)
            raise NameConflict(
                f"command {name!r} is registered by {len(providers)} plugins: {names}; uninstall one, or block "
                f"one with {DISABLE_ENV}={providers[-1][1].name}"
            )
        return providers[0]

    def load_command(self, name: str) -> Any:
        """Import the command's factory; it must have ``add_arguments`` and ``run``."""
        command, plugin = self.resolve_command(name)
        try:
            implementation = import_object(command.factory)
        except Exception as exc:
            raise PluginError(f"command {name!r} from {plugin.provider()} could not be loaded "
                              f"({command.factory}): {short_error(exc)}") from exc
        missing = [f"{attr}()" for attr in ("add_arguments", "run") if not callable(getattr(implementation, attr, None))]
        if missing:
            raise PluginError(f"command {name!r} from {plugin.provider()}: {command.factory} has no {' or '.join(missing)}")
        return implementation


_listing: PluginListing | None = None
# Plugins (entry point name, value) whose import a bounded discovery could not finish, with
# why: this process's registry records them as errors instead of importing them.
_unresponsive: dict[tuple[str, str], str] = {}


def unresponsive_plugins() -> dict[tuple[str, str], str]:
    """The plugins :func:`pyimgano.discovery.discover_bounded` gave up on in this process, by
    (entry point name, value), with the reason."""
    return _unresponsive


def mark_unresponsive(plugins: dict[tuple[str, str], str]) -> None:
    """Record plugins whose import must not be tried again in this process."""
    _unresponsive.update(plugins)


def get_listing(discover: Callable[[list[str]], tuple[PluginListing, dict[str, Any]]]) -> PluginListing:
    """The installed plugins for listing and dispatch.

    The process's registry when it is loaded (tests and library code that loaded or set
    one see exactly it); otherwise the saved listing when nothing it depends on changed;
    otherwise what ``discover(sys.path)`` finds (a listing and the snapshot of the files it
    depends on: :func:`discover_here`, or :func:`pyimgano.discovery.discover_bounded`; the
    caller passes it, so this module, which the registry uses, never imports either), saved
    for the next process.
    """
    global _listing
    registry = _loaded_registry()
    if registry is not None:
        return PluginListing.from_registry(registry)
    if _listing is None:
        _listing = _saved_or_discovered(discover)
    return _listing


def forget_listing() -> None:
    """Drop this process's listing (:func:`pyimgano.plugins.reset_registry` calls it)."""
    global _listing
    _listing = None


def _loaded_registry() -> Any:
    plugins = sys.modules.get("pyimgano.plugins")  # not imported: no registry, and none is loaded here
    return None if plugins is None else plugins.loaded_registry()


def cache_root() -> str:
    """pyimgano's user cache folder: ``$PYIMGANO_CACHE_DIR``, else ``$XDG_CACHE_HOME/pyimgano``
    or ``~/.cache/pyimgano`` (saved listings here, generated data sets in pyimgano-datasets)."""
    root = os.environ.get(CACHE_DIR_ENV)
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "pyimgano")
    return os.path.expanduser(root)


def cache_dir() -> str | None:
    """The folder of saved listings, or None when ``PYIMGANO_NO_PLUGIN_CACHE`` is set."""
    if env_flag(NO_CACHE_ENV):
        return None
    return os.path.join(cache_root(), "plugins")


def _saved_or_discovered(discover: Callable[[], Any]) -> PluginListing:
    environment = _environment()
    folder = cache_dir()
    path = None
    if folder is not None:
        identity = json.dumps([environment["python"], environment["path"]]).encode()  # ASCII: json escapes
        path = os.path.join(folder, f"listing-{zlib.crc32(identity):08x}.json")
        saved = _read(path, environment)
        if saved is not None:
            return saved
    started = time.time_ns()
    listing, files = discover(environment["path"])
    if path is not None and listing.cacheable:
        newest = max((stat[0] for stat in files.values() if stat is not None), default=0)
        if newest < started - _SETTLE_NS:
            _write(path, {"environment": environment, "files": files, "plugins": listing.to_data()})
    return listing


def discover_here(discover: Callable[[], Any], search_path: list[str]) -> tuple[PluginListing, dict[str, Any]]:
    """Discover in this process (``discover()`` returns the registry): the listing, and the
    snapshot of the files it depends on (:func:`_snapshot`; ``search_path`` is the parent's
    ``sys.path`` when this runs in a discovery child)."""
    before = set(sys.modules)
    listing = PluginListing.from_registry(discover())
    return listing, _snapshot(listing, search_path, [name for name in list(sys.modules) if name not in before])


def _environment() -> dict[str, Any]:
    """What discovery depends on besides files: interpreter, search path, finders, variables."""
    return {
        "format": CACHE_FORMAT,
        "pyimgano": __version__,
        "python": [sys.executable, sys.version],
        "path": [os.path.abspath(entry) for entry in sys.path if isinstance(entry, str)],
        "finders": import_finders(),
        "env": {key: value for key, value in sorted(os.environ.items())
                if key.startswith("PYIMGANO_") and key not in _UNKEYED_ENV},
    }


def import_finders() -> list[str]:
    """The import machinery (``sys.meta_path``, ``sys.path_hooks``) by qualified names."""
    return [_qualified_name(item) for item in (*sys.meta_path, *sys.path_hooks)]


def _qualified_name(obj: object) -> str:
    kind = obj if isinstance(obj, type) or (callable(obj) and hasattr(obj, "__qualname__")) else type(obj)
    return f"{getattr(kind, '__module__', '?')}.{getattr(kind, '__qualname__', '?')}"


def _stat(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return [st.st_mtime_ns, st.st_size]


def _snapshot(listing: PluginListing, search_path: list[str], imported: list[str]) -> dict[str, list[int] | None]:
    """Timestamp and size of every file and folder the listing depends on (None: absent)."""
    files: dict[str, list[int] | None] = {}
    for entry in search_path:
        files[entry] = _stat(entry)
        try:
            names = os.listdir(entry)
        except OSError:
            continue
        for name in names:
            if name.endswith((".dist-info", ".egg-info")):
                info = os.path.join(entry, name)
                files[info] = _stat(info)
                for meta in ("entry_points.txt", "METADATA" if name.endswith(".dist-info") else "PKG-INFO"):
                    files[os.path.join(info, meta)] = _stat(os.path.join(info, meta))
    packages = {"pyimgano"} | {_package(p.module) for p in listing.plugins if p.status == "ok"}
    for package in sorted(filter(None, packages)):
        file = getattr(sys.modules.get(package), "__file__", None)
        if isinstance(file, str) and os.path.basename(file).startswith("__init__."):
            _walk(os.path.dirname(file), files)
        elif isinstance(file, str):
            files[file] = _stat(file)
    for name in imported:
        file = getattr(sys.modules.get(name), "__file__", None)
        if isinstance(file, str) and file not in files:
            files[file] = _stat(file)
    return files


def _package(module: str) -> str | None:
    """The outermost regular package (or plain module) of an entry point's module."""
    parts = module.partition(":")[0].strip().split(".")
    for i in range(1, len(parts) + 1):
        name = ".".join(parts[:i])
        if getattr(sys.modules.get(name), "__file__", None):  # a namespace package has no file
            return name
    return None


def _walk(folder: str, files: dict[str, list[int] | None]) -> None:
    files[folder] = _stat(folder)  # a file added or removed changes its folder's timestamp
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if entry.name == "__pycache__" or entry.name.startswith("."):
            continue
        if entry.is_dir(follow_symlinks=False):
            _walk(entry.path, files)
        else:
            files[entry.path] = _stat(entry.path)


def _read(path: str, environment: dict[str, Any]) -> PluginListing | None:
    """The saved listing when it was saved for this environment and no file changed since."""
    try:
        with open(path, "rb") as handle:
            data = json.loads(handle.read())
        if data["environment"] != environment:
            return None
        for file, recorded in data["files"].items():
            if _stat(file) != recorded:
                return None
        return PluginListing.from_data(data["plugins"], from_cache=True)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # absent, unreadable or not ours: discover


def _write(path: str, data: dict[str, Any]) -> None:
    """Save atomically, keep the newest saved listings; a folder we cannot write is no error."""
    from pyimgano.atomic import atomic_write

    try:
        atomic_write(path, json.dumps(data))
        folder = os.path.dirname(path)
        saved = [entry for entry in os.scandir(folder) if entry.name.startswith("listing-")]
        saved.sort(key=lambda entry: entry.stat().st_mtime_ns, reverse=True)
        for entry in saved[_KEEP_FILES:]:
            os.unlink(entry.path)
    except OSError:
        pass
