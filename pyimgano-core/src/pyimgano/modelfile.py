"""A saved model folder's two files, read as untrusted input and checked before use.

``pyimgano-model.json`` is validated against :class:`ModelFile` (format, detector, plugin,
plugin version, params, threshold, state file); its ``state_file`` must name a file inside
the folder. ``state.npz`` (numpy's zip of ``.npy`` arrays, never pickle) is checked against
the state limits of :mod:`pyimgano.limits` from its zip directory and array headers before
anything is decompressed, then against the detector's declared expectations
(:class:`StateArray`: names, dtypes, shapes, finite values) before the detector sees it.
Every problem is one line naming the file.
"""

from __future__ import annotations

import json
import math
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pyimgano.errors import ContractViolation, ModelLoadError, PyimganoError

MODEL_CONFIG_FILE = "pyimgano-model.json"
MODEL_STATE_FILE = "state.npz"
MODEL_FORMAT = 1
MAX_MODEL_CONFIG_BYTES = 16 * 1024**2  # parameters and a threshold: far below this


class ModelFile(BaseModel):
    """The content of ``pyimgano-model.json`` (format 1)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    format: Literal[1] = Field(description="file format version")
    detector: str = Field(pattern=r"^[^:\s]+(:[^:\s]+)?$", description="qualified detector name, plugin:name")
    plugin: str | None = Field(None, min_length=1, description="plugin that registered the detector")
    plugin_version: str | None = Field(None, description="version of the plugin's distribution at save time")
    params: dict[str, Any] = Field(default_factory=dict, description="detector parameters, as get_params() gives them")
    threshold: float | None = Field(None, allow_inf_nan=False, description="score above which predict says 1")
    state_file: str = Field(MODEL_STATE_FILE, min_length=1, description="the state arrays, relative to the folder")

    @field_validator("plugin_version")
    @classmethod
    def _version_text(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _plugin_matches_detector(self) -> ModelFile:
        if self.plugin is not None and self.detector.split(":", 1)[0] != self.plugin:
            raise ValueError(f"detector {self.detector!r} is not a detector of plugin {self.plugin!r}")
        return self

    @property
    def plugin_name(self) -> str:
        return self.plugin or self.detector.split(":", 1)[0]


_PHRASES = {
    "string_type": "expected a string",
    "float_type": "expected a number",
    "finite_number": "expected a finite number",
    "dict_type": "expected an object",
    "extra_forbidden": "unknown field",
    "missing": "missing",
    "string_pattern_mismatch": "expected a detector name, plugin:name",
    "string_too_short": "must not be empty",
}


def _problem(err: Mapping[str, Any], fields: Any = ()) -> str:
    where = ".".join(str(p) for p in err["loc"])
    phrase = _PHRASES.get(err["type"], err["msg"].removeprefix("Value error, "))
    if err["type"] == "dict_type" and err["loc"][-1:] == ("params",):
        phrase += " of parameters"
    if err["type"] == "extra_forbidden" and len(err["loc"]) == 1 and fields:
        phrase += f" (fields: {', '.join(fields)})"
    if err["type"] != "missing" and where:
        shown = json.dumps(err.get("input"), default=str)
        phrase += f", got {shown if len(shown) <= 60 else shown[:57] + '...'}"
    return f"{where}: {phrase}" if where else phrase


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def read_json_object(path: Path, what: str, error: type[Exception] = ModelLoadError,
                     max_bytes: int = MAX_MODEL_CONFIG_BYTES, allow_nan: bool = False) -> dict[str, Any]:
    """The JSON object of a file pyimgano wrote and reads back (a model, pipeline or export
    manifest, a job record): size-capped before it is read, UTF-8, no ``NaN``/``Infinity``
    unless ``allow_nan`` (a job record's undefined metric); any problem is one ``error`` line
    naming the file (``what`` says what it should be). The caller validates the fields."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            article = "an" if what[:1] in "aeiou" else "a"
            raise error(f"{path}: {size:,} bytes, far more than {article} {what} holds (at most {max_bytes:,}); refused")
        text = path.read_bytes().decode("utf-8-sig")
        raw = json.loads(text) if allow_nan else json.loads(text, parse_constant=_refuse_constant)
    except OSError as exc:
        raise error(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, NaN
        raise error(f"{path}: corrupt {what} ({exc})") from None
    if not isinstance(raw, dict):
        raise error(f"{path}: corrupt {what} (a JSON {type(raw).__name__}, not an object)")
    return raw


def read_model_file(directory: Path) -> ModelFile:
    """The validated ``pyimgano-model.json`` of ``directory``; :class:`ModelLoadError` otherwise."""
    path = directory / MODEL_CONFIG_FILE
    if not path.is_file():
        raise ModelLoadError(f"{directory}: not a saved pyimgano model (no {MODEL_CONFIG_FILE})")
    raw = read_json_object(path, "model config")
    version = raw.get("format")
    if type(version) is not int or version != MODEL_FORMAT:
        raise ModelLoadError(f"{path}: model format {version!r} is not supported (this pyimgano reads format "
                             f"{MODEL_FORMAT}; a newer one may need a newer pyimgano)")
    try:
        return ModelFile.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(_problem(err, ModelFile.model_fields) for err in exc.errors())
        raise ModelLoadError(f"{path}: invalid model file: {problems}") from None


def state_path(directory: Path, model: ModelFile) -> Path:
    """The state file the model names, confined to ``directory``."""
    from pyimgano.userfiles import confine

    source = str(directory / MODEL_CONFIG_FILE)
    path = confine(directory, model.state_file, source, ModelLoadError, what="state_file")
    if path == directory or Path(model.state_file).name in ("", ".", ".."):
        raise ModelLoadError(f"{source}: state_file {model.state_file!r} names the folder itself, not a file")
    return path


# -- the state file ------------------------------------------------------------------
def _refuse(path: Path, message: str) -> ModelLoadError:
    return ModelLoadError(f"{path}: {message}")


def _array_header(handle: Any, path: Path, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from a ``.npy`` header; refuses pickled objects and structured arrays."""
    fmt = np.lib.format
    version = fmt.read_magic(handle)
    if version == (1, 0):
        shape, _, dtype = fmt.read_array_header_1_0(handle)
    elif version == (2, 0):
        shape, _, dtype = fmt.read_array_header_2_0(handle)
    else:
        raise _refuse(path, f"array {name!r} has .npy format {version}, which pyimgano does not write")
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise _refuse(path, f"array {name!r} has dtype {dtype}; a state holds plain numbers, booleans or text "
                            "(no Python objects, no pickle)")
    return tuple(int(n) for n in shape), dtype


def read_state(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a state file, after the size checks (:mod:`pyimgano.limits`).

    The zip directory's sizes and each array's header are checked before any array is
    decompressed: the state limit on the total, the inflation limit on each array, and each
    header against its member's size (numpy allocates what a header claims).
    """
    from pyimgano.limits import ENV_MAX_STATE_BYTES, MAX_STATE_INFLATION, STATE_INFLATION_FLOOR, max_state_bytes

    if not path.is_file():
        raise _refuse(path, "the model state file is missing")
    limit = max_state_bytes()
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            names = [m.filename for m in members]
            if len(set(names)) != len(names):
                raise _refuse(path, "unreadable model state (an array name appears twice)")
            total = 0
            for member in members:
                if not member.filename.endswith(".npy") or member.is_dir():
                    raise _refuse(path, f"unreadable model state ({member.filename!r} is not a .npy array)")
                inflation = member.file_size / max(member.compress_size, 1)
                if member.file_size > STATE_INFLATION_FLOOR and inflation > MAX_STATE_INFLATION:
                    raise _refuse(path, f"array {member.filename[:-4]!r} would inflate from {member.compress_size:,} "
                                        f"to {member.file_size:,} bytes ({inflation:,.0f} times, more than the "
                                        f"limit of {MAX_STATE_INFLATION}); refused as a decompression bomb")
                total += member.file_size
            if total > limit:
                raise _refuse(path, f"model state of {total:,} bytes exceeds the limit of {limit:,} bytes "
                                    f"(set {ENV_MAX_STATE_BYTES} to change it)")
            state = {}
            for member in members:
                name = member.filename[:-4]
                with archive.open(member) as handle:
                    shape, dtype = _array_header(handle, path, name)
                    claimed = math.prod(shape) * dtype.itemsize
                    if claimed > member.file_size:
                        raise _refuse(path, f"array {name!r} claims shape {shape} of {dtype} ({claimed:,} bytes) "
                                            f"but holds {member.file_size:,} bytes; refused")
                with archive.open(member) as handle:
                    state[name] = np.lib.format.read_array(handle, allow_pickle=False)
    except PyimganoError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError) as exc:
        raise _refuse(path, f"unreadable model state ({exc})") from None
    return state


# -- what a detector expects of its state ---------------------------------------------
_KINDS = {"float": "f", "int": "iu", "bool": "b", "str": "U"}


@dataclass(frozen=True)
class StateArray:
    """What one array of a detector's saved state must look like.

    ``dtype``: ``"float"``, ``"int"`` (signed or unsigned), ``"bool"``, ``"str"``, or a numpy
    dtype name (``"float32"``, ``"uint8"``) for that exact type. ``shape``: one entry per
    dimension, an int (that size) or a name: a size the detector knows
    (:meth:`pyimgano.Detector.state_sizes`, by default its integer parameters, so
    ``"image_size"`` means the ``image_size`` parameter), else any size of at least 1 that is
    the same wherever the name appears. ``finite``: float values must be finite.
    ``required``: False for an array that may be absent.
    """

    dtype: str
    shape: tuple[int | str, ...] = ()
    finite: bool = True
    required: bool = True

    def __post_init__(self) -> None:
        if self.dtype not in _KINDS:
            np.dtype(self.dtype)  # an unknown name fails when the class is defined
        for dim in self.shape:
            if isinstance(dim, bool) or not isinstance(dim, (int, str)) or (isinstance(dim, int) and dim < 0):
                raise TypeError(f"StateArray shape entries are sizes (int >= 0) or names (str), got {dim!r}")

    def dtype_ok(self, dtype: np.dtype) -> bool:
        if self.dtype in _KINDS:
            return dtype.kind in _KINDS[self.dtype]
        return dtype == np.dtype(self.dtype)


def _shape_text(shape: tuple[int | str, ...], bound: Mapping[str, int]) -> str:
    parts = [f"{d}={bound[d]}" if isinstance(d, str) and d in bound else str(d) for d in shape]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def state_problem(
    state: Mapping[str, Any], expected: Mapping[str, StateArray], sizes: Mapping[str, int], who: str
) -> str | None:
    """What is wrong with ``state`` for ``who`` (one line), or None when it matches ``expected``.

    Names first (a state with none of the expected arrays was saved by another detector),
    then each array's dtype, shape (``sizes`` binds named sizes) and values.
    """
    required = [name for name, spec in expected.items() if spec.required]
    held = ", ".join(sorted(state)) or "nothing"
    if required and not any(name in state for name in expected):
        return f"holds {held}, not the state of {who} ({', '.join(required)}): was it saved by another detector?"
    missing = [name for name in required if name not in state]
    if missing:
        return f"no array {', '.join(map(repr, missing))} (it holds {held}); {who} needs it"
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        return f"unexpected array {', '.join(map(repr, unexpected))}; {who} saves only {', '.join(expected)}"
    bound = dict(sizes)
    first_seen: dict[str, str] = {}
    for name, spec in expected.items():
        if name not in state:
            continue
        array = np.asarray(state[name])
        if not spec.dtype_ok(array.dtype):
            return f"{name} has dtype {array.dtype}; {who} expects {spec.dtype}"
        wanted = _shape_text(spec.shape, bound)
        ok = array.ndim == len(spec.shape)
        for dim, size in zip(spec.shape, array.shape) if ok else ():
            if isinstance(dim, int):
                ok = ok and size == dim
            elif dim in bound:
                ok = ok and size == bound[dim]
            elif size < 1:
                ok = False
            else:
                bound[dim], first_seen[dim] = size, name
        if not ok:
            others = dict.fromkeys(d for d in spec.shape if isinstance(d, str) and first_seen.get(d, name) != name)
            note = "".join(f"; {d} as in {first_seen[d]}" for d in others)
            return f"{name} has shape {tuple(array.shape)}; {who} expects {wanted}{note}"
        if spec.finite and array.dtype.kind in "fc":
            bad = int(array.size - np.count_nonzero(np.isfinite(array)))
            if bad:
                return f"{name} holds {bad:,} non-finite value(s) (NaN or infinity)"
    return None


def check_loaded_state(detector: Any, state: Mapping[str, Any], path: Path) -> None:
    """On load: the state file's arrays are what the detector declares (:class:`ModelLoadError` otherwise)."""
    expected = getattr(detector, "state_arrays", None)
    if expected:
        problem = state_problem(state, expected, detector.state_sizes(), detector.component)
        if problem:
            raise ModelLoadError(f"{path}: {problem}; refused")


def check_saved_state(detector: Any, state: Mapping[str, Any]) -> None:
    """Before ``save``: the state a detector produced matches its own declaration (a plugin bug otherwise)."""
    expected = getattr(detector, "state_arrays", None)
    if expected:
        problem = state_problem(state, expected, detector.state_sizes(), detector.component)
        if problem:
            raise ContractViolation(
                component=detector.component, plugin=detector.plugin, field="a state",
                actual="that does not match its state_arrays", expected="what they declare",
                detail=f"{problem}; fit again after changing a parameter the state depends on",
            )
