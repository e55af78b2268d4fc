"""Error types users can catch.

Every error pyimgano raises on purpose derives from :class:`PyimganoError`, and each
also derives from the built-in exception a Python user would expect (``ValueError``,
``LookupError``...), so generic ``except ValueError`` code keeps working.
"""

from __future__ import annotations

from typing import Any


class PyimganoError(Exception):
    """Base class of every error raised by pyimgano on purpose."""


class PluginError(PyimganoError, RuntimeError):
    """A plugin failed to import, register, or returned invalid specs."""


class ComponentNotFound(PyimganoError, LookupError):
    """No registered component (detector, dataset, metric, post-processor) has that name."""


class NameConflict(PyimganoError, LookupError):
    """A bare component name is registered by more than one plugin."""


class InvalidParams(PyimganoError, ValueError):
    """Parameters given to a component do not validate against its params model."""


class ConfigError(PyimganoError, ValueError):
    """The benchmark configuration (flags or bench.toml) is invalid."""


class ContractViolation(PyimganoError, ValueError):
    """Output of a plugin (or input to the core) does not satisfy a pyimgano contract.

    The message names the plugin, the component, the field, what was expected and what
    was found, e.g. ``faiss:patchcore returned anomaly maps of shape (8, 64, 64);
    expected (8, 256, 256)``.
    """

    def __init__(
        self,
        *,
        component: str,
        field: str,
        expected: str,
        actual: str,
        plugin: str | None = None,
        detail: str | None = None,
    ) -> None:
        self.plugin = plugin
        self.component = component
        self.field = field
        self.expected = expected
        self.actual = actual
        self.detail = detail
        who = component if (plugin is None or component.startswith(f"{plugin}:")) else f"{plugin}:{component}"
        message = f"{who} returned {field} {actual}; expected {expected}"
        if detail:
            message += f" ({detail})"
        super().__init__(message)


class ImageLoadError(PyimganoError, ValueError):
    """An image could not be read or converted; the message names the file."""


class ImageTooLarge(ImageLoadError):
    """An image is larger than the pixel limit (:mod:`pyimgano.limits`); names the file and the limit."""


class DatasetError(PyimganoError, ValueError):
    """A data set's layout or files are wrong; the message names the path."""


class MetricError(PyimganoError, ValueError):
    """Inputs to a metric are invalid, or the metric is undefined for them."""


class NotFittedError(PyimganoError, RuntimeError):
    """A detector was used before ``fit`` (or before a threshold was set)."""


class WeightsError(PyimganoError, ValueError):
    """A network weights file is missing, unreadable, or does not fit the architecture."""


class ModelLoadError(PyimganoError, RuntimeError):
    """A saved model directory is missing, corrupt, tampered with, over a limit, or needs an
    absent/incompatible plugin; the message names the file."""


class SavedFileError(PyimganoError, ValueError):
    """A file pyimgano wrote and reads back (a benchmark's job record) is corrupt, over its
    size limit, or holds a value outside its bounds; the message names the file and field."""


class OutputError(PyimganoError, OSError):
    """An output could not be written (a full disk, no permission, a folder that is not ours
    to replace); what was there before is left as it was."""


def os_reason(exc: OSError, with_file: bool = True) -> str:
    """``/path: No space left on device`` from an :class:`OSError` (its own text when it has no strerror)."""
    if not exc.strerror:
        return str(exc)
    return f"{exc.filename}: {exc.strerror}" if exc.filename and with_file else exc.strerror


class OutputExists(OutputError, FileExistsError):
    """An output path names something that must not be replaced (a file, a folder of other files)."""


class ExportError(PyimganoError, RuntimeError):
    """A detector cannot be exported, or exporting it failed; the message names the detector and format."""


def validation_problems(exc: Any, model: Any = None, top: str = "(top level)", values: Any = None) -> str:
    """A pydantic ``ValidationError`` as one line: ``field: message; field: message``.

    The one place where pyimgano turns a validation into words (parameters, settings, config
    files, model files, manifests). A validator's own words lose pydantic's "Value error, "
    prefix; the messages of a field typed as a union of ``model`` (``float | Literal["auto"]``)
    are joined into one problem with "or"; unknown fields are listed together, with the
    closest valid name for each and the valid names once. ``top`` names a problem of the
    whole input (a location-less error). ``values``: the input as given (a mapping), so
    that each problem shows the value it is about (``val_fraction 1.5: ...``).
    """
    import difflib

    problems: list[str] = []
    unknown: list[str] = []
    alternatives: dict[str, tuple[int, list[str]]] = {}  # union-typed field -> (its slot, one message per member)
    for err in exc.errors():
        loc = err["loc"]
        msg = err["msg"].removeprefix("Value error, ")
        if model is not None and len(loc) == 2 and _is_union(model, loc[0]):  # loc[1] names the union member
            _, msgs = alternatives.setdefault(str(loc[0]), (len(problems), []))
            if not msgs:
                problems.append("")
            msgs.append(msg)
            continue
        where = ".".join(str(p) for p in loc) or top
        if values is not None and len(loc) == 1 and loc[0] in values:
            where = f"{where} {values[loc[0]]!r}"
        if model is not None and err.get("type") == "extra_forbidden":
            unknown.append(where)
        else:
            problems.append(f"{where}: {msg}")
    for name, (slot, msgs) in alternatives.items():  # "Input should be <= 1" + "Input should be 'auto'"
        rest = [m.removeprefix("Input should be ") for m in msgs[1:]]
        shown = f"{name} {values[name]!r}" if values is not None and name in values else name
        problems[slot] = f"{shown}: {' or '.join([msgs[0], *rest])}"
    if unknown:
        valid = sorted(model.model_fields)
        close = {name: difflib.get_close_matches(name, valid, n=1) for name in unknown}
        if len(unknown) == 1:
            guess = close[unknown[0]]
            text = f"{unknown[0]}: unknown parameter" + (f" (did you mean {guess[0]!r}?)" if guess else "")
        else:
            guesses = [f"{match[0]!r} for {name}" for name, match in close.items() if match]
            text = f"{', '.join(unknown)}: unknown parameters" + (
                f" (did you mean {', '.join(guesses)}?)" if guesses else "")
        problems.append(f"{text}; valid parameters: {', '.join(valid) or 'none'}")
    return "; ".join(problems)


def _is_union(model: Any, name: Any) -> bool:
    """Whether field ``name`` of ``model`` is typed as a union (``float | Literal["auto"]``)."""
    import types
    import typing

    field = model.model_fields.get(name) if isinstance(name, str) else None
    return field is not None and typing.get_origin(field.annotation) in (typing.Union, types.UnionType)


def env_flag(name: str) -> bool:
    """Whether environment variable ``name`` is set to a true value (1, true, yes, on)."""
    import os

    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def short_error(exc: BaseException) -> str:
    """An exception as one bounded line of text (type and message)."""
    text = f"{type(exc).__name__}: {exc}".strip()
    return text if len(text) < 2000 else text[:2000] + "..."
