"""Resource limits on what pyimgano accepts as input, in one place.

``max_image_pixels``: the largest image (width x height) read from a file, a PIL image or
an array. The default, 16384 x 16384 = 268,435,456 pixels, takes a 16k line-scan crop or
a 150 MP area-scan frame, and refuses a few-hundred-byte PNG that claims 50000 x 50000
before it is decoded. Set ``PYIMGANO_MAX_IMAGE_PIXELS`` (or call
:func:`set_max_image_pixels`, which sets that variable so that benchmark worker processes
inherit it) to change it. The benchmark's ``image_size`` is bounded by the same limit:
``image_size ** 2 <= max_image_pixels``.

PIL has its own decompression-bomb guard with a smaller default; :func:`sync_pil` makes it
follow this limit, so that images pyimgano accepts are not refused by PIL.

``max_state_bytes``: the largest model state (the arrays of a saved model's ``state.npz``,
all together, as they are in memory). The default, 4 GiB, takes a WideResNet-50 PatchCore
memory bank of 700,000 patches. Set ``PYIMGANO_MAX_STATE_BYTES`` (or call
:func:`set_max_state_bytes`) to change it. Besides, no array in a state file may inflate to
more than ``MAX_STATE_INFLATION`` times its compressed size: pyimgano writes states
uncompressed, so only a hand-made or hostile file is compressed that far. Both are checked
from the zip directory and the array headers, before anything is decompressed.
"""

from __future__ import annotations

import math
import os

from pyimgano.errors import ImageTooLarge, InvalidParams

ENV_MAX_IMAGE_PIXELS = "PYIMGANO_MAX_IMAGE_PIXELS"
DEFAULT_MAX_IMAGE_PIXELS = 16384 * 16384
ENV_MAX_STATE_BYTES = "PYIMGANO_MAX_STATE_BYTES"
DEFAULT_MAX_STATE_BYTES = 4 * 1024**3
MAX_STATE_INFLATION = 100
# arrays up to this size are never refused for their compression ratio (tiny arrays compress far)
STATE_INFLATION_FLOOR = 1024**2


def _env_limit(name: str, default: int, unit: str, example: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise InvalidParams(f"{name}={raw!r}: expected a positive number of {unit}, e.g. {example}")
    return value


def _set_env_limit(name: str, value: int | None, what: str) -> None:
    if value is None:
        os.environ.pop(name, None)
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidParams(f"{what} must be a positive integer, got {value!r}")
    os.environ[name] = str(value)


def max_image_pixels() -> int:
    """The largest accepted image, in pixels (``PYIMGANO_MAX_IMAGE_PIXELS`` or the default)."""
    return _env_limit(ENV_MAX_IMAGE_PIXELS, DEFAULT_MAX_IMAGE_PIXELS, "pixels", DEFAULT_MAX_IMAGE_PIXELS)


def set_max_image_pixels(pixels: int | None) -> None:
    """Set the image limit for this process and the processes it starts (None: the default)."""
    _set_env_limit(ENV_MAX_IMAGE_PIXELS, pixels, "max image pixels")


def max_state_bytes() -> int:
    """The largest model state accepted, in bytes (``PYIMGANO_MAX_STATE_BYTES`` or the default)."""
    return _env_limit(ENV_MAX_STATE_BYTES, DEFAULT_MAX_STATE_BYTES, "bytes", DEFAULT_MAX_STATE_BYTES)


def set_max_state_bytes(size: int | None) -> None:
    """Set the model state limit for this process and the processes it starts (None: the default)."""
    _set_env_limit(ENV_MAX_STATE_BYTES, size, "max state bytes")


def max_image_side() -> int:
    """The largest N such that an N x N image is within the limit (bounds ``image_size``)."""
    return math.isqrt(max_image_pixels())


def check_image_pixels(width: int, height: int, source: str) -> None:
    """Raise :class:`ImageTooLarge` naming ``source`` when ``width x height`` is over the limit."""
    limit = max_image_pixels()
    if width * height > limit:
        raise ImageTooLarge(f"{source}: {describe_excess(width * height, limit, f'{width}x{height}')}")


def describe_excess(pixels: int | None, limit: int, size: str | None = None) -> str:
    """``image of 50000x50000 pixels (2,500,000,000) exceeds the limit of ... pixels (...)``."""
    if size is not None:
        what = f"image of {size} pixels ({pixels:,})"
    else:
        what = "image" if pixels is None else f"image of {pixels:,} pixels"
    return f"{what} exceeds the limit of {limit:,} pixels (set {ENV_MAX_IMAGE_PIXELS} to change it)"


def sync_pil() -> int:
    """Make PIL's decompression-bomb guard follow the pyimgano limit; returns the limit."""
    from PIL import Image

    limit = max_image_pixels()
    Image.MAX_IMAGE_PIXELS = limit  # PIL warns above it and refuses above twice it
    return limit
