"""Error types users can catch.

Every error pyimgano raises on purpose derives from :class:`PyimganoError`, and each
also derives from the built-in exception a Python user would expect (``ValueError``,
``LookupError``...), so generic ``except ValueError`` code keeps working.
"""

from __future__ import annotations


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
