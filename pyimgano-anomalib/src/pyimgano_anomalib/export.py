"""ONNX export of anomalib models through anomalib's own exporter, for pyimgano's torch-free runtime.

``AnomalibModule.to_onnx`` (torch.export) writes the module as it scores: anomalib's
pre-processor (resize, ImageNet normalisation) and the torch model, whose outputs are the raw
``pred_score`` and ``anomaly_map`` (the adapters build the module without post-processing).
The graph takes RGB in [0, 1] at the network input the adapter fixed at ``fit``
(``input_shape_``: ``image_size`` x ``image_size``, or the aspect-kept (height, width) of
``aspect="keep"``); the manifest's geometry resizes each image to exactly that
(``Preprocess(resize=(height, width))``) and takes the map back to the image's size (scores
agree within 1e-6 relative, maps of images at least the input size within float rounding;
the adapter shrinks maps with torch's non-antialiased bilinear resize, so maps of smaller
images differ by up to about 0.1% of their range).

Only the catalog entries marked ``exportable`` (:mod:`pyimgano_anomalib.catalog`) declare the
capability: their graphs were checked against the adapter's scores and maps.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from pyimgano.errors import ExportError

OPSET = 18
GRAPH = "model.onnx"


def export_onnx(detector: Any, directory: Path) -> dict[str, Any]:
    """Write the fitted adapter's anomalib module as ``model.onnx`` in ``directory``."""
    import torch

    import anomalib
    from pyimgano.preprocess import Preprocess

    module = detector.module_
    if module is None:
        raise ExportError(f"{detector.component}: not fitted (no anomalib module to export)")
    height, width = (int(side) for side in detector.input_shape_)
    module.eval()
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with tempfile.TemporaryDirectory(prefix="pyimgano-anomalib-export-") as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            written = module.to_onnx(tmp, input_size=(height, width), opset_version=OPSET, external_data=False,
                                     verbose=False)
            shutil.move(str(written), str(Path(directory) / GRAPH))
    except ExportError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch.export and onnxscript raise many kinds
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(f"{detector.component}: anomalib's ONNX export failed: {first}") from None
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
    return {
        "graph": GRAPH,
        "input": {"name": "input", "layout": "NCHW", "pixel_divisor": 255.0, "size": (height, width),
                  "min_size": min(height, width)},
        "outputs": {"score": "pred_score", "map": "anomaly_map" if detector.supports_maps else None},
        "geometry": Preprocess(resize=(height, width)).model_dump(mode="json"),
        "resize_dtype": "float32",
        "max_batch": None,
        "exported_with": {"torch": torch.__version__.split("+")[0], "anomalib": anomalib.__version__,
                          "onnx_opset": OPSET, "exporter": "anomalib AnomalibModule.to_onnx (torch.export)"},
        "notes": [
            f"a map is resized to its image with pyimgano.preprocess (antialiased); the adapter uses torch's bilinear "
            f"resize, which agrees for images of {height}x{width} px and larger and differs slightly for smaller ones"
        ],
    }
