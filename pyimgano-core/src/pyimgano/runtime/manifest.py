"""The manifest of an exported model (``pyimgano-export.json``): what the runtime needs to
run the graph, and what the graph came from.

An exported folder holds the graph (``model.onnx``, or ``model.xml`` + ``model.bin`` for
OpenVINO), this manifest, and the runtime detector's own ``pyimgano-model.json`` (so that
:func:`pyimgano.load_detector` and ``pyimgano predict`` open it like any saved model). The
manifest says how an image becomes the graph's input (the geometry policy of
:mod:`pyimgano.preprocess`, the pixel scale, the layout), which outputs are the image score
and the anomaly map, how many images one run may take, the source detector (name,
parameters, plugin version, threshold) and the tools that wrote it. Every file it names
carries its size and SHA-256, and the manifest carries the SHA-256 of its own content
(``content_sha256``), so a modified or truncated graph, or an edited manifest, is refused
before it runs. Every number in it is bounded by its meaning (:data:`MAX_GRAPH_SIDE`,
:data:`MAX_GRAPH_BATCH`), checked when it is read.

A detector plugin's exporter writes the graph and returns a :class:`GraphSpec`; ``pyimgano
export`` completes it into an :class:`ExportManifest`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pyimgano.errors import ModelLoadError, validation_problems
from pyimgano.specs import ExportFormat

EXPORT_FILE = "pyimgano-export.json"
EXPORT_FORMAT = 1
"""Version of the manifest's layout; the runtime refuses a newer one with an upgrade hint."""
MAX_GRAPH_SIDE = 4096
"""Largest side of a graph's input: the largest network input of the project's detectors
(faiss ``image_size`` at most 4096); a geometry that makes more is refused when read."""
MAX_GRAPH_BATCH = 1024
"""Most images one graph run may take (``max_batch``; the runtime's ``batch_size`` has the same bound)."""
MAX_MANIFEST_BYTES = 1024**2
"""A manifest is a few kilobytes; a larger file is refused before it is read."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True, allow_inf_nan=False)


class GraphInput(_Model):
    """The graph's image input: float32, ``layout``, pixel values ``/ pixel_divisor``."""

    name: str = Field(description="input name in the graph")
    layout: Literal["NCHW"] = "NCHW"
    pixel_divisor: float = Field(255.0, gt=0, le=65535,
                                 description="RGB values 0-255 are divided by this (255: [0, 1] input)")
    size: tuple[int, int] | None = Field(None, description="fixed (height, width) of the graph; None: any size")
    min_size: int = Field(1, ge=1, le=MAX_GRAPH_SIDE, description="smallest height or width the graph accepts")

    @field_validator("size")
    @classmethod
    def _a_size(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and not all(1 <= side <= MAX_GRAPH_SIDE for side in value):
            raise ValueError(f"sides must be between 1 and {MAX_GRAPH_SIDE}, got {list(value)}")
        return value


class GraphOutputs(_Model):
    """Names of the graph outputs the runtime reads."""

    score: str = Field(description="image scores, shape (N,) or (N, 1)")
    map: str | None = Field(None, description="anomaly maps at the input's size, (N, H, W) or (N, 1, H, W); None: no maps")


class GraphSpec(_Model):
    """What a detector's exporter returns after writing its graph into the export folder."""

    graph: str = Field("model.onnx", description="the graph file, relative to the folder")
    input: GraphInput
    outputs: GraphOutputs
    geometry: dict[str, Any] = Field(description="the pyimgano.preprocess.Preprocess policy turning an image into the input")
    resize_dtype: Literal["float32", "uint8"] = Field(
        "float32", description="images are resized as float32 (no 8-bit rounding) or as uint8"
    )
    max_batch: int | None = Field(None, ge=1, le=MAX_GRAPH_BATCH,
                                  description="most images per run (bounds the graph's memory); None: any")
    exported_with: dict[str, str | int | None] = Field(default_factory=dict, description="tools and versions")
    notes: list[str] = Field(default_factory=list, description="what the user should know about this export")

    @field_validator("geometry")
    @classmethod
    def _bounded_geometry(cls, value: dict[str, Any]) -> dict[str, Any]:
        """The geometry's sizes within :data:`MAX_GRAPH_SIDE` (an unknown policy is the runtime's to refuse)."""
        for key in ("resize", "crop"):
            size = value.get(key)
            sides = [size] if not isinstance(size, (list, tuple)) else list(size)
            if size is not None and not all(type(s) is int and 1 <= s <= MAX_GRAPH_SIDE for s in sides):
                raise ValueError(f"{key} {size!r}: sides must be whole numbers between 1 and {MAX_GRAPH_SIDE} "
                                 "(the largest network input)")
        multiple = value.get("multiple", 1)
        if not (type(multiple) is int and 1 <= multiple <= MAX_GRAPH_SIDE):
            raise ValueError(f"multiple {multiple!r}: must be a whole number between 1 and {MAX_GRAPH_SIDE}")
        return value


class FileEntry(_Model):
    bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class SourceInfo(_Model):
    detector: str
    plugin: str | None = None
    plugin_version: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    threshold: float | None = None


class ExportManifest(GraphSpec):
    """The whole manifest as written to ``pyimgano-export.json``."""

    format: int = EXPORT_FORMAT
    export_format: ExportFormat = "onnx"
    files: dict[str, FileEntry] = Field(description="every file the runtime reads, with its size and SHA-256")
    source: SourceInfo
    check: dict[str, Any] | None = Field(None, description="the export's own comparison with the source detector")
    content_sha256: str | None = Field(None, description="SHA-256 of this manifest's content without this field "
                                                         "(content_digest); None in exports written before it")


def content_digest(data: dict[str, Any]) -> str:
    """SHA-256 of a manifest's content without ``content_sha256`` (sorted keys, compact JSON)."""
    body = {key: value for key, value in data.items() if key != "content_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def file_entry(path: Path) -> FileEntry:
    from pyimgano.userfiles import sha256_file

    sha256, size = sha256_file(path)
    return FileEntry(bytes=size, sha256=sha256)


def write_manifest(directory: Path, manifest: ExportManifest) -> Path:
    path = Path(directory) / EXPORT_FILE
    data = manifest.model_dump(mode="json")
    data["content_sha256"] = content_digest(data)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def read_manifest(directory: str | Path) -> ExportManifest:
    """The manifest of an exported folder, checked: format version, fields, and every file's checksum."""
    directory = Path(directory)
    path = directory / EXPORT_FILE
    if not path.is_file():
        raise ModelLoadError(f"{directory}: not an exported pyimgano model (no {EXPORT_FILE}); write one with pyimgano export")
    from pyimgano.modelfile import read_json_object

    raw = read_json_object(path, "export manifest", max_bytes=MAX_MANIFEST_BYTES)
    version = raw.get("format")
    if isinstance(version, int) and not isinstance(version, bool) and version > EXPORT_FORMAT:
        from pyimgano import __version__

        raise ModelLoadError(
            f"{path}: export format {version} is newer than this pyimgano-core {__version__} reads "
            f"(format {EXPORT_FORMAT}); upgrade it: pip install -U 'pyimgano-core[onnx]'"
        )
    if version != EXPORT_FORMAT:
        raise ModelLoadError(f"{path}: export format {version!r} is not supported (this pyimgano reads {EXPORT_FORMAT})")
    try:
        manifest = ExportManifest.model_validate(raw)
    except ValidationError as exc:
        raise ModelLoadError(f"{path}: invalid manifest: {validation_problems(exc)}") from None
    if raw.get("content_sha256") is not None and raw["content_sha256"] != content_digest(raw):
        raise ModelLoadError(f"{path}: does not match its own checksum (content_sha256): edited after export; "
                             "export the model again")
    verify_files(directory, manifest)
    return manifest


def verify_files(directory: Path, manifest: ExportManifest) -> None:
    """Every file of the manifest is there with its recorded size and SHA-256."""
    if manifest.graph not in manifest.files:
        raise ModelLoadError(f"{directory / EXPORT_FILE}: the graph {manifest.graph} has no checksum entry")
    for name, expected in manifest.files.items():
        path = directory / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise ModelLoadError(f"{directory / EXPORT_FILE}: file name {name!r} points outside the folder")
        if not path.is_file():
            raise ModelLoadError(f"{path}: missing (named by {EXPORT_FILE}); export the model again")
        actual = file_entry(path)
        if actual != expected:
            what = (f"{actual.bytes} of {expected.bytes} bytes: truncated" if actual.bytes < expected.bytes
                    else "modified")
            raise ModelLoadError(
                f"{path}: does not match its checksum in {EXPORT_FILE} ({what} after export); export the model again"
            )
