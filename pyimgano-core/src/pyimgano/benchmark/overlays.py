"""Heatmap overlays: image | heatmap over the image | ground truth and predicted mask outlined.

Pure NumPy + Pillow (no matplotlib). Heatmaps of one detector and category share one colour
range (the pipeline's: the pixel threshold halfway), so a good image looks cool and a defect
hot, and images compare at a glance. Overlays are JPEG: photographs compress some ten times
better than as PNG, which keeps report.html small.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

# (position, RGB) anchors of a perceptually ordered dark-blue -> cyan -> yellow -> red map
_ANCHORS = np.array(
    [
        [0.00, 48, 18, 59],
        [0.15, 70, 107, 227],
        [0.35, 27, 207, 212],
        [0.50, 97, 252, 108],
        [0.65, 210, 233, 53],
        [0.80, 254, 155, 45],
        [1.00, 180, 20, 4],
    ],
    dtype=np.float64,
)
_LUT = np.stack(
    [np.interp(np.linspace(0, 1, 256), _ANCHORS[:, 0], _ANCHORS[:, c]) for c in (1, 2, 3)], axis=1
).astype(np.uint8)

PANEL_MIN = 192
PANEL_MAX = 320
GT_COLOUR = (0, 255, 0)
GT_ON_HEATMAP = (255, 255, 255)
PREDICTED_COLOUR = (255, 0, 255)
OVERLAY_SUFFIX = ".jpg"
JPEG_QUALITY = 82


def colourise(amap: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """HxW float -> HxWx3 uint8 through the colour map, values clipped to [lo, hi]."""
    span = hi - lo if hi > lo else 1.0
    idx = np.clip((np.asarray(amap, dtype=np.float64) - lo) / span, 0.0, 1.0)
    return _LUT[np.round(idx * 255).astype(np.int64)]


def map_range(maps: Sequence[np.ndarray]) -> tuple[float, float]:
    """Colour range shared by a set of maps: the minimum and the 99.9th percentile."""
    step = max(1, int(sum(m.size for m in maps) // 2_000_000))
    values = np.concatenate([np.asarray(m, dtype=np.float32).ravel()[::step] for m in maps])
    lo, hi = float(values.min()), float(np.percentile(values, 99.9))
    return lo, (hi if hi > lo else lo + 1.0)


def contour(mask: np.ndarray, thickness: int) -> np.ndarray:
    """Boundary pixels of a binary mask, ``thickness`` pixels wide, inside the regions."""
    from scipy.ndimage import binary_erosion

    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return mask
    inner = binary_erosion(mask, iterations=max(1, thickness), border_value=0)
    return mask & ~inner


def _panel_scale(height: int, width: int) -> float:
    side = max(height, width)
    if side < PANEL_MIN:
        return float(int(np.ceil(PANEL_MIN / side)))
    if side > PANEL_MAX:
        return PANEL_MAX / side
    return 1.0


def _resize(array: np.ndarray, scale: float, nearest: bool) -> np.ndarray:
    from PIL import Image

    if scale == 1.0:
        return array
    h, w = array.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if array.dtype == bool:
        return np.asarray(Image.fromarray(array.astype(np.uint8) * 255).resize(size, Image.NEAREST)) > 127
    if array.dtype != np.uint8:
        return np.asarray(Image.fromarray(array.astype(np.float32)).resize(size, Image.BILINEAR))
    return np.asarray(Image.fromarray(array).resize(size, Image.NEAREST if nearest else Image.BILINEAR))


def render_overlay(
    image: np.ndarray,
    mask: np.ndarray | None,
    amap: np.ndarray,
    lo: float,
    hi: float,
    caption: str = "",
    alpha: float = 0.5,
    predicted: np.ndarray | None = None,
) -> bytes:
    """JPEG bytes: three panels side by side under a caption strip: the image; the heatmap
    over it with the ground truth outlined in white; the image with the ground truth outlined
    in green and the predicted mask (``predicted``) in magenta."""
    from PIL import Image, ImageDraw

    scale = _panel_scale(*image.shape[:2])
    img = _resize(np.asarray(image, dtype=np.uint8), scale, nearest=scale > 1)
    heat = colourise(_resize(np.asarray(amap, dtype=np.float32), scale, nearest=False), lo, hi)
    blended = (alpha * heat + (1 - alpha) * img).round().astype(np.uint8)
    outlined = img.copy()
    thickness = max(1, img.shape[0] // 128)
    if mask is not None and np.asarray(mask).any():
        edge = contour(_resize(np.asarray(mask, dtype=bool), scale, nearest=True), thickness)
        outlined[edge] = GT_COLOUR
        blended[edge] = GT_ON_HEATMAP
    if predicted is not None and np.asarray(predicted).any():
        outlined[contour(_resize(np.asarray(predicted, dtype=bool), scale, nearest=True), thickness)] = PREDICTED_COLOUR
    gap = 4
    h, w = img.shape[:2]
    strip = 18 if caption else 0
    canvas = np.full((h + strip, 3 * w + 2 * gap, 3), 255, dtype=np.uint8)
    for k, panel in enumerate((img, blended, outlined)):
        canvas[strip:, k * (w + gap) : k * (w + gap) + w] = panel
    picture = Image.fromarray(canvas)
    if caption:
        ImageDraw.Draw(picture).text((4, 3), caption, fill=(0, 0, 0))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return buffer.getvalue()
