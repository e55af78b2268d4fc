"""``core:exported``: a detector that runs an exported folder without torch.

Each image goes through the manifest's geometry (:class:`pyimgano.preprocess.Preprocess`,
the same resize the source detector used), images of one network size are stacked into
batches (``batch_size``, and at most the export's ``max_batch``), the graph gives scores
and maps at the network size, and each map is taken back to its image's own size by the
geometry (:meth:`~pyimgano.preprocess.Preprocess.map_to_original`).

The detector is fitted at export time: ``fit`` opens the folder named by ``path`` and ignores
the images it is given (so ``pyimgano benchmark --detector exported --set path=DIR`` runs
the exported model on any data set); scoring opens it on first use.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from pyimgano.detector import Detector
from pyimgano.errors import ExportError, InvalidParams, ModelLoadError
from pyimgano.preprocess import Preprocess, resize_map
from pyimgano.runtime.engines import Engine, open_engine
from pyimgano.runtime.manifest import EXPORT_FILE, ExportManifest, read_manifest
from pyimgano.runtime.params import ExportedParams

_SESSION_PARAMS = frozenset({"path", "engine", "num_threads"})
_PROBE = 1000  # the side of the probe images refused_inputs measures the geometry with


def refused_inputs(geometry: Preprocess, min_size: int) -> str | None:
    """Which images an export refuses that its source detector scores (one phrase), or None:
    those whose shorter side the geometry makes smaller than the graph's ``min_size``."""
    probes = [(_PROBE, _PROBE), (_PROBE // 4, _PROBE * 4), (7, _PROBE * 9)]
    shapes = {geometry.output_shape(p) for p in probes}
    if len(shapes) == 1:  # a fixed input size (stretched or cropped): every image or none
        (shape,) = shapes
        return "every image" if min(shape) < min_size else None
    if geometry.resize is None:
        return f"images with a side below {min_size} pixels"

    def accepted(width: int) -> bool:
        return min(geometry.output_shape((_PROBE, width))) >= min_size

    if not accepted(_PROBE):
        return "every image"
    low, high = _PROBE, _PROBE * 10**5  # accepted, refused (or the largest tried)
    if accepted(high):
        return None
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if accepted(middle) else (low, middle)
    ratio = math.floor(low / _PROBE * 10) / 10  # rounded down: every image up to this ratio is accepted
    return (f"images more elongated than {ratio:g}:1 (the shorter side becomes less than {min_size} "
            "pixels at the graph's input)")


class ExportedDetector(Detector):
    """Runs ``model.onnx`` (or OpenVINO IR) from a ``pyimgano export`` folder; parameters:
    :class:`pyimgano.runtime.params.ExportedParams`."""

    params_model = ExportedParams
    component = "core:exported"
    plugin = "core"

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.manifest_: ExportManifest | None = None
        self.geometry_: Preprocess | None = None
        self._directory: Path | None = None
        self._engine: Engine | None = None

    def set_params(self, **params: Any) -> ExportedDetector:
        super().set_params(**params)
        if _SESSION_PARAMS & params.keys():
            self._engine = None
            if "path" in params and self.path is not None:
                self._directory = None
                self.is_fitted_ = False
        return self

    # -- opening ----------------------------------------------------------------------
    def _open(self, directory: Path) -> None:
        manifest = read_manifest(directory)
        try:
            geometry = Preprocess.model_validate(manifest.geometry)
        except Exception as exc:  # noqa: BLE001 - pydantic ValidationError
            raise ModelLoadError(
                f"{directory / EXPORT_FILE}: geometry {manifest.geometry} is not one this pyimgano-core knows "
                f"({str(exc).splitlines()[0]}); upgrade pyimgano-core"
            ) from None
        engine = open_engine(directory / manifest.graph, self.engine, manifest.input.name, self.num_threads)
        self._check_input(directory, manifest, geometry, engine)
        self.manifest_, self.geometry_, self._engine, self._directory = manifest, geometry, engine, directory
        # the spec says core:exported may have maps; this instance has them when its graph does
        self.capabilities = self.capabilities.model_copy(update={"pixel_maps": manifest.outputs.map is not None})
        if self.threshold_ is None and manifest.source.threshold is not None:
            self.threshold_ = float(manifest.source.threshold)
        self.is_fitted_ = True

    @staticmethod
    def _check_input(directory: Path, manifest: ExportManifest, geometry: Preprocess, engine: Engine) -> None:
        dims = engine.input_dims
        graph = directory / manifest.graph
        if len(dims) != 4 or (dims[1] is not None and dims[1] != 3):
            raise ModelLoadError(f"{graph}: the graph input has shape {dims}; the runtime feeds N x 3 x H x W images")
        fixed = tuple(d for d in dims[2:] if d is not None)
        if len(fixed) == 2 and geometry.resize is not None:
            produced = geometry.output_shape((fixed[0], fixed[1]))
            if produced != fixed:
                raise ModelLoadError(
                    f"{graph}: the graph takes {fixed[0]}x{fixed[1]} images, but the manifest's geometry "
                    f"makes {produced[0]}x{produced[1]}; export the model again"
                )

    def _ready(self) -> Engine:
        if self._engine is None:
            directory = self._directory if self._directory is not None else self._path_param()
            self._open(directory)
        return self._engine

    def _path_param(self) -> Path:
        if self.path is None:
            raise InvalidParams(f"{self._describe()} needs path=FOLDER, a folder written by pyimgano export")
        return Path(self.path).expanduser()

    def _check_fitted(self) -> None:
        if not self.is_fitted_ and self.path is not None:
            self._ready()
        super()._check_fitted()

    # -- detector API -------------------------------------------------------------------
    def _fit(self, images: list[np.ndarray]) -> None:
        del images  # fitted at export time
        self._directory = None
        self._engine = None
        self._open(self._path_param())

    def _score(self, images: list[np.ndarray]) -> tuple[np.ndarray, Any]:
        engine = self._ready()
        manifest, geometry = self.manifest_, self.geometry_
        limit = min(self.batch_size, manifest.max_batch or self.batch_size)
        scores = np.empty(len(images), dtype=np.float64)
        want_maps = manifest.outputs.map is not None
        maps: list[np.ndarray | None] = [None] * len(images)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            groups.setdefault(geometry.output_shape(image.shape), []).append(i)
        for (height, width), members in groups.items():
            if min(height, width) < manifest.input.min_size:
                raise ExportError(
                    f"{self._describe()}: image {members[0]} becomes {height}x{width} at the graph's input, "
                    f"below its minimum side of {manifest.input.min_size} pixels (this export refuses "
                    f"{refused_inputs(geometry, manifest.input.min_size)}; the source detector scores them)"
                )
            for start in range(0, len(members), limit):
                chunk = members[start : start + limit]
                batch = self._batch([images[i] for i in chunk], geometry, manifest, (height, width))
                out = engine.run(batch)
                chunk_scores = self._output(out, manifest.outputs.score, "score")
                scores[chunk] = chunk_scores.reshape(len(chunk), -1)[:, 0]
                if want_maps:
                    chunk_maps = self._output(out, manifest.outputs.map, "map")
                    chunk_maps = chunk_maps.reshape(len(chunk), *chunk_maps.shape[-2:])
                    for k, i in enumerate(chunk):
                        amap = chunk_maps[k]
                        if amap.shape != (height, width):
                            amap = resize_map(amap, (height, width))
                        maps[i] = geometry.map_to_original(amap, images[i].shape[:2])
        if not want_maps:
            return scores, None
        if all(m.shape == maps[0].shape for m in maps):
            return scores, np.stack(maps)
        return scores, maps

    @staticmethod
    def _batch(images: list[np.ndarray], geometry: Preprocess, manifest: ExportManifest,
               size: tuple[int, int]) -> np.ndarray:
        batch = np.empty((len(images), 3, *size), dtype=np.float32)
        as_float = manifest.resize_dtype == "float32"
        for k, image in enumerate(images):
            resized = geometry.apply_to_image(image.astype(np.float32) if as_float else image)
            batch[k] = np.moveaxis(resized, 2, 0)
        batch /= np.float32(manifest.input.pixel_divisor)
        return batch

    def _output(self, out: dict[str, np.ndarray], name: str, what: str) -> np.ndarray:
        if name not in out:
            raise ExportError(f"{self._directory / self.manifest_.graph}: the graph has no {what} output {name!r} "
                              f"(outputs: {', '.join(out)})")
        return np.asarray(out[name], dtype=np.float32)

    # -- persistence --------------------------------------------------------------------
    def _get_state(self) -> dict[str, np.ndarray]:
        return {}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        del state

    def _save_files(self, directory: Path) -> None:
        self._ready()
        source = self._directory
        if source.resolve() == Path(directory).resolve():
            return
        for name in [EXPORT_FILE, *self.manifest_.files]:
            target = Path(directory) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / name, target)

    def _load_files(self, directory: Path) -> None:
        self._open(Path(directory))

    def __repr__(self) -> str:
        where = self._directory if self._directory is not None else self.path
        return f"ExportedDetector(path={str(where)!r}, engine={self.engine!r})"
