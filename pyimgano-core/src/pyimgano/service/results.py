"""One scored image as ``pyimgano serve`` answers it and ``pyimgano watch`` records it.

The scores, maps and masks come from :meth:`pyimgano.Pipeline.predict`, the same call
``pyimgano predict`` makes; pictures are drawn by ``pyimgano predict``'s helpers.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np


def image_record(pipe: Any, output: Any, k: int) -> dict[str, Any]:
    """Image ``k`` of a :class:`~pyimgano.pipeline.PipelineOutput`: score, label, the image
    threshold, margin (score minus threshold), p-value (:func:`pyimgano.calibration.p_values`,
    as predict computes it), anomalous pixel fraction and regions
    (``bbox`` [x, y, width, height], ``area``, ``peak``; largest first)."""
    from pyimgano.pipeline import find_regions

    score = float(output.scores[k])
    threshold = output.image_threshold
    mask = None if output.masks is None else output.masks[k]
    amap = None if output.maps is None else output.maps[k]
    return {
        "score": score,
        "label": None if output.labels is None else int(output.labels[k]),
        "image_threshold": threshold,
        "margin": None if threshold is None else score - threshold,
        "p_value": None if output.p_values is None else float(output.p_values[k]),
        "pixel_threshold": output.pixel_threshold,
        "anomalous_fraction": None if mask is None else round(float(mask.mean()), 6),
        "regions": [] if mask is None else find_regions(mask, amap),
    }


class Pictures:
    """Heatmaps and masks as PNG bytes, in one colour range for the life of the process:
    the pipeline's, else fixed by the first maps seen (as ``pyimgano predict`` does)."""

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self.scale: tuple[float, float] | None = None

    def heatmap(self, image: np.ndarray, amap: np.ndarray) -> bytes:
        from pyimgano.cli.predict import colour_range, heatmap_png

        if self.scale is None:
            self.scale = colour_range(self.pipe, [amap])
        buffer = io.BytesIO()
        heatmap_png(image, amap, *self.scale, buffer)
        return buffer.getvalue()

    @staticmethod
    def mask(mask: np.ndarray) -> bytes:
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(np.asarray(mask, dtype=np.uint8) * 255).save(buffer, format="PNG")
        return buffer.getvalue()
