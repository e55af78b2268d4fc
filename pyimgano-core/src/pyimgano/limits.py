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
"""

from __future__ import annotations

import math
import os

from pyimgano.errors import ImageTooLarge, InvalidParams

ENV_MAX_IMAGE_PIXELS = "PYIMGANO_MAX_IMAGE_PIXELS"
DEFAULT_MAX_IMAGE_PIXELS = 16384 * 16384


def max_image_pixels() -> int:
    """The largest accepted image, in pixels (``PYIMGANO_MAX_IMAGE_PIXELS`` or the default)."""
    raw = os.environ.get(ENV_MAX_IMAGE_PIXELS, "").strip()
    if not raw:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise InvalidParams(f"{ENV_MAX_IMAGE_PIXELS}={raw!r}: expected a positive number of pixels, e.g. 268435456")
    return value


def set_max_image_pixels(pixels: int | None) -> None:
    """Set the image limit for this process and the processes it starts (None: the default)."""
    if pixels is None:
        os.environ.pop(ENV_MAX_IMAGE_PIXELS, None)
        return
    if isinstance(pixels, bool) or not isinstance(pixels, int) or pixels < 1:
        raise InvalidParams(f"max image pixels must be a positive integer, got {pixels!r}")
    os.environ[ENV_MAX_IMAGE_PIXELS] = str(pixels)


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
