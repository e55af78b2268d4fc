"""Inputs shared by the commands: image files from folders, globs and files, and the defect
masks that go with them. Errors name the option they came from."""

from __future__ import annotations

import glob
from pathlib import Path

from pyimgano.errors import ImageLoadError


def collect_images(items: list[str], what: str = "images", flag: str | None = None) -> list[Path]:
    """Image files from folders (recursive), globs and plain files, in order, without repeats;
    errors start with ``flag`` (e.g. ``--defects``) when given."""
    from pyimgano.images import IMAGE_EXTENSIONS, list_image_files

    lead = f"{flag} " if flag else ""
    found: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            files = list_image_files(path)
            if not files:
                raise ImageLoadError(f"{lead}{path}: folder holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
        elif path.is_file():
            files = [path]
        elif glob.has_magic(item):
            files = sorted(
                Path(p) for p in glob.glob(str(path), recursive=True)
                if Path(p).is_file() and Path(p).suffix.lower() in IMAGE_EXTENSIONS
            )
            if not files:
                raise ImageLoadError(f"{lead}{item}: the pattern matches no image files")
        else:
            raise ImageLoadError(f"{lead}{item}: no such file or folder")
        found.extend(files)
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise ImageLoadError(f"no {what} given")
    return unique


def find_masks(defects: list[Path], folder: str) -> list[Path]:
    """The mask of each defect image in ``folder`` (searched recursively): a file named like
    the image (``<stem>``, or ``<stem>_mask`` as in MVTec AD), preferably in a subfolder named
    like the image's; every defect needs exactly one."""
    from pyimgano.images import IMAGE_EXTENSIONS, list_image_files

    root = Path(folder).expanduser()
    if not root.is_dir():
        raise ImageLoadError(f"--defect-masks {folder}: no such folder")
    candidates: dict[str, list[Path]] = {}
    for path in list_image_files(root):
        stem = path.stem[: -len("_mask")] if path.stem.endswith("_mask") else path.stem
        candidates.setdefault(stem, []).append(path)
    found, missing = [], []
    for image in defects:
        options = candidates.get(image.stem, [])
        if len(options) > 1:
            options = [p for p in options if p.parent.name == image.parent.name] or options
        if len(options) != 1:
            missing.append(f"{image.name} ({'no mask' if not options else f'{len(options)} candidates'})")
        else:
            found.append(options[0])
    if missing:
        raise ImageLoadError(
            f"--defect-masks {folder}: {len(missing)} of {len(defects)} defect image(s) without exactly one mask: "
            f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}; a mask is named <stem> or <stem>_mask "
            f"({', '.join(IMAGE_EXTENSIONS)})")
    for image, mask in zip(defects, found):  # sizes from the file headers: a mismatch fails before any fitting
        image_size, mask_size = _file_size(image), _file_size(mask)
        if None not in (image_size, mask_size) and image_size != mask_size:
            raise ImageLoadError(f"--defect-masks {folder}: {mask} is {mask_size[0]}x{mask_size[1]} pixels, "
                                 f"its image {image} {image_size[0]}x{image_size[1]}")
    return found


def _file_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of an image file from its header; None where it cannot be read (reading it later says why)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError):
        return None
