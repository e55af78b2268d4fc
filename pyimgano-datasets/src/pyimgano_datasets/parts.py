"""The ``synthetic_parts`` data set: a board of parts whose defects are structural, offline.

The ``synthetic`` textures have surface defects only. Here every image is the same assembly:
three chips with pins, three round capacitors and a row of five banded resistors on a textured
board, each image with its own placement jitter (the whole board shifted and turned a little,
each part a little more), lighting and sensor noise. A defective test image has one part
wrong, the failure mode of a misplaced transistor:

* ``missing``: a part is absent (bare board where it belongs);
* ``misplaced``: a part sits most of its own size away from its place;
* ``rotated``: a chip or resistor turned by 90 degrees in place;
* ``extra``: a capacitor or resistor where none belongs.

Up close every patch of such an image looks normal (board, a part's edge, pins), so a detector
must see the arrangement to find it. The mask is every pixel the defect changed: where the
part was and where it is now. Images are 512 px by default, so the resolution policy's large
input (and its context view) is what runs on them.

It shares the ``synthetic`` set's machinery (:mod:`pyimgano_datasets.synthetic`): the same
cache (its own folder), atomic writing, ``in_memory``, determinism per parameters and index.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from pyimgano.errors import DatasetError
from pyimgano_datasets.synthetic import (
    NOISE_SIGMA,
    SyntheticConfig,
    SyntheticDataset,
    _finish,
    _rng,
    iter_layout,
    lighting,
    render_view,
)

PARTS_VERSION = 2  # bump on any change to the pixels: it names the cache folder
PARTS_KINDS = ("missing", "misplaced", "rotated", "extra")
CATEGORY = "board"
BOARD_TINT = (0.55, 0.78, 0.58)  # applied to the grey board texture
BOARD_TEXTURE = "gravel"
GAP = 0.02  # a moved or added part keeps this far (fraction of the side) from every other part

# the assembly, in fractions of the image side: kind, centre (y, x), size (h, w)
LAYOUT: tuple[tuple[str, float, float, float, float], ...] = (
    ("chip", 0.25, 0.24, 0.10, 0.20),
    ("chip", 0.25, 0.62, 0.10, 0.20),
    ("chip", 0.58, 0.24, 0.10, 0.20),
    ("cap", 0.55, 0.60, 0.10, 0.10),
    ("cap", 0.55, 0.80, 0.10, 0.10),
    ("cap", 0.24, 0.88, 0.10, 0.10),
    *(("res", 0.86, x, 0.035, 0.08) for x in (0.14, 0.30, 0.46, 0.62, 0.78)),
)
BAND_COLOURS = ((0.55, 0.30, 0.12), (0.85, 0.10, 0.10), (0.95, 0.55, 0.10), (0.20, 0.20, 0.75), (0.10, 0.10, 0.10))


@dataclass(frozen=True)
class PartsConfig(SyntheticConfig):
    image_size: int = 512
    n_train: int = 40
    n_test_good: int = 12
    n_test_defect: int = 16
    defect_kinds: tuple[str, ...] = PARTS_KINDS

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "generator": "parts", "generator_version": PARTS_VERSION}


@dataclass(frozen=True)
class Part:
    kind: str  # chip, cap or res
    cy: float  # centre and size in pixels, angle in radians
    cx: float
    h: float
    w: float
    angle: float
    shade: float  # brightness of this part in this image
    index: int  # its place in LAYOUT (resistor bands follow it); -1 for an extra part

    def extent(self) -> float:
        """Half the diagonal: a circle that holds the part with its pins, at any angle."""
        h = self.h * 1.7 if self.kind == "chip" else self.h
        return 0.5 * float(np.hypot(h, self.w))


# -- drawing ----------------------------------------------------------------------------
def _box(size: int, cy: float, cx: float, radius: float) -> tuple[slice, slice]:
    y0, y1 = max(0, int(cy - radius) - 2), min(size, int(cy + radius) + 3)
    x0, x1 = max(0, int(cx - radius) - 2), min(size, int(cx + radius) + 3)
    return slice(y0, y1), slice(x0, x1)


def _local(box: tuple[slice, slice], cy: float, cx: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres of ``box`` in a part's own frame: (along its height, along its width)."""
    yy, xx = np.mgrid[box[0], box[1]].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    cos, sin = np.cos(angle), np.sin(angle)
    return dy * cos - dx * sin, dy * sin + dx * cos


def _rect(v: np.ndarray, u: np.ndarray, v0: float, u0: float, h: float, w: float) -> np.ndarray:
    """Coverage (0..1, one pixel of soft edge) of an h x w rectangle centred at (v0, u0)."""
    outside = np.maximum(np.abs(v - v0) - h / 2, np.abs(u - u0) - w / 2)
    return np.clip(0.5 - outside, 0.0, 1.0)


def _disc(v: np.ndarray, u: np.ndarray, v0: float, u0: float, r: float) -> np.ndarray:
    return np.clip(0.5 - (np.hypot(v - v0, u - u0) - r), 0.0, 1.0)


def _layers(part: Part, v: np.ndarray, u: np.ndarray) -> list[tuple[np.ndarray, tuple[float, float, float]]]:
    """(coverage, colour) of each layer of a part, bottom first, on its box's pixels."""
    s, h, w = part.shade, part.h, part.w
    if part.kind == "chip":
        pin_h, pin_w = 0.35 * h, 0.09 * w
        pins = np.zeros_like(v)
        for side in (-1.0, 1.0):
            for k in range(5):
                pins = np.maximum(pins, _rect(v, u, side * (h / 2 + 0.3 * pin_h), (k - 2) * 0.2 * w, pin_h, pin_w))
        return [(pins, (0.78 * s, 0.78 * s, 0.74 * s)), (_rect(v, u, 0.0, 0.0, h, w), (0.17 * s, 0.17 * s, 0.19 * s)),
                (_disc(v, u, 0.18 * h, -0.38 * w, 0.12 * h), (0.45 * s, 0.45 * s, 0.47 * s))]  # pin-1 mark
    if part.kind == "cap":
        r = 0.5 * h
        return [(_disc(v, u, 0.0, 0.0, r), (0.30 * s, 0.22 * s, 0.12 * s)),
                (_disc(v, u, 0.0, 0.0, 0.78 * r), (0.62 * s, 0.48 * s, 0.28 * s)),
                (0.7 * _disc(v, u, -0.3 * r, -0.3 * r, 0.22 * r), (0.95 * s, 0.92 * s, 0.80 * s))]  # highlight
    layers = [(_rect(v, u, 0.0, 0.0, h, w), (0.84 * s, 0.74 * s, 0.56 * s))]
    for k, offset in enumerate((-0.25, 0.0, 0.25)):
        colour = BAND_COLOURS[(max(part.index, 0) + k) % len(BAND_COLOURS)]
        layers.append((_rect(v, u, 0.0, offset * w, h, 0.1 * w), tuple(c * s for c in colour)))
    return layers


def _drawn(part: Part, size: int) -> tuple[tuple[slice, slice], list[tuple[np.ndarray, tuple[float, float, float]]]]:
    """The box of pixels a part may touch in a size x size image, and its layers there."""
    box = _box(size, part.cy, part.cx, part.extent())
    return box, _layers(part, *_local(box, part.cy, part.cx, part.angle))


def _paint(board: np.ndarray, parts: list[Part]) -> np.ndarray:
    image = board.copy()
    for part in parts:
        box, layers = _drawn(part, board.shape[0])
        for alpha, colour in layers:
            region = image[box]
            region += alpha[:, :, None] * (np.asarray(colour, dtype=np.float32) - region)
    return image


def _footprint(size: int, part: Part) -> np.ndarray:
    """Pixels a part covers at all (any coverage above zero)."""
    out = np.zeros((size, size), dtype=bool)
    box, layers = _drawn(part, size)
    out[box] = np.max(np.stack([a for a, _ in layers]), axis=0) > 0
    return out


# -- one scene --------------------------------------------------------------------------
def _scene(size: int, rng: np.random.Generator) -> tuple[np.ndarray, list[Part]]:
    """A defect-free board (float32 RGB) and its parts, with this image's jitter."""
    grey = render_view(BOARD_TEXTURE, size, rng)
    grey = 0.55 + 0.45 * (grey - grey.mean())  # a calm board: the parts carry the contrast
    light = lighting(size, rng)
    gain = rng.uniform(0.93, 1.07)
    board = np.clip((grey * gain + light)[:, :, None] * np.asarray(BOARD_TINT, dtype=np.float32), 0.0, 1.0)
    shift = rng.uniform(-0.012, 0.012, size=2) * size
    turn = np.deg2rad(rng.uniform(-1.0, 1.0))
    centre = (size - 1) / 2.0
    parts = []
    for i, (kind, y, x, h, w) in enumerate(LAYOUT):
        dy, dx = y * size - centre, x * size - centre
        jitter = rng.uniform(-0.003, 0.003, size=2) * size
        parts.append(Part(kind, centre + shift[0] + dy * np.cos(turn) - dx * np.sin(turn) + jitter[0],
                          centre + shift[1] + dy * np.sin(turn) + dx * np.cos(turn) + jitter[1],
                          h * size, w * size, turn + np.deg2rad(rng.uniform(-1.0, 1.0)), gain * rng.uniform(0.96, 1.04), i))
    return board, parts


def _fits(part: Part, others: list[Part], size: int) -> bool:
    """Inside the image and clear of every other part."""
    reach = part.extent()
    if not (reach <= part.cy <= size - 1 - reach and reach <= part.cx <= size - 1 - reach):
        return False
    gap = GAP * size
    return all(np.hypot(part.cy - o.cy, part.cx - o.cx) > reach + o.extent() + gap for o in others)


def _place(candidate: Part, others: list[Part], size: int, rng: np.random.Generator, distance: float) -> Part | None:
    """``candidate`` moved ``distance`` px in the first of several random directions where it fits."""
    for direction in rng.permutation(16) * (2 * np.pi / 16):
        for scale in (1.0, 1.25, 1.5, 2.0):
            moved = replace(candidate, cy=candidate.cy + scale * distance * np.sin(direction),
                            cx=candidate.cx + scale * distance * np.cos(direction))
            if _fits(moved, others, size):
                return moved
    return None


def _defect(kind: str, parts: list[Part], size: int, rng: np.random.Generator,
            severity: float) -> tuple[list[Part], list[Part]]:
    """(the defective image's parts, the parts whose pixels changed: old and new places)."""
    if kind == "missing":
        i = int(rng.integers(len(parts)))
        return parts[:i] + parts[i + 1:], [parts[i]]
    if kind == "rotated":
        turnable = [i for i, p in enumerate(parts) if p.kind != "cap"]  # a turned disc looks the same
        i = turnable[int(rng.integers(len(turnable)))]
        turned = replace(parts[i], angle=parts[i].angle + np.pi / 2 * (1 if rng.random() < 0.5 else -1))
        return parts[:i] + [turned] + parts[i + 1:], [parts[i], turned]
    if kind == "misplaced":
        for i in rng.permutation(len(parts)):
            others = parts[:i] + parts[i + 1:]
            moved = _place(parts[i], others, size, rng, severity * rng.uniform(0.6, 1.0) * 2 * parts[i].extent())
            if moved is not None:
                return others + [moved], [parts[i], moved]
        raise DatasetError(f"synthetic_parts: no part can move that far on the board (severity {severity}); "
                           "use a smaller severity")
    if kind == "extra":
        template = parts[-1] if rng.random() < 0.5 else parts[3]  # a resistor or a capacitor
        turn = np.pi / 2 if rng.random() < 0.3 else 0.0
        steps = np.linspace(0.06, 0.94, 23) * size  # every free spot of a grid, in a random order
        for k in rng.permutation(len(steps) ** 2):
            spot = replace(template, cy=steps[k // len(steps)], cx=steps[k % len(steps)], angle=template.angle + turn,
                           index=-1)
            if _fits(spot, parts, size):
                return parts + [spot], [spot]
        raise AssertionError("the layout leaves room for an extra part")  # a fixed layout: never reached
    raise DatasetError(f"unknown synthetic_parts defect kind {kind!r}; available: {', '.join(PARTS_KINDS)}")


def render_part_sample(config: PartsConfig, split: str, index: int, kind: str = "good",
                       with_clean: bool = False) -> tuple:
    """One image of the set: (uint8 RGB image, bool mask or None[, uint8 clean image])."""
    rng = _rng(config, CATEGORY, split, kind, index)
    size = config.image_size
    board, parts = _scene(size, rng)
    noise = rng.normal(0.0, NOISE_SIGMA, size=board.shape).astype(np.float32)
    clean = _paint(board, parts)
    image, mask = clean, None
    if kind != "good":
        changed_parts, touched = _defect(kind, parts, size, rng, config.severity)
        image = _paint(board, changed_parts)
        mask = np.zeros((size, size), dtype=bool)
        for part in touched:
            mask |= _footprint(size, part)
    out = (_finish(image, noise), mask)
    return (*out, _finish(clean, noise)) if with_clean else out


class PartsDataset(SyntheticDataset):
    """The generated board of parts (one category, ``board``)."""

    name = "synthetic_parts"
    kinds = PARTS_KINDS
    cache_folder = "synthetic_parts"
    category_names = (CATEGORY,)

    def _generate(self, category: str):
        config = self.config
        return iter_layout(config, lambda split, index, kind: render_part_sample(config, split, index, kind))


def load_parts(
    root: str | Path | None = None,
    category: str | None = None,
    *,
    cache_dir: str | Path | None = None,
    in_memory: bool = False,
    **options: Any,
) -> PartsDataset:
    """Factory of the ``synthetic_parts`` data set (``options``: the fields of :class:`PartsConfig`)."""
    if "defect_kinds" in options:
        options["defect_kinds"] = tuple(options["defect_kinds"])
    return PartsDataset(root, category, config=PartsConfig(**options), cache_dir=cache_dir, in_memory=in_memory)
