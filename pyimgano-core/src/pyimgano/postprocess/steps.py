"""The built-in post-processing steps.

A step is built with its params (validated by its pydantic model), maps N x H x W float
arrays (or lists of H x W arrays, which stay lists) to float32 maps of the same shapes,
and, when it needs statistics, learns them in ``fit(maps)`` from training/calibration maps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel
from scipy import ndimage

from pyimgano.contracts import empty_array
from pyimgano.errors import ContractViolation, InvalidParams, NotFittedError
from pyimgano.postprocess import params as P
from pyimgano.specs import NoParams

Maps = Any  # N x H x W array or list of H x W arrays


def map_images(maps: Maps, fn: Callable[[np.ndarray], np.ndarray], *, what: str = "maps") -> Maps:
    """Apply ``fn`` to each H x W map; an N x H x W array gives an array, a list a list."""
    if isinstance(maps, (list, tuple)):
        out = []
        for i, item in enumerate(maps):
            array = np.asarray(item)
            if array.ndim != 2:
                raise ContractViolation(component="postprocess", field=f"{what}[{i}]",
                                        expected="an H x W array", actual=f"of shape {array.shape}")
            out.append(fn(array))
        return out
    array = np.asarray(maps)
    if array.ndim != 3:
        raise ContractViolation(component="postprocess", field=what,
                                expected="an N x H x W array or a list of H x W arrays",
                                actual=f"of shape {array.shape}")
    if array.shape[0] == 0:
        return array.astype(np.float32)
    first = fn(array[0])
    out = empty_array((len(array), *first.shape), first.dtype)
    out[0] = first
    for i in range(1, len(array)):  # one result map at a time: no list of N temporaries
        out[i] = fn(array[i])
    return out


def all_pixels(maps: Maps) -> np.ndarray:
    """Every pixel of a set of maps, as one float64 vector."""
    arrays = [np.asarray(m, dtype=np.float64).ravel() for m in maps]
    if not arrays or not sum(a.size for a in arrays):
        raise ContractViolation(component="postprocess", field="fit maps", expected="at least one pixel",
                                actual="an empty set")
    return np.concatenate(arrays)


class Step:
    """Base class: params validation, the per-image loop, fitted statistics."""

    name: ClassVar[str] = "step"
    params_model: ClassVar[type[BaseModel]] = NoParams

    state_bounds: ClassVar[dict[str, tuple[float, float]]] = {}
    """The fitted statistics a step keeps, each with its closed range (a saved state is checked against it)."""

    def __init__(self, **params: Any) -> None:
        self.params = self.params_model(**params)
        self.state: dict[str, float] = {}

    def checked_state(self, state: Any) -> dict[str, float]:
        """``state`` read back from a file, as this step's statistics; :class:`InvalidParams`
        naming the key when one is missing, unknown, not a finite number or out of its range."""
        if not isinstance(state, dict):
            raise InvalidParams(f"state: expected an object of statistics, got {type(state).__name__}")
        unknown = sorted(set(state) - set(self.state_bounds))
        if unknown or set(self.state_bounds) - set(state):
            raise InvalidParams(f"state: holds {', '.join(sorted(state)) or 'nothing'}; step {self.name} "
                                f"keeps {', '.join(self.state_bounds) or 'no statistics'}")
        out = {}
        for key, (low, high) in self.state_bounds.items():
            value = state[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InvalidParams(f"state.{key}: expected a finite number, got {value!r}")
            if not low <= value <= high:
                raise InvalidParams(f"state.{key}: {value!r} is outside [{low:g}, {high:g}]")
            out[key] = float(value)
        return out

    @property
    def needs_fit(self) -> bool:
        """Whether this step needs ``fit`` on training/calibration maps before use."""
        return False

    def fit(self, maps: Maps) -> Step:
        if self.needs_fit:
            self.state = self._fit_statistics(maps)
        return self

    def _fit_statistics(self, maps: Maps) -> dict[str, float]:
        """The statistics of a set of maps (by default those of all their pixels as one vector)."""
        return self._statistics(all_pixels(maps))

    def __call__(self, maps: Maps) -> Maps:
        if self.needs_fit and not self.state:
            raise NotFittedError(
                f"post-processor {self.name} needs statistics of training/calibration maps: call "
                f"fit(maps) first (or PostProcessing.fit), or set per_image=True where the step has it"
            )
        return map_images(maps, lambda m: self._apply(np.asarray(m, dtype=np.float32)).astype(np.float32))

    def _statistics(self, pixels: np.ndarray) -> dict[str, float]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _apply(self, amap: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.model_dump().items())
        return f"{type(self).__name__}({args})"


class _Normalizer(Step):
    """Affine rescaling ``(x - offset) / scale`` with statistics fitted or per image."""

    # a spread is never negative (0: a constant map, left unscaled); the float32 maps' range bounds both
    state_bounds: ClassVar[dict[str, tuple[float, float]]] = {
        "offset": (-float(np.finfo(np.float32).max), float(np.finfo(np.float32).max)),
        "scale": (0.0, 2 * float(np.finfo(np.float32).max)),
    }

    @property
    def needs_fit(self) -> bool:
        return not getattr(self.params, "per_image", False)

    def _apply(self, amap: np.ndarray) -> np.ndarray:
        out = amap.astype(np.float64)  # one float64 copy, changed in place: the same values
        stats = self._statistics(out.ravel()) if not self.needs_fit else self.state
        scale = stats["scale"] if stats["scale"] > 0 else 1.0
        out -= stats["offset"]
        out /= scale
        if getattr(self.params, "clip", False):
            np.clip(out, 0.0, 1.0, out=out)
        return out


class MinMax(_Normalizer):
    """Rescale so that the training/calibration (or the map's own) min -> 0 and max -> 1."""

    def _statistics(self, pixels: np.ndarray) -> dict[str, float]:
        low, high = float(pixels.min()), float(pixels.max())
        return {"offset": low, "scale": high - low}


class Percentile(_Normalizer):
    """Robust rescaling: the low percentile -> 0 and the high percentile -> 1."""

    def _statistics(self, pixels: np.ndarray) -> dict[str, float]:
        low, high = np.percentile(pixels, [self.params.low, self.params.high])
        return {"offset": float(low), "scale": float(high - low)}


class Standardize(_Normalizer):
    """z-score by the mean and standard deviation (or median and MAD) of training maps."""

    def _statistics(self, pixels: np.ndarray) -> dict[str, float]:
        if self.params.robust:
            median = float(np.median(pixels))
            return {"offset": median, "scale": 1.4826 * float(np.median(np.abs(pixels - median)))}
        return {"offset": float(pixels.mean()), "scale": float(pixels.std())}

    def _fit_statistics(self, maps: Maps) -> dict[str, float]:
        """Mean and standard deviation map by map, combined exactly (Chan et al.'s pairwise
        update, float64): the same values as over one vector of every pixel, without building
        it (out-of-fold maps of every training image are hundreds of millions of pixels)."""
        if self.params.robust:
            return super()._fit_statistics(maps)
        count, mean, m2 = 0, 0.0, 0.0
        for amap in maps:
            values = np.asarray(amap)
            n = values.size
            if not n:
                continue
            mean_i = float(np.mean(values, dtype=np.float64))
            m2_i = float(np.var(values, dtype=np.float64)) * n
            delta = mean_i - mean
            total = count + n
            mean += delta * n / total
            m2 += m2_i + delta * delta * count * n / total
            count = total
        if not count:
            all_pixels(maps)  # the one error for an empty set
        return {"offset": mean, "scale": float(np.sqrt(m2 / count))}


class Gaussian(Step):
    """Gaussian smoothing of each map (reflecting at the borders)."""

    def _apply(self, amap: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(amap, sigma=self.params.sigma, truncate=self.params.truncate, mode="reflect")


def _footprint(size: int, shape: str) -> np.ndarray:
    if shape == "square":
        return np.ones((size, size), dtype=bool)
    r = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size]
    return (yy - r) ** 2 + (xx - r) ** 2 <= r * r + 0.5 * max(r, 0.5)


class Open(Step):
    """Grey-level morphological opening: removes bright details smaller than the element."""

    def _apply(self, amap: np.ndarray) -> np.ndarray:
        return ndimage.grey_opening(amap, footprint=_footprint(self.params.size, self.params.shape), mode="reflect")


class Close(Step):
    """Grey-level morphological closing: fills dark gaps smaller than the element."""

    def _apply(self, amap: np.ndarray) -> np.ndarray:
        return ndimage.grey_closing(amap, footprint=_footprint(self.params.size, self.params.shape), mode="reflect")


class RemoveSmall(Step):
    """Set connected components (of pixels above ``threshold``) smaller than ``min_area`` to ``fill``."""

    def _apply(self, amap: np.ndarray) -> np.ndarray:
        structure = ndimage.generate_binary_structure(2, 2 if self.params.connectivity == 8 else 1)
        labels, n = ndimage.label(amap > self.params.threshold, structure=structure)
        if n == 0:
            return amap
        small = np.bincount(labels.ravel(), minlength=n + 1) < self.params.min_area
        small[0] = False
        out = amap.copy()
        out[small[labels]] = self.params.fill
        return out


class Threshold(Step):
    """Binary mask: 1 where the score is above ``value``, else 0."""

    def _apply(self, amap: np.ndarray) -> np.ndarray:
        return amap > self.params.value


def _named(row: P.BuiltinStep) -> type[Step]:
    """The class of a built-in step, given its name and params model from the one list
    (:data:`pyimgano.postprocess.params.BUILTIN_STEPS`)."""
    cls = globals()[row.class_name]
    cls.name, cls.params_model = row.name, row.params
    return cls


BUILTIN_STEPS: dict[str, type[Step]] = {row.name: _named(row) for row in P.BUILTIN_STEPS}
