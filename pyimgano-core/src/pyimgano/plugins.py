"""Plugin discovery and the component registry.

Discovery loops over the ``pyimgano`` entry-point group itself (not pluggy's
``load_setuptools_entrypoints``, which stops at the first broken plugin and silently
skips a reused entry-point name). Each plugin is imported, registered and asked for its
specs inside its own try/except; a failure is recorded as data on the plugin's
:class:`PluginRecord` and every other plugin keeps working. Each hook implementation is
called with the arguments it declares, as pluggy calls hooks, so hookspecs can grow.

Besides components, plugins register sub-commands of the ``pyimgano`` command line
(:class:`pyimgano.CommandSpec`); the registry lists them and resolves a command name to
the one plugin that provides it. What listing needs of the registry (rows, commands) is
a :class:`pyimgano.listing.PluginListing`, which the command line may read from its cache
instead of discovering (see :mod:`pyimgano.listing`).

Environment:

``PYIMGANO_STRICT_PLUGINS=1``
    any plugin error raises :class:`pyimgano.PluginError` (for plugin authors' CI).
``PYIMGANO_DISABLE_PLUGINS=name,name`` or ``all``
    blocks the named plugins (``all``: every plugin except the core built-in one).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any, Literal

import pluggy
from pydantic import BaseModel, ValidationError

from pyimgano import hookspecs
from pyimgano.errors import (
    ComponentNotFound,
    InvalidParams,
    NameConflict,
    PluginError,
    env_flag,
    short_error,
    validation_problems,
)
from pyimgano.listing import (
    BUILTIN_PLUGIN,
    DISABLE_ENV,
    PluginListing,
    forget_listing,
    provider_label,
    unresponsive_plugins,
)
from pyimgano.specs import SPEC_TYPES, CommandSpec

ENTRY_POINT_GROUP = "pyimgano"
KINDS = ("detector", "dataset", "metric", "postprocessor")
COMMAND = "command"  # the hook kind of CLI sub-commands, kept apart from the component KINDS
# The project's own plugin names, each owned by its distribution: a plugin of any other
# distribution registering under one of them is refused (an error record naming both),
# whichever is found first, so it can never replace the project's plugin.
OWN_PLUGINS = {"core": "pyimgano-core", "datasets": "pyimgano-datasets", "faiss": "pyimgano-faiss",
               "anomalib": "pyimgano-anomalib"}
STRICT_ENV = "PYIMGANO_STRICT_PLUGINS"
CORE_DISTRIBUTION = OWN_PLUGINS[BUILTIN_PLUGIN]

Status = Literal["ok", "error", "blocked"]


@dataclass
class PluginRecord:
    """What discovery learned about one plugin, whether it works or not."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    status: Status = "ok"
    error: str | None = None
    components: dict[str, list[Any]] = field(default_factory=lambda: {k: [] for k in KINDS})
    commands: list[CommandSpec] = field(default_factory=list)

    def provider(self) -> str:
        return provider_label(self.name, self.distribution, self.version)

    def names(self, kind: str) -> list[str]:
        return [spec.name for spec in self.components[kind]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "status": self.status,
            "error": self.error,
            "detectors": self.names("detector"),
            "datasets": self.names("dataset"),
            "metrics": self.names("metric"),
            "postprocessors": self.names("postprocessor"),
            "commands": [spec.name for spec in self.commands],
        }


def _disabled_plugins() -> set[str]:
    raw = os.environ.get(DISABLE_ENV, "")
    return {part.strip() for part in raw.split(",") if part.strip()}


def _dist_key(name: str) -> str:
    """A distribution name as packaging compares them (case, '_' and '.' as '-')."""
    return re.sub(r"[-_.]+", "-", name).lower()


def core_range_problem(dist: Any, core_version: str | None = None) -> str | None:
    """Why a plugin's distribution cannot run on the installed pyimgano-core, in one line; None when it can.

    A plugin states the core versions it supports as its ``pyimgano-core`` requirement
    (``pyimgano-core>=0.1,<0.2``; ``docs/plugins.md``, "Versioning"). pip installs against it
    but lets a later install break it (``pip install -U pyimgano-core`` alone, ``--no-deps``, an
    editable core of another version beside a wheel plugin), so discovery checks it again
    against the version of the core that is running. No such requirement: nothing to check.
    """
    requires = getattr(dist, "requires", None)
    if not requires or _dist_key(getattr(dist, "name", "") or "") == CORE_DISTRIBUTION:
        return None
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.version import InvalidVersion, Version

    from pyimgano import __version__

    installed = core_version or __version__
    for text in requires:
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            continue
        if _dist_key(requirement.name) != CORE_DISTRIBUTION:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue  # asked for by one of the plugin's extras only
        if requirement.specifier.contains(installed, prereleases=True):
            return None
        bounds = sorted((str(spec) for spec in requirement.specifier), key=lambda s: not s.startswith((">", "~", "=")))
        wanted = f"{CORE_DISTRIBUTION}{','.join(bounds)}"
        try:
            core_too_old = any(
                spec.operator in (">=", ">", "~=", "==", "===") and Version(installed) < Version(spec.version)
                for spec in requirement.specifier
            )
        except InvalidVersion:
            core_too_old = False
        fix = f"pip install -U '{wanted}'" if core_too_old else f"pip install -U {dist.name}"
        return (f"{dist.name} {dist.version} supports {wanted}, but {CORE_DISTRIBUTION} {installed} is installed; "
                f"its components are not loaded: {fix}")
    return None


class Registry:
    """All discovered plugins and the components they register."""

    def __init__(self, hook_arguments: Mapping[str, Any] | None = None) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: list[PluginRecord] = []
        # values offered to hook implementations, by hookspec argument name
        self.hook_arguments: dict[str, Any] = dict(hook_arguments or {})

    # -- loading ---------------------------------------------------------------------
    def discover(self, entry_points: Any | None = None) -> Registry:
        """Load every plugin of the entry-point group (or the given entry points).

        Raises :class:`PluginError` when ``PYIMGANO_STRICT_PLUGINS`` is set and a plugin
        failed; :meth:`load` is the same without that check.
        """
        self.load(entry_points)
        self.check_strict()
        return self

    def load(self, entry_points: Any | None = None, progress: Callable[[Any], None] | None = None) -> Registry:
        """Load plugins, recording failures on their records (never raises for a plugin).

        ``progress(entry_point)`` is called before each plugin is imported (a discovery
        child reports it, so a plugin that hangs or ends the process is named). What a
        plugin prints to standard output while it is imported or registered goes to standard
        error: the command line's output (``list-plugins --json``) stays what it says.
        """
        with contextlib.redirect_stdout(sys.stderr):
            return self._load(entry_points, progress)

    def _load(self, entry_points: Any | None, progress: Callable[[Any], None] | None) -> Registry:
        eps = entry_points if entry_points is not None else metadata.entry_points(group=ENTRY_POINT_GROUP)
        disabled = _disabled_plugins()
        unresponsive = unresponsive_plugins()
        ordered = sorted(eps, key=lambda ep: (ep.name != BUILTIN_PLUGIN, ep.name))
        for ep in ordered:
            dist = getattr(ep, "dist", None)
            record = PluginRecord(
                name=ep.name,
                module=ep.value,
                distribution=getattr(dist, "name", None),
                version=getattr(dist, "version", None),
            )
            if ep.name in disabled or ("all" in disabled and ep.name != BUILTIN_PLUGIN):
                record.status = "blocked"
                record.error = f"blocked by {DISABLE_ENV}"
                self.plugins.append(record)
                continue
            mismatch = core_range_problem(dist)
            if mismatch is not None:  # never imported: its code was written against another core
                self._fail(record, mismatch)
                continue
            gave_up = unresponsive.get((ep.name, ep.value))
            if gave_up is not None:  # its import hung or ended a discovery child: not tried again
                self._fail(record, gave_up)
                continue
            if progress is not None:
                progress(ep)
            try:
                module = ep.load()
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - a plugin may raise anything on import
                self._fail(record, f"import of {ep.value!r} failed: {short_error(exc)}", exc)
                continue
            self.register_module(module, record)
        return self

    def register_module(self, module: ModuleType | object, record: PluginRecord | str) -> PluginRecord:
        """Register one plugin object (a module of hook implementations) under a name."""
        if isinstance(record, str):
            record = PluginRecord(name=record, module=getattr(module, "__name__", repr(module)))
        owner = OWN_PLUGINS.get(record.name)
        if owner is not None and record.distribution is not None and _dist_key(record.distribution) != owner:
            self._fail(record, f"plugin name {record.name!r} belongs to {owner}, the project's own plugin; "
                               f"{record.distribution} {record.version or '?'} may not register under it "
                               "(its components are not loaded: rename its entry point)")
            return record
        existing = {p.name: p for p in self.plugins if p.status == "ok"}
        if record.name in existing:
            other = existing[record.name]
            self._fail(record, f"plugin name {record.name!r} is already used by {other.provider()}")
            return record
        try:
            self.pm.register(module, name=record.name)
        except Exception as exc:  # noqa: BLE001
            self._fail(record, f"hook registration failed: {short_error(exc)}", exc)
            return record
        try:
            self.pm.check_pending()
            collected = self._collect_specs(module)
            record.commands = collected.pop(COMMAND)
            record.components = collected
        except Exception as exc:  # noqa: BLE001
            self.pm.unregister(module)
            self._fail(record, short_error(exc), exc)
            return record
        self.plugins.append(record)
        return record

    def _collect_specs(self, module: object) -> dict[str, list[Any]]:
        """Every spec the module's hooks return, by kind (the components' and ``command``)."""
        collected: dict[str, list[Any]] = {k: [] for k in (*KINDS, COMMAND)}
        for hook_name, kind in hookspecs.HOOK_KINDS.items():
            caller = getattr(self.pm.hook, hook_name)
            for impl in caller.get_hookimpls():
                if impl.plugin is not module:
                    continue
                offered = self._hook_kwargs(caller)
                try:
                    result = impl.function(*(offered[name] for name in impl.argnames))
                except Exception as exc:
                    raise PluginError(f"hook {hook_name} raised {short_error(exc)}") from exc
                collected[kind].extend(self._validate_specs(hook_name, kind, result))
        return collected

    def _hook_kwargs(self, caller: pluggy.HookCaller) -> dict[str, Any]:
        """The values of a hookspec's arguments; an implementation takes the ones it names."""
        names = caller.spec.argnames if caller.spec is not None else ()
        missing = [name for name in names if name not in self.hook_arguments]
        if missing:
            raise PluginError(f"hookspec {caller.name} declares {', '.join(missing)}, which the registry does not offer")
        return {name: self.hook_arguments[name] for name in names}

    @staticmethod
    def _validate_specs(hook_name: str, kind: str, result: Any) -> list[Any]:
        spec_type = SPEC_TYPES[kind]
        if result is None:
            return []
        if isinstance(result, (str, bytes, dict)) or not hasattr(result, "__iter__"):
            raise PluginError(f"hook {hook_name} returned {type(result).__name__}; expected a list of {spec_type.__name__}")
        specs = []
        seen: set[str] = set()
        for i, item in enumerate(result):
            if isinstance(item, spec_type):
                spec = item
            elif isinstance(item, dict):
                try:
                    spec = spec_type.model_validate(item)
                except ValidationError as exc:
                    raise PluginError(f"hook {hook_name} item {i} is not a valid {spec_type.__name__}: "
                                      f"{validation_problems(exc)}") from None
            else:
                raise PluginError(
                    f"hook {hook_name} item {i} is {type(item).__name__}; expected {spec_type.__name__}"
                )
            if spec.name in seen:
                raise PluginError(f"hook {hook_name} registers {kind} {spec.name!r} twice")
            seen.add(spec.name)
            specs.append(spec)
        return specs

    def _fail(self, record: PluginRecord, message: str, exc: BaseException | None = None) -> None:
        record.status = "error"
        record.error = message
        record.components = {k: [] for k in KINDS}
        record.commands = []
        if exc is not None and env_flag("PYIMGANO_DEBUG_PLUGINS"):
            record.error += "\n" + "".join(traceback.format_exception(exc))
        self.plugins.append(record)

    def strict_error(self) -> str | None:
        """Why strict mode fails this registry (``PYIMGANO_STRICT_PLUGINS`` set, a plugin failed)."""
        if not env_flag(STRICT_ENV):
            return None
        broken = [p for p in self.plugins if p.status == "error"]
        if not broken:
            return None
        lines = "; ".join(f"{p.provider()}: {p.error}" for p in broken)
        return f"{STRICT_ENV} is set and {len(broken)} plugin(s) failed: {lines}"

    def check_strict(self) -> None:
        """Raise :class:`PluginError` when :meth:`strict_error` says so."""
        message = self.strict_error()
        if message:
            raise PluginError(message)

    # -- lookup ----------------------------------------------------------------------
    def plugin(self, name: str) -> PluginRecord:
        """The plugin called ``name``: the working one when a refused one has the same name (a
        third-party plugin under a project plugin's name), else the first record."""
        records = [record for record in self.plugins if record.name == name]
        if records:
            return next((record for record in records if record.status == "ok"), records[0])
        raise ComponentNotFound(f"no plugin named {name!r}; installed: {', '.join(p.name for p in self.plugins)}")

    def components(self, kind: str) -> dict[str, tuple[Any, PluginRecord]]:
        """Every working component of a kind, keyed by qualified name ``plugin:name``."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        out: dict[str, tuple[Any, PluginRecord]] = {}
        for record in self.plugins:
            if record.status != "ok":
                continue
            for spec in record.components[kind]:
                out[f"{record.name}:{spec.name}"] = (spec, record)
        return out

    def names(self, kind: str) -> list[str]:
        return sorted(self.components(kind))

    def listing(self) -> PluginListing:
        """What ``list-plugins`` and ``--help`` show of this registry (commands resolve there)."""
        return PluginListing.from_registry(self)

    def load_command(self, name: str) -> Any:
        """Import a command's factory (:meth:`PluginListing.load_command`)."""
        return self.listing().load_command(name)

    def resolve(self, kind: str, name: str) -> tuple[Any, PluginRecord]:
        """Find a component by qualified (``plugin:name``) or bare name."""
        comps = self.components(kind)
        if ":" in name:
            if name in comps:
                return comps[name]
            plugin_name = name.split(":", 1)[0]
            hint = self._why_missing(plugin_name)
            raise ComponentNotFound(f"no {kind} named {name!r}{hint}; available: {', '.join(sorted(comps)) or 'none'}")
        matches = [(q, v) for q, v in comps.items() if q.split(":", 1)[1] == name]
        if not matches:
            raise ComponentNotFound(f"no {kind} named {name!r}; available: {', '.join(sorted(comps)) or 'none'}")
        if len(matches) > 1:
            providers = "; ".join(f"{q} from {rec.provider()}" for q, (_, rec) in matches)
            raise NameConflict(
                f"{kind} name {name!r} is registered by {len(matches)} plugins: {providers}. "
                f"Use a qualified name ({', '.join(q for q, _ in matches)})."
            )
        return matches[0][1]

    def qualified_name(self, kind: str, name: str) -> str:
        spec, record = self.resolve(kind, name)
        return f"{record.name}:{spec.name}"

    def _why_missing(self, plugin_name: str) -> str:
        if not any(r.name == plugin_name for r in self.plugins):
            return f" (no plugin {plugin_name!r} is installed)"
        record = self.plugin(plugin_name)
        return f" ({record.provider()} is {record.status}: {record.error})" if record.status != "ok" else ""


    def validate_params(self, kind: str, name: str, params: dict[str, Any]) -> BaseModel:
        spec, record = self.resolve(kind, name)
        try:
            return spec.params.model_validate(params)
        except ValidationError as exc:
            problems = validation_problems(exc, spec.params)
            raise InvalidParams(f"invalid parameters for {kind} {record.name}:{spec.name}: {problems}") from None

    def create(self, kind: str, name: str, /, **params: Any) -> Any:
        """Validate params against the spec, then import the factory and call it."""
        spec, record = self.resolve(kind, name)
        validated = self.validate_params(kind, name, params)
        factory = self.load_factory(kind, name)
        kwargs = {key: getattr(validated, key) for key in type(validated).model_fields}
        return factory(**kwargs)

    def load_factory(self, kind: str, name: str) -> Any:
        spec, record = self.resolve(kind, name)
        try:
            return spec.load_factory()
        except Exception as exc:
            raise PluginError(
                f"{kind} {record.name}:{spec.name} from {record.provider()} could not be loaded "
                f"({spec.factory}): {short_error(exc)}"
            ) from exc


_registry: Registry | None = None
_lock = threading.Lock()


def loaded_registry() -> Registry | None:
    """The process-wide registry if it has been loaded or set, else None (loads nothing)."""
    return _registry


def get_registry(*, strict: bool = True) -> Registry:
    """The process-wide registry, loaded on first use.

    In strict mode (``PYIMGANO_STRICT_PLUGINS``) a failed plugin raises
    :class:`PluginError` on every call; ``strict=False`` returns the registry anyway
    (``list-plugins`` shows it before failing, the command line finds its commands).
    """
    global _registry
    with _lock:
        if _registry is None:
            _registry = Registry().load()
        registry = _registry
    if strict:
        registry.check_strict()
    return registry


def reset_registry() -> None:
    """Forget the discovered plugins (tests, or after installing a plugin at run time)."""
    global _registry
    with _lock:
        _registry = None
    forget_listing()


def list_plugins() -> list[PluginRecord]:
    return list(get_registry().plugins)
