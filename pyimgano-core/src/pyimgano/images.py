"""Image input: paths, PIL images or arrays, converted to HxWx3 uint8 RGB arrays.

Grayscale is replicated to three channels, RGBA is composited onto black (alpha
ignored is the common industrial case: masks in alpha are rare), 16-bit and float
images are rescaled to 8 bits. A file that cannot be read raises
:class:`pyimgano.ImageLoadError` naming the file; an image over the pixel limit of
:mod:`pyimgano.limits` raises :class:`pyimgano.ImageTooLarge` (files are checked from
their header, before any pixel is decoded).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pyimgano.errors import ImageLoadError, ImageTooLarge, InvalidParams
from pyimgano.limits import check_image_pixels, describe_excess, sync_pil

ImageInput = str | os.PathLike | np.ndarray | Any

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _to_uint8(arr: np.ndarray, source: str) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.integer):
        info = np.iinfo(arr.dtype)
        if arr.dtype == np.uint16 or arr.max(initial=0) > 255:
            top = 65535 if info.max >= 65535 else info.max
            return np.clip(np.round(arr.astype(np.float64) / top * 255.0), 0, 255).astype(np.uint8)
        return np.clip(arr, 0, 255).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ImageLoadError(f"{source}: image contains NaN or infinite values")
        scale = 255.0 if arr.max(initial=0.0) <= 1.0 + 1e-6 else 1.0
        return np.clip(np.round(arr * scale), 0, 255).astype(np.uint8)
    raise ImageLoadError(f"{source}: unsupported pixel type {arr.dtype}")


def as_rgb(arr: np.ndarray, source: str = "image array") -> np.ndarray:
    """Convert an array image (HxW, HxWx1, HxWx3, HxWx4; any numeric dtype) to HxWx3 uint8."""
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ImageLoadError(f"{source}: expected an HxW or HxWxC image, got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageLoadError(f"{source}: empty image of shape {arr.shape}")
    check_image_pixels(int(arr.shape[1]), int(arr.shape[0]), source)
    channels = arr.shape[2]
    if channels == 4:
        rgb = arr[:, :, :3].astype(np.float64)
        alpha = arr[:, :, 3:4].astype(np.float64)
        top = 255.0 if arr.dtype == np.uint8 else (65535.0 if arr.dtype == np.uint16 else max(1.0, float(alpha.max())))
        arr = (rgb * (alpha / top)).astype(arr.dtype) if top > 0 else arr[:, :, :3]
        channels = 3
    if channels == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif channels != 3:
        raise ImageLoadError(f"{source}: expected 1, 3 or 4 channels, got {channels}")
    return np.ascontiguousarray(_to_uint8(arr, source))


def open_image(path: str | os.PathLike, what: str = "image") -> Any:
    """Open an image file lazily (header only) after checking its size against the pixel limit.

    Returns an open PIL image (close it, or use it in a ``with``); errors are
    :class:`ImageLoadError` (or :class:`ImageTooLarge`) naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise ImageLoadError(f"{path}: no such {'file' if what == 'image' else what + ' file'}")
    if path.is_dir():
        raise ImageLoadError(f"{path}: is a directory, not an image")
    return _open_checked(path, str(path), what)


def _open_checked(source: Path | Any, name: str, what: str) -> Any:
    """PIL's lazy open of a path or a binary file object, with the pixel limit applied."""
    from PIL import Image, UnidentifiedImageError

    limit = sync_pil()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(source)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"{name}: {_bomb_message(str(exc), limit)}") from None
    except UnidentifiedImageError:
        raise ImageLoadError(f"{name}: unreadable {what}: unknown or corrupt format") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageLoadError(f"{name}: unreadable {what}: corrupt or truncated ({exc})") from None
    width, height = img.size
    try:
        check_image_pixels(width, height, name)
    except ImageTooLarge:
        img.close()
        raise
    return img


def _bomb_message(pil_message: str, limit: int) -> str:
    """Our wording for PIL's refusal, which gives the pixel count but not the size."""
    match = re.search(r"\((\d+) pixels\)", pil_message)
    return describe_excess(int(match.group(1)) if match else None, limit)


def read_image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) of an image file from its header only; the pixel limit applies."""
    with open_image(path) as img:
        width, height = img.size
    return height, width


def _decode(path: Path, what: str) -> Any:
    """Open and fully decode an image file; returns the loaded PIL image."""
    return _load(open_image(path, what), str(path), what)


def _load(img: Any, name: str, what: str) -> Any:
    try:
        img.load()
    except (OSError, SyntaxError, ValueError) as exc:
        img.close()
        raise ImageLoadError(f"{name}: unreadable {what}: corrupt or truncated ({exc})") from None
    except BaseException:
        img.close()
        raise
    return img


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file into an HxWx3 uint8 RGB array; errors name the file."""
    path = Path(path)
    with _decode(path, "image") as img:
        return pil_to_rgb(img, str(path))


def decode_image(data: bytes, source: str) -> np.ndarray:
    """An image file's bytes (an upload) as an HxWx3 uint8 RGB array; errors name ``source``.

    The same checks as :func:`read_image`: the pixel limit from the header before any pixel
    is decoded, a truncated or corrupt file is an :class:`ImageLoadError`.
    """
    import io

    if not data:
        raise ImageLoadError(f"{source}: empty upload, not an image")
    with _load(_open_checked(io.BytesIO(data), source, "image"), source, "image") as img:
        return pil_to_rgb(img, source)


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a mask file into an HxW bool array (any non-zero pixel is defect)."""
    path = Path(path)
    with _decode(path, "mask") as img:
        arr = np.asarray(img)
    if arr.ndim == 3:
        arr = arr[:, :, :3].max(axis=2) if arr.shape[2] >= 3 else arr[:, :, 0]
    return arr > 0


def pil_to_rgb(img: Any, source: str = "PIL image") -> np.ndarray:
    """Convert a PIL image (any mode) to HxWx3 uint8; the size is checked before decoding."""
    check_image_pixels(int(img.size[0]), int(img.size[1]), source)
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(img).astype(np.uint16)
    elif mode in ("I", "F"):
        arr = np.asarray(img)
        if mode == "I":
            arr = arr.astype(np.int64)
            arr = arr.astype(np.uint16) if arr.max(initial=0) <= 65535 and arr.min(initial=0) >= 0 else arr
    elif mode in ("RGB", "L", "RGBA"):
        arr = np.asarray(img)
    elif mode == "LA":
        arr = np.asarray(img.convert("RGBA"))
    else:
        arr = np.asarray(img.convert("RGBA" if "A" in mode or "transparency" in img.info else "RGB"))
    return as_rgb(arr, source)


def load_image(image: ImageInput, source: str | None = None) -> np.ndarray:
    """Load one image of any accepted kind as an HxWx3 uint8 RGB array."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    if isinstance(image, np.ndarray):
        return as_rgb(image, source or "image array")
    if hasattr(image, "mode") and hasattr(image, "size") and hasattr(image, "convert"):
        return pil_to_rgb(image, source or "PIL image")
    if hasattr(image, "image_path"):  # a DatasetSample
        return read_image(image.image_path)
    raise ImageLoadError(
        f"{source or 'image'}: unsupported input type {type(image).__name__}; "
        "expected a path, a PIL image or an HxW[xC] array"
    )


def load_images(images: ImageInput | Iterable[ImageInput]) -> list[np.ndarray]:
    """Load a batch: a single image or a sequence of them (a 4-D array is N images)."""
    if isinstance(images, (str, os.PathLike)) or (hasattr(images, "mode") and hasattr(images, "convert")):
        return [load_image(images)]
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            return [as_rgb(img, f"image array [{i}]") for i, img in enumerate(images)]
        if images.ndim in (2, 3) and not (images.ndim == 3 and images.shape[-1] not in (1, 3, 4)):
            return [as_rgb(images)]
        if images.ndim == 3:  # N x H x W grayscale stack
            return [as_rgb(img, f"image array [{i}]") for i, img in enumerate(images)]
        raise ImageLoadError(f"image array of shape {images.shape} is not an image or a batch of images")
    out = []
    for i, item in enumerate(images):
        out.append(load_image(item, source=f"image [{i}]"))
    return out


def list_image_files(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Sorted image files under a folder (by extension)."""
    folder = Path(folder)
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def image_shapes(images: Sequence[np.ndarray]) -> list[tuple[int, int]]:
    return [(int(img.shape[0]), int(img.shape[1])) for img in images]


# -- labelled anomalies as given by a user (few-shot mode) ----------------------------------------------------------
def load_anomalies(anomalies: Any, masks: Any, component: str = "fit") -> tuple[list[np.ndarray], list | None]:
    """Defective images and their masks (arrays or mask files; None: no masks) as HxWx3 uint8
    images and HxW bool masks; a count or size that does not match is one clear line."""
    images = load_images(anomalies)
    if not images:
        raise InvalidParams(f"{component}: anomalies is empty; give at least one defective image or leave it unset")
    if masks is None:
        return images, None
    mask_list = list(masks)
    if len(mask_list) != len(images):
        raise InvalidParams(f"{component}: {len(mask_list)} anomaly mask(s) for {len(images)} anomalous image(s)")
    out = []
    for i, (mask, image) in enumerate(zip(mask_list, images)):
        is_file = isinstance(mask, str) or hasattr(mask, "__fspath__")
        name = str(mask) if is_file else f"anomaly mask {i}"
        array = read_mask(mask) if is_file else np.asarray(mask)
        if array.ndim == 3:
            array = array[..., 0]
        if array.shape != image.shape[:2]:
            raise InvalidParams(f"{component}: {name} has shape {array.shape}; its image is "
                                f"{image.shape[0]}x{image.shape[1]}")
        out.append(array > 0)
    return images, out
