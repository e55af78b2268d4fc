"""The ``synthetic`` data set: MVTec-layout categories generated offline and deterministically.

Each category is a real texture photograph that ships inside scikit-image (``brick``,
``grass``, ``gravel``). Every image is a different view of the photograph (random position,
small rotation and zoom, mirror), tinted, with lighting drift and sensor noise, so good test
images are new views rather than copies of training images. Defective test images carry one
defect of a known kind, blended into the clean view; the mask is exactly the set of pixels
the defect changed (blend weight at least ``MASK_ALPHA``), so pixels outside the mask equal
the clean image.

Defect kinds: ``scratch`` (thin curved bright or dark line), ``stain`` (dark tinted blob
that keeps the texture underneath), ``foreign`` (a patch of another material) and
``missing`` (texture worn away: a blurred patch).

Images are written once to a cache directory in the MVTec layout (``<root>/<category>/...``)
and read back like any MVTec data set; ``in_memory=True`` keeps them in memory instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from pyimgano.contracts import DatasetInfo, DatasetSample, SplitCounts
from pyimgano.errors import DatasetError
from pyimgano_datasets.base import CategoryScan
from pyimgano_datasets.mvtec import MVTEC_LAYOUT, MVTecDataset, scan_layout

GENERATOR_VERSION = 2  # bump on any change to the pixels: it names the cache folder
TEXTURES: dict[str, dict[str, Any]] = {
    # tint applied to the grey photograph; foreign: the material of the 'foreign' defect
    "brick": {"tint": (1.06, 0.80, 0.68), "foreign": "gravel"},
    "grass": {"tint": (0.78, 1.00, 0.62), "foreign": "brick"},
    "gravel": {"tint": (1.00, 0.97, 0.92), "foreign": "grass"},
}
DEFECT_KINDS = ("scratch", "stain", "foreign", "missing")
MASK_ALPHA = 0.2
MANIFEST = ".synthetic.json"
ROOT_MARKER = ".pyimgano-synthetic"
NOISE_SIGMA = 0.012
VIEW_FRACTION = 0.45  # a view covers this fraction of the photograph's side


@dataclass(frozen=True)
class SyntheticConfig:
    seed: int = 0
    image_size: int = 256
    n_train: int = 32
    n_test_good: int = 10
    n_test_defect: int = 16
    defect_kinds: tuple[str, ...] = DEFECT_KINDS
    severity: float = 1.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "generator_version": GENERATOR_VERSION,
            "seed": self.seed,
            "image_size": self.image_size,
            "n_train": self.n_train,
            "n_test_good": self.n_test_good,
            "n_test_defect": self.n_test_defect,
            "defect_kinds": list(self.defect_kinds),
            "severity": self.severity,
        }

    def digest(self) -> str:
        text = json.dumps(self.as_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def defect_plan(self) -> list[tuple[str, int]]:
        """(kind, index within kind) of each defective test image, kinds taking turns."""
        per_kind: dict[str, int] = {k: 0 for k in self.defect_kinds}
        plan = []
        for i in range(self.n_test_defect):
            kind = self.defect_kinds[i % len(self.defect_kinds)]
            plan.append((kind, per_kind[kind]))
            per_kind[kind] += 1
        return plan


# -- texture sources --------------------------------------------------------------------
@cache
def texture(name: str) -> np.ndarray:
    """The bundled scikit-image photograph as float32 grey in [0, 1]."""
    from skimage import data

    if name not in TEXTURES:
        raise DatasetError(f"unknown synthetic texture {name!r}; available: {', '.join(TEXTURES)}")
    return getattr(data, name)().astype(np.float32) / 255.0


@cache
def _smoothed_texture(name: str, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    src = texture(name)
    return gaussian_filter(src, sigma) if sigma > 0 else src


def _rng(config: SyntheticConfig, *parts: str | int) -> np.random.Generator:
    words = [config.seed & 0xFFFFFFFF] + [zlib.crc32(str(p).encode()) for p in parts]
    return np.random.default_rng(np.random.SeedSequence(words))


def render_view(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random view (position, rotation, zoom, mirror) of a texture: size x size grey float32."""
    from scipy.ndimage import map_coordinates

    src_side = texture(name).shape[0]
    step = VIEW_FRACTION * src_side / size * rng.uniform(0.92, 1.08)  # source px per output px
    src = _smoothed_texture(name, round(max(0.0, 0.5 * (step - 1.0)), 2))
    angle = np.deg2rad(rng.uniform(-6.0, 6.0))
    half = 0.5 * size * step * (abs(np.cos(angle)) + abs(np.sin(angle))) + 2
    cy, cx = rng.uniform(half, src_side - half, size=2)
    mirror = -1.0 if rng.random() < 0.5 else 1.0
    grid = (np.arange(size, dtype=np.float32) - (size - 1) / 2.0) * step
    v, u = np.meshgrid(grid, grid * mirror, indexing="ij")
    rows = cy + v * np.cos(angle) - u * np.sin(angle)
    cols = cx + v * np.sin(angle) + u * np.cos(angle)
    return map_coordinates(src, [rows, cols], order=1, mode="reflect").astype(np.float32)


def lighting(size: int, rng: np.random.Generator) -> np.ndarray:
    """A lighting drift: a linear ramp of up to +-0.05 across the image, in a random direction."""
    theta = rng.uniform(0, 2 * np.pi)
    ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    return rng.uniform(0.0, 0.05) * (np.cos(theta) * ramp[None, :] + np.sin(theta) * ramp[:, None])


def render_clean(category: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A defect-free RGB image (float32 in [0, 1]) before sensor noise."""
    grey = render_view(category, size, rng)
    gain, offset = rng.uniform(0.92, 1.08), rng.uniform(-0.03, 0.03)
    grey = grey * gain + offset + lighting(size, rng)
    tint = np.asarray(TEXTURES[category]["tint"], dtype=np.float32)
    return np.clip(grey[:, :, None] * tint, 0.0, 1.0)


# -- defects ----------------------------------------------------------------------------
def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(rng.standard_normal((size, size)).astype(np.float32), sigma)
    return field / (np.abs(field).max() + 1e-8)


def _blob(rng: np.random.Generator, size: int, radius: float, edge: float = 1.2) -> np.ndarray:
    """Soft-edged irregular blob (values in [0, 1]) at a random place inside the image."""
    margin = radius * 1.4 + 2
    cy, cx = rng.uniform(margin, size - margin, size=2)
    a = radius * rng.uniform(0.7, 1.3)
    b = radius * rng.uniform(0.6, 1.1)
    phi = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(phi) + dy * np.sin(phi)
    v = -dx * np.sin(phi) + dy * np.cos(phi)
    r = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    r = r + 0.35 * _smooth_noise(rng, size, max(2.0, radius / 3))
    return np.clip((1.0 - r) * min(a, b) / edge, 0.0, 1.0)


def _scratch(img: np.ndarray, rng: np.random.Generator, severity: float) -> tuple[np.ndarray, np.ndarray]:
    from scipy.ndimage import distance_transform_edt

    size = img.shape[0]
    length = size * rng.uniform(0.3, 0.55)
    start = rng.uniform(0.15 * size, 0.85 * size, size=2)
    direction = rng.uniform(0, 2 * np.pi)
    end = np.clip(start + length * np.array([np.sin(direction), np.cos(direction)]), 2, size - 3)
    bend = (end - start)[::-1] * np.array([-1, 1]) * rng.uniform(-0.3, 0.3)
    ctrl = (start + end) / 2 + bend
    t = np.linspace(0.0, 1.0, int(4 * length) + 8)[:, None]
    pts = (1 - t) ** 2 * start + 2 * (1 - t) * t * ctrl + t**2 * end
    pts = np.clip(np.round(pts).astype(int), 0, size - 1)
    line = np.zeros((size, size), dtype=bool)
    line[pts[:, 0], pts[:, 1]] = True
    taper = np.zeros((size, size), dtype=np.float32)
    taper[pts[:, 0], pts[:, 1]] = np.clip(4.0 * t[:, 0] * (1 - t[:, 0]) * 2.0, 0.0, 1.0)
    dist, (iy, ix) = distance_transform_edt(~line, return_indices=True)
    width = max(1.0, size / 256 * rng.uniform(2.0, 3.5))
    alpha = np.clip(width / 2 + 0.5 - dist, 0.0, 1.0) * taper[iy, ix]
    target = 0.92 if rng.random() < 0.6 else 0.08
    k = min(1.0, 0.75 * severity)
    content = img * (1 - k) + target * k
    return content, alpha.astype(np.float32)


def _stain(img: np.ndarray, rng: np.random.Generator, severity: float) -> tuple[np.ndarray, np.ndarray]:
    size = img.shape[0]
    alpha = _blob(rng, size, size * rng.uniform(0.06, 0.12), edge=2.0)
    darken = 1.0 - min(0.9, rng.uniform(0.35, 0.55) * severity)
    tint = np.array([1.0, 0.86, 0.62], dtype=np.float32)
    content = img * darken * tint
    return content, alpha * rng.uniform(0.75, 0.95)


def _foreign(
    img: np.ndarray, rng: np.random.Generator, severity: float, category: str
) -> tuple[np.ndarray, np.ndarray]:
    size = img.shape[0]
    alpha = _blob(rng, size, size * rng.uniform(0.05, 0.1))
    other = TEXTURES[category]["foreign"]
    grey = render_view(other, size, rng)
    # pull the patch's brightness towards the surroundings so it is not only a colour blob
    local = img.mean()
    grey = grey - grey.mean() + local + (grey.mean() - local) * min(1.0, 0.5 * severity)
    # its colour lies between the two materials: texture, not colour alone, gives it away
    host_tint = np.asarray(TEXTURES[category]["tint"], dtype=np.float32)
    tint = host_tint + (np.asarray(TEXTURES[other]["tint"], dtype=np.float32) - host_tint) * min(1.0, 0.4 * severity)
    content = np.clip(grey[:, :, None] * tint, 0.0, 1.0)
    return content, alpha


def _missing(img: np.ndarray, rng: np.random.Generator, severity: float) -> tuple[np.ndarray, np.ndarray]:
    from scipy.ndimage import gaussian_filter

    size = img.shape[0]
    alpha = _blob(rng, size, size * rng.uniform(0.06, 0.12), edge=2.0)
    sigma = size / 256 * rng.uniform(4.0, 7.0)
    smooth = gaussian_filter(img, (sigma, sigma, 0))
    content = smooth * (1.0 + rng.uniform(0.0, 0.08) * severity)
    return content, alpha * min(1.0, 0.9 * severity + 0.05)


def add_defect(
    clean: np.ndarray, kind: str, rng: np.random.Generator, severity: float, category: str
) -> tuple[np.ndarray, np.ndarray]:
    """Blend one defect of ``kind`` into ``clean``; returns (image, exact bool mask)."""
    if kind == "scratch":
        content, alpha = _scratch(clean, rng, severity)
    elif kind == "stain":
        content, alpha = _stain(clean, rng, severity)
    elif kind == "foreign":
        content, alpha = _foreign(clean, rng, severity, category)
    elif kind == "missing":
        content, alpha = _missing(clean, rng, severity)
    else:
        raise DatasetError(f"unknown synthetic defect kind {kind!r}; available: {', '.join(DEFECT_KINDS)}")
    mask = alpha >= MASK_ALPHA
    alpha = np.where(mask, alpha, 0.0)[:, :, None]
    return clean * (1.0 - alpha) + np.clip(content, 0.0, 1.0) * alpha, mask


def _finish(image: np.ndarray, noise: np.ndarray) -> np.ndarray:
    return np.clip(np.round((image + noise) * 255.0), 0, 255).astype(np.uint8)


def render_sample(
    config: SyntheticConfig, category: str, split: str, index: int, kind: str = "good", with_clean: bool = False
) -> tuple[np.ndarray, np.ndarray | None] | tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """One image of the set: (uint8 RGB image, bool mask or None[, uint8 clean image])."""
    rng = _rng(config, category, split, kind, index)
    size = config.image_size
    clean = render_clean(category, size, rng)
    noise = rng.normal(0.0, NOISE_SIGMA, size=clean.shape).astype(np.float32)
    mask = None
    image = clean
    if kind != "good":
        image, mask = add_defect(clean, kind, rng, config.severity, category)
    out = (_finish(image, noise), mask)
    return (*out, _finish(clean, noise)) if with_clean else out


def iter_layout(config: SyntheticConfig, render: Callable[[str, int, str], tuple[np.ndarray, np.ndarray | None]]):
    """Yield (relative image path, image, relative mask path or None, mask) for one category in
    the MVTec layout; ``render(split, index, kind)`` makes one image and its mask (any generator)."""
    for i in range(config.n_train):
        image, _ = render("train", i, "good")
        yield f"train/good/{i:03d}.png", image, None, None
    for i in range(config.n_test_good):
        image, _ = render("test", i, "good")
        yield f"test/good/{i:03d}.png", image, None, None
    for kind, i in config.defect_plan():
        image, mask = render("test", i, kind)
        yield f"test/{kind}/{i:03d}.png", image, f"ground_truth/{kind}/{i:03d}_mask.png", mask


def iter_category(config: SyntheticConfig, category: str):
    """:func:`iter_layout` of one texture category."""
    return iter_layout(config, lambda split, index, kind: render_sample(config, category, split, index, kind))


# -- on disk ----------------------------------------------------------------------------
def default_cache_dir() -> Path:
    """pyimgano's user cache folder (``pyimgano.listing.cache_root``)."""
    from pyimgano.listing import cache_root

    return Path(cache_root())


def write_category(config: SyntheticConfig, category: str, root: Path, items: Iterable) -> Path:
    """Write one category's ``items`` (what :func:`iter_layout` yields) into ``root/<category>``
    (atomically; safe across processes); nothing is generated when it is there already."""
    from PIL import Image

    target = root / category
    if _manifest_matches(target, config):
        return target
    if target.exists():
        raise DatasetError(
            f"{target}: exists but was not generated with these synthetic parameters "
            f"(no matching {MANIFEST}); choose another root or remove it"
        )
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{category}-", dir=root))
    try:
        for rel_image, image, rel_mask, mask in items:
            path = tmp / rel_image
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(path, compress_level=1)
            if rel_mask is not None:
                mask_path = tmp / rel_mask
                mask_path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask.astype(np.uint8) * 255).save(mask_path, compress_level=1)
        manifest = {"category": category, **config.as_dict()}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first
            if not _manifest_matches(target, config):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def claim_root(root: Path) -> None:
    """Make ``root`` a synthetic root, refusing folders that hold anything else.

    A root is accepted when it is new or empty, already carries the ``ROOT_MARKER`` file, or
    holds only generated categories; so a real data set folder passed by mistake (say, an
    MVTec AD root) is never written into.
    """
    marker = root / ROOT_MARKER
    if marker.is_file():
        return
    if root.exists() and not root.is_dir():
        raise DatasetError(f"{root}: synthetic root is not a directory")
    if root.is_dir():
        foreign = [
            p.name for p in root.iterdir() if not p.name.startswith(".") and not (p / MANIFEST).is_file()
        ]
        if foreign:
            raise DatasetError(
                f"{root}: not a synthetic data set folder (it holds {', '.join(sorted(foreign)[:5])}); "
                "give the synthetic set an empty or new root, or none to use the cache"
            )
    try:
        root.mkdir(parents=True, exist_ok=True)
        marker.write_text("pyimgano synthetic data set: generated files, safe to delete\n")
    except OSError as exc:
        raise DatasetError(f"{root}: cannot write the synthetic data set here ({exc})") from None


def _manifest_matches(target: Path, config: SyntheticConfig) -> bool:
    try:
        manifest = json.loads((target / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    manifest.pop("category", None)
    return manifest == config.as_dict()


class SyntheticDataset(MVTecDataset):
    """The generated set; the categories are the texture names.

    Another generator (:mod:`pyimgano_datasets.parts`) subclasses it and sets ``kinds``,
    ``cache_folder``, ``category_names`` and :meth:`_generate`.
    """

    name = "synthetic"
    kinds: tuple[str, ...] = DEFECT_KINDS
    cache_folder = "synthetic"
    category_names: tuple[str, ...] = tuple(TEXTURES)

    def __init__(
        self,
        root: str | Path | None = None,
        category: str | None = None,
        *,
        config: SyntheticConfig | None = None,
        cache_dir: str | Path | None = None,
        in_memory: bool = False,
    ) -> None:
        self.config = config or SyntheticConfig()
        for kind in self.config.defect_kinds:
            if kind not in self.kinds:
                raise DatasetError(f"unknown {self.name} defect kind {kind!r}; available: {', '.join(self.kinds)}")
        self.in_memory = in_memory
        self._pixels: dict[Path, np.ndarray] = {}
        if in_memory:
            root = Path(f"<memory>/{self.cache_folder}/{self.config.digest()}")
        elif root is None:
            root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir() / self.cache_folder
            root = root / self.config.digest()
        root = Path(root).expanduser()
        if not in_memory:
            claim_root(root)
            super().__init__(root, category)
            return
        # in memory: nothing touches the disk
        self.root = root
        self._scans = {}
        self._all_categories = None
        self.selected = category
        if category is not None:
            self._require_category(category)

    def _find_categories(self) -> list[str]:
        return list(self.category_names)

    def _generate(self, category: str):
        """(relative image path, image, relative mask path or None, mask) of each image of ``category``."""
        return iter_category(self.config, category)

    @property
    def info(self) -> DatasetInfo:
        """Known from the parameters alone: nothing is generated to answer it."""
        config = self.config
        kinds = sorted({kind for kind, _ in config.defect_plan()})
        counts = {
            "train": SplitCounts(good=config.n_train, defect=0),
            "test": SplitCounts(good=config.n_test_good, defect=config.n_test_defect),
        }
        return DatasetInfo(
            name=self.name,
            categories=list(self.categories),
            counts={cat: dict(counts) for cat in self.categories},
            defect_types={cat: list(kinds) for cat in self.categories},
            has_masks=True,
            root=self.root,
        )

    def _scan(self, category: str) -> CategoryScan:
        if not self.in_memory:
            write_category(self.config, category, self.root, self._generate(category))
            return scan_layout(self.root / category, category, MVTEC_LAYOUT, "required")
        splits: dict[str, list[DatasetSample]] = {"train": [], "test": []}
        for rel_image, image, rel_mask, mask in self._generate(category):
            image_path = self.root / category / rel_image
            mask_path = self.root / category / rel_mask if rel_mask else None
            self._pixels[image_path] = image
            if mask_path is not None:
                self._pixels[mask_path] = mask
            split, kind = rel_image.split("/")[:2]
            splits[split].append(
                DatasetSample(
                    image_path=image_path,
                    label=0 if kind == "good" else 1,
                    mask_path=mask_path,
                    defect_type=kind,
                    category=category,
                )
            )
        # the order of the files on disk: good first, then defect kinds by name
        splits["test"].sort(key=lambda s: (s.label, s.defect_type, s.image_path.name))
        return CategoryScan(splits, [])

    def _read(self, sample: DatasetSample) -> tuple[np.ndarray, np.ndarray | None]:
        if not self.in_memory:
            return super()._read(sample)
        if sample.image_path not in self._pixels:
            self.scan(sample.category)
        image = self._pixels[sample.image_path].copy()
        if sample.mask_path is None:
            return image, np.zeros(image.shape[:2], dtype=bool)
        return image, self._pixels[sample.mask_path].copy()

    def check(self, read_pixels: bool = True) -> list:
        return [] if self.in_memory else super().check(read_pixels)


def load_synthetic(
    root: str | Path | None = None,
    category: str | None = None,
    *,
    seed: int = 0,
    image_size: int = 256,
    n_train: int = 32,
    n_test_good: int = 10,
    n_test_defect: int = 16,
    defect_kinds: list[str] | tuple[str, ...] = DEFECT_KINDS,
    severity: float = 1.0,
    cache_dir: str | Path | None = None,
    in_memory: bool = False,
) -> SyntheticDataset:
    """Factory of the ``synthetic`` data set (``root`` optional: default is the user cache)."""
    config = SyntheticConfig(
        seed=seed,
        image_size=image_size,
        n_train=n_train,
        n_test_good=n_test_good,
        n_test_defect=n_test_defect,
        defect_kinds=tuple(defect_kinds),
        severity=severity,
    )
    return SyntheticDataset(root, category, config=config, cache_dir=cache_dir, in_memory=in_memory)
