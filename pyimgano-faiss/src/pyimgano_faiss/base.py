"""What the faiss plugin's detectors share: a lazily built backbone, input geometry, batches.

Parameters live in the params models of :mod:`pyimgano_faiss.plugin` (the classes the specs
register); the base :class:`pyimgano.Detector` validates them into ``self.config`` and
exposes each as an attribute (``self.image_size``).

Input geometry: each image becomes one or more *network inputs* (:class:`Unit`): it is
resized by :attr:`BackboneDetector.geometry` (a :class:`pyimgano.preprocess.Preprocess`:
``image_size`` as a pixel budget with the aspect ratio kept, or stretched to a square, sides
rounded to the backbone's stride), then, with ``tile_size``, cut into overlapping tiles.
Inputs of equal shape are batched together, so images of different sizes in one call are
fine. ``image_size="auto"`` is resolved at fit from the training images
(:func:`pyimgano.preprocess.auto_side`) and saved with the model. The torch part is one
function of a preprocessed tensor, :meth:`BackboneDetector.forward`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from pyimgano import Detector, StateArray
from pyimgano.errors import NotFittedError
from pyimgano.limits import ENV_MAX_IMAGE_PIXELS, max_image_pixels
from pyimgano.preprocess import AUTO_MAX_SIDE, Box, Preprocess, auto_side, round_to_multiple, tile_boxes
from pyimgano_faiss.backbones import Backbone, build_backbone, images_to_tensor
from pyimgano_faiss.devices import configure_threads, native_bfloat16, resolve_device
from pyimgano_faiss.engines import openvino_backbone, resolve_engine
from pyimgano_faiss.errors import InputGeometryError

# one network input (an image or a tile) holds at most this many pixels: a 4096 x 4096 input
# already needs ~2 GB of activations in EfficientNet-Lite0's early stages
MAX_INPUT_PIXELS = 4096 * 4096
# a forward pass holds at most this many input pixels (8 images at 512 x 512): larger inputs
# go in smaller batches, so memory stays bounded whatever image_size is
BATCH_PIXELS = 8 * 512 * 512
# the saved arrays of what fit chose (absent in models saved before they existed)
GEOMETRY_STATE = {
    "input_size": StateArray("str", (), required=False),
    "precision": StateArray("str", (), required=False),
}


@lru_cache(maxsize=4)
def _shared_backbone(
    backbone: str, layers: tuple[str, ...] | None, weights: str | None, stamp: int | None, pretrained: bool, device: str
) -> Backbone:
    """Frozen backbones are shared by detectors in one process (built once per configuration)."""
    del stamp  # part of the cache key only: a rewritten weights file is loaded again
    return build_backbone(backbone, layers, weights=weights, pretrained=pretrained).to(device)


# parameters the built backbone depends on: changing one builds it again on next use
_BACKBONE_PARAMS = frozenset({"backbone", "layers", "weights", "pretrained", "device"})


@dataclass(frozen=True)
class Unit:
    """One network input: image ``image``'s resized frame of ``frame`` (H, W), or the tile ``box`` of it."""

    image: int
    frame: tuple[int, int]
    box: Box

    @property
    def shape(self) -> tuple[int, int]:
        return self.box[2], self.box[3]

    @property
    def tiled(self) -> bool:
        return self.shape != self.frame


class BackboneDetector(Detector):
    """Base of detectors built on frozen backbone features (torch) and faiss search.

    Subclasses set ``params_model`` to a model with the fields of
    ``pyimgano_faiss.plugin._BackboneParams`` (and a ``batch_size``).

    Fitted attributes: ``input_size_`` (the network input side fit used: an int, or
    ``"original"``) and ``precision_`` (``"float32"`` or ``"bfloat16"``).
    """

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._backbone: Backbone | None = None
        self._device: str | None = None
        self._threads = 1
        self.input_size_: int | str | None = None
        self.precision_: str | None = None

    def set_params(self, **params: Any) -> BackboneDetector:
        super().set_params(**params)
        if _BACKBONE_PARAMS & params.keys():
            self._backbone = None
            self._device = None
        return self

    # -- geometry ---------------------------------------------------------------------
    @property
    def stride(self) -> int:
        """The deepest chosen stage's stride: network input sides are multiples of it."""
        return max(self._prepare().reductions)

    def input_side(self) -> int | None:
        """The network input side N in use (None: the images' own size)."""
        if self.image_size == "auto":
            if self.input_size_ is None:
                raise NotFittedError(
                    f"{self.component}: image_size='auto' is chosen from the training images at fit; "
                    "call fit() first or give image_size=N"
                )
            side = self.input_size_
        else:
            side = self.image_size
        return None if side == "original" else int(side)

    @property
    def geometry(self) -> Preprocess:
        """How an input image becomes the network input (before tiling)."""
        return Preprocess(resize=self.input_side(), aspect=self.aspect, multiple=self.stride)

    def _resolve_fit_geometry(self, images: Sequence[np.ndarray]) -> None:
        """Fix ``input_size_`` and ``precision_`` for this fit (``auto`` choices are made here)."""
        if self.image_size == "auto":
            self.input_size_ = auto_side([img.shape for img in images], AUTO_MAX_SIDE, multiple=max(32, self.stride))
        else:
            self.input_size_ = self.image_size
        self.precision_ = self._resolve_precision()

    def _resolve_precision(self) -> str:
        if self.precision != "auto":
            return self.precision
        if self.precision_ is not None:
            return self.precision_
        self._prepare()
        return "bfloat16" if self._device == "cpu" and native_bfloat16() else "float32"

    def _geometry_state(self) -> dict[str, np.ndarray]:
        return {"input_size": np.asarray(str(self.input_size_)), "precision": np.asarray(str(self.precision_))}

    def _set_geometry_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore ``input_size_``/``precision_``; models saved before they existed used the params."""
        size = str(state["input_size"]) if "input_size" in state else str(self.image_size)
        self.input_size_ = int(size) if size.isdigit() else size
        self.precision_ = str(state["precision"]) if "precision" in state else "float32"

    def plan(self, images: Sequence[np.ndarray]) -> list[Unit]:
        """The network inputs of ``images``, in image order (tiles row by row)."""
        geometry = self.geometry
        stride = self.stride
        tile = None if self.tile_size is None else round_to_multiple(self.tile_size, stride)
        limit = min(MAX_INPUT_PIXELS, max_image_pixels())
        units = []
        for i, img in enumerate(images):
            frame = geometry.output_shape(img.shape)
            if tile is None:
                boxes = [(0, 0, frame[0], frame[1])]
            else:
                boxes = tile_boxes(frame[0], frame[1], tile, self.tile_overlap, stride)
            height, width = boxes[0][2], boxes[0][3]
            if height * width > limit:
                raise InputGeometryError(
                    f"{self.component}: image {i} ({img.shape[0]}x{img.shape[1]}) would be a network input of "
                    f"{height}x{width} = {height * width:,} pixels, over the limit of {limit:,} per input "
                    f"(image_size={self.image_size!r}, tile_size={self.tile_size!r}); give tile_size "
                    f"(e.g. 512) or a smaller image_size"
                    + (f" ({ENV_MAX_IMAGE_PIXELS} also bounds it)" if limit < MAX_INPUT_PIXELS else "")
                )
            units.extend(Unit(i, frame, box) for box in boxes)
        return units

    def grid_shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        """The patch grid of a network input of ``shape`` (the shallowest stage's stride)."""
        first = self._prepare().reductions[0]
        return -(-shape[0] // first), -(-shape[1] // first)

    # -- the network --------------------------------------------------------------------
    def prepare(self) -> BackboneDetector:
        """Build the backbone now (otherwise it is built on the first fit or score)."""
        self._prepare()
        return self

    def _prepare(self) -> Backbone:
        """Thread counts, device and the backbone (built on first use, then reused)."""
        self._threads = configure_threads(self.num_threads)
        if self._backbone is None:
            self._device = resolve_device(self.device)
            stamp = os.stat(self.weights).st_mtime_ns if self.weights and os.path.exists(self.weights) else None
            layers = None if self.layers is None else tuple(self.layers)
            self._backbone = _shared_backbone(
                self.backbone, layers, self.weights, stamp, self.pretrained, self._device
            )
        return self._backbone

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """N x 3 x H x W floats in [0, 1] (preprocessed network inputs) -> float32 stage maps.

        Runs under ``torch.inference_mode``, in bfloat16 when ``precision_`` says so, or on
        OpenVINO (``engine``, :mod:`pyimgano_faiss.engines`). A shape the backbone cannot take is
        an :class:`InputGeometryError` naming it.
        """
        from pyimgano.errors import ExportError

        backbone = self._prepare()
        precision = self._resolve_precision()
        x = x.to(self._device, non_blocking=True)
        try:
            if resolve_engine(self.engine, self._device, precision) == "openvino":
                return openvino_backbone(backbone, self._threads)(x)
            with torch.inference_mode():
                if precision == "bfloat16":
                    with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16):
                        return [f.float() for f in backbone(x)]
                return backbone(x)
        except (RuntimeError, ExportError) as exc:
            if "memory" in str(exc).lower():
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputGeometryError(
                f"backbone {self.backbone!r} cannot take a network input of {x.shape[2]}x{x.shape[3]} ({first}); "
                "choose another image_size or tile_size"
            ) from None

    def _network_outputs(self, x: torch.Tensor) -> Any:
        """What :meth:`_features` yields for a batch of network inputs: the stage maps (a subclass
        with more than one view of the input returns one list of stage maps per view)."""
        return self.forward(x)

    def _features(
        self, images: Sequence[np.ndarray], desc: str, units: list[Unit] | None = None
    ) -> Iterator[tuple[list[Unit], list[torch.Tensor]]]:
        """(units, per-layer feature maps) for each batch of equal-shape network inputs
        (:meth:`_network_outputs`).

        Images are resized in float (rounding to 8 bits would move the features), once per
        image however many tiles it has.
        """
        units = self.plan(images) if units is None else units
        geometry = self.geometry
        frames: dict[int, np.ndarray] = {}
        batches = list(_batches(units, self.batch_size))
        bar = _progress_bar(len(units), desc) if self.progress and len(batches) >= 8 else None
        try:
            for batch in batches:
                inputs = []
                for unit in batch:
                    if unit.image not in frames:
                        frames.clear()  # tiles of one image are consecutive: keep one frame
                        frames[unit.image] = geometry.apply_to_image(images[unit.image].astype(np.float32))
                    top, left, height, width = unit.box
                    inputs.append(frames[unit.image][top : top + height, left : left + width])
                feats = self._network_outputs(images_to_tensor(inputs))
                yield batch, feats
                if bar is not None:
                    bar.update(len(batch))
        finally:
            if bar is not None:
                bar.close()


def _batches(units: list[Unit], batch_size: int) -> Iterator[list[Unit]]:
    """Units grouped by input shape (first-seen order), at most ``batch_size`` and BATCH_PIXELS each."""
    groups: dict[tuple[int, int], list[Unit]] = {}
    for unit in units:
        groups.setdefault(unit.shape, []).append(unit)
    for (height, width), group in groups.items():
        size = max(1, min(batch_size, BATCH_PIXELS // (height * width)))
        for start in range(0, len(group), size):
            yield group[start : start + size]


def _progress_bar(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="input", leave=False)
