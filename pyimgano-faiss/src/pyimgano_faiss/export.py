"""ONNX export of the faiss plugin's detectors for pyimgano's torch-free runtime.

One graph holds everything after the resize: ImageNet normalisation, the backbone up to its
deepest chosen stage, the patch (or global) embedding, the nearest-neighbour search against
the memory bank (an initializer of the graph), the image score and, for PatchCore, the map at
the network input size (bilinear upsampling of the patch grid and the Gaussian blur, the same
linear steps as :func:`pyimgano_faiss.patchcore.map_matrix`). The runtime resizes each image
with the detector's geometry (:mod:`pyimgano.preprocess`) and maps the map back to the image.

Why the search is in the graph: exact search is one matrix product and a row minimum, which
onnxruntime runs as fast as faiss's flat index or NumPy's BLAS at the memory-bank sizes
PatchCore builds (a few thousand to tens of thousands of rows: ``docs/deploy.md`` has the
measurements), and the graph then stands alone: any onnxruntime or OpenVINO binding (C++,
C#, Java) runs it with no search library. The distance matrix grows with images x patches x
bank rows, so the export records the largest batch (``max_batch``) that keeps it under
:data:`DISTANCE_BUDGET_MB`. The spatial axes are dynamic, so a geometry policy that keeps the
aspect ratio or tiles runs the same graph.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pyimgano.errors import ExportError
from pyimgano_faiss.patchcore import context_term

OPSET = 17
INPUT = "images"
DISTANCE_BUDGET_MB = 256
"""Largest query x bank distance matrix one graph run may hold."""


class _Bank(nn.Module):
    """Exact squared Euclidean distances to the rows of a bank (|q|^2 - 2 q.b + |b|^2, as faiss's flat index)."""

    def __init__(self, bank: np.ndarray) -> None:
        super().__init__()
        rows = torch.from_numpy(np.ascontiguousarray(bank, dtype=np.float32))
        self.register_buffer("bank", rows)
        self.register_buffer("bank_t", rows.t().contiguous())
        self.register_buffer("bank_sq", (rows * rows).sum(1))

    def squared(self, q: torch.Tensor) -> torch.Tensor:
        return (q * q).sum(-1, keepdim=True) - 2.0 * torch.matmul(q, self.bank_t) + self.bank_sq


def _gaussian_taps(sigma: float) -> torch.Tensor | None:
    """The 1-D kernel of :func:`pyimgano_faiss.patchcore.blur_matrix` away from the borders."""
    from pyimgano_faiss.patchcore import blur_matrix

    radius = int(4.0 * sigma + 0.5)
    if sigma <= 0 or radius < 1:
        return None
    row = blur_matrix(4 * radius + 1, float(sigma), torch.float64)[2 * radius]
    return row[radius : 3 * radius + 1].float()


class _Blur(nn.Module):
    """The Gaussian blur of :func:`pyimgano_faiss.patchcore.blur_matrix` (reflected borders), separable."""

    def __init__(self, sigma: float) -> None:
        super().__init__()
        taps = _gaussian_taps(sigma)
        self.radius = 0 if taps is None else (len(taps) - 1) // 2
        if taps is not None:
            self.register_buffer("taps_v", taps.view(1, 1, -1, 1))
            self.register_buffer("taps_h", taps.view(1, 1, 1, -1))

    def forward(self, amap: torch.Tensor) -> torch.Tensor:
        if not self.radius:
            return amap
        r = self.radius
        amap = F.conv2d(F.pad(amap, (0, 0, r, r), mode="reflect"), self.taps_v)
        return F.conv2d(F.pad(amap, (r, r, 0, 0), mode="reflect"), self.taps_h)


class _FullChannels:
    """Stands in for the detector in ``PatchCore._embed``: no channel reduction."""

    target_dim = None


_FULL_CHANNELS = _FullChannels()


def _pooling_matrix(detector: Any, backbone: nn.Module) -> torch.Tensor | None:
    """D x target_dim matrix M with ``x @ M`` = ``adaptive_avg_pool1d(x, target_dim)`` (None: no reduction)."""
    channels = sum(backbone.channels)
    if not detector.target_dim or detector.target_dim >= channels:
        return None
    eye = torch.eye(channels).unsqueeze(1)  # D x 1 x D: pooling each unit vector gives one row
    return F.adaptive_avg_pool1d(eye, detector.target_dim)[:, 0, :].contiguous()


class _PatchCoreGraph(nn.Module):
    def __init__(self, detector: Any, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.detector = detector
        self.search = _Bank(detector.memory_bank_)
        self.register_buffer("pool", _pooling_matrix(detector, backbone))
        self.reweight = bool(detector.reweight)
        self.neighbours = int(min(detector.reweight_neighbors, len(detector.memory_bank_)))
        self.blurs = nn.ModuleList([_Blur(detector.sigma)])
        self.context = int(detector.context_ or 0)
        if self.context:
            # the context view (pyimgano_faiss.patchcore "Detail and context"): the input
            # downsampled by a box filter, a bank of its own, maps scaled by each view's normal
            # (median, quantile) and combined by their maximum at the network input size
            self.context_search = _Bank(detector.context_bank_)
            self.blurs.append(_Blur(detector.sigma * self.context))
            (m0, q0), (m1, q1) = np.asarray(detector.view_scales_, dtype=np.float64)
            self.weight = float(detector.context_weight)
            self.margin = None if detector.context_margin is None else float(detector.context_margin)
            self.register_buffer("shift", torch.tensor([m0, m1], dtype=torch.float32))
            self.register_buffer("gain", torch.tensor([1.0 / (q0 - m0), 1.0 / (q1 - m1)], dtype=torch.float32))

    def _view(self, images: torch.Tensor, bank: _Bank) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(queries, distances, nearest rows, 1 x h x w grid) of one view of the input."""
        # the detector's own embedding code; its channel reduction (adaptive pooling, which
        # ONNX lacks) becomes a product with the pooling matrix
        emb = type(self.detector)._embed(_FULL_CHANNELS, self.backbone(images))  # B x D x h x w
        q = emb.permute(0, 2, 3, 1).flatten(1, 2)  # B x hw x D
        if self.pool is not None:
            q = torch.matmul(q, self.pool)
            emb = emb[:, : self.pool.shape[1]]  # only its shape is used below
        best, nearest = bank.squared(q).min(-1)
        dist = best.clamp_min(0.0).sqrt()  # B x hw
        return q, dist, nearest, dist.view_as(emb[:, :1])

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q, dist, nearest, grid = self._view(images, self.search)
        score = self._reweighted(q, dist, nearest) if self.reweight else dist.max(1).values
        size = images.shape[-2:]
        amap = self.blurs[0](F.interpolate(grid, size=size, mode="bilinear", align_corners=False))
        if self.context:
            _, dist_c, _, grid_c = self._view(F.avg_pool2d(images, self.context), self.context_search)
            amap_c = self.blurs[1](F.interpolate(grid_c, size=size, mode="bilinear", align_corners=False))
            score = torch.maximum((score - self.shift[0]) * self.gain[0],
                                  context_term((dist_c.max(1).values - self.shift[1]) * self.gain[1], self.weight, self.margin))
            amap = torch.maximum((amap - self.shift[0]) * self.gain[0],
                                 context_term((amap_c - self.shift[1]) * self.gain[1], self.weight, self.margin))
        return score, amap[:, 0]

    def _reweighted(self, q: torch.Tensor, dist: torch.Tensor, nearest: torch.Tensor) -> torch.Tensor:
        """Paper eq. 7, as :meth:`pyimgano_faiss.patchcore.PatchCore._reweighted` (exact search)."""
        top = dist.argmax(1, keepdim=True)  # B x 1
        s_star = dist.gather(1, top)[:, 0]
        feats = q.gather(1, top.unsqueeze(-1).expand(-1, -1, q.shape[-1]))[:, 0]  # B x D
        m_star = nearest.gather(1, top)[:, 0]
        bank = self.search.bank
        _, support = self.search.squared(bank.index_select(0, m_star)).topk(self.neighbours, dim=1, largest=False)
        rows = bank.index_select(0, support.flatten()).view(support.shape[0], support.shape[1], -1)
        d = (rows - feats.unsqueeze(1)).pow(2).sum(-1).sqrt()
        soft = torch.softmax(d, dim=1)
        return (1.0 - soft[:, 0]) * s_star


class _KNNGraph(nn.Module):
    def __init__(self, detector: Any, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.search = _Bank(detector.embeddings_)
        self.k = int(min(detector.n_neighbors, len(detector.embeddings_)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([f.float().mean(dim=(2, 3)) for f in self.backbone(images)], 1)
        d2, _ = self.search.squared(pooled).topk(self.k, dim=1, largest=False)
        return d2.clamp_min(0.0).sqrt().mean(1)


def _cpu_backbone(detector: Any) -> nn.Module:
    """The detector's backbone on the CPU (the export traces it there)."""
    from pyimgano_faiss.devices import resolve_device

    if resolve_device(detector.device) != "cpu":
        device = detector.device
        detector.set_params(device="cpu")
        try:
            return detector._prepare()
        finally:
            detector.set_params(device=device)
    return detector._prepare()


def _write_graph(module: nn.Module, sample: torch.Tensor, path: Path, outputs: list[str], maps: bool) -> str:
    """Trace ``module`` into ``path`` with dynamic batch and spatial axes; returns the exporter's name."""
    axes: dict[str, dict[int, str]] = {INPUT: {0: "batch", 2: "height", 3: "width"}, outputs[0]: {0: "batch"}}
    if maps:
        axes[outputs[1]] = {0: "batch", 1: "height", 2: "width"}
    # The TorchScript tracer follows the very module the detector scores with (its stage hooks
    # included) and takes seconds; torch.export needs a hook-free copy and minutes on a CPU.
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module.eval(), (sample,), str(path), input_names=[INPUT], output_names=outputs,
                dynamic_axes=axes, opset_version=OPSET, dynamo=False,
            )
    except Exception as exc:  # noqa: BLE001 - torch.onnx raises many kinds
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(f"{path.name}: torch.onnx cannot export the graph: {first}") from None
    return "torch.onnx (TorchScript tracer)"


def _example_shape(detector: Any) -> tuple[int, int]:
    """A network input shape of the fitted geometry (a square image of the fitted side; 256 for 'original')."""
    side = detector.input_side() or 256
    return detector.geometry.output_shape((side, side))


def _check_exportable(detector: Any) -> list[str]:
    """Refuse what the runtime cannot reproduce (tiles); notes on what differs (bfloat16, approximate search)."""
    if detector.tile_size is not None:
        raise ExportError(
            f"{detector.component}: tile_size={detector.tile_size} cannot be exported (the runtime resizes, "
            "it does not tile); export a detector fitted without tile_size"
        )
    notes = []
    if detector.precision_ == "bfloat16":
        notes.append("the source runs its backbone in bfloat16; the graph runs in float32, so scores differ slightly")
    return notes


def _spec(detector: Any, graph: str, exporter: str, outputs: dict[str, str | None], max_batch: int | None,
          notes: list[str]) -> dict[str, Any]:
    size = _example_shape(detector)
    return {
        "graph": graph,
        "input": {"name": INPUT, "layout": "NCHW", "pixel_divisor": 255.0, "size": None, "min_size": 32},
        "outputs": outputs,
        "geometry": detector.geometry.model_dump(mode="json"),
        "resize_dtype": "float32",
        "max_batch": max_batch,
        "exported_with": {"torch": torch.__version__.split("+")[0], "onnx_opset": OPSET, "exporter": exporter,
                          "network_input": f"{size[0]}x{size[1]}"},
        "notes": notes,
    }


def _sample(detector: Any) -> torch.Tensor:
    height, width = _example_shape(detector)
    return torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(0))


def export_patchcore(detector: Any, directory: Path) -> dict[str, Any]:
    """Write ``faiss:patchcore`` as ``model.onnx`` (outputs ``score`` and ``map``) in ``directory``."""
    notes = _check_exportable(detector)
    module = _PatchCoreGraph(detector, _cpu_backbone(detector))
    exporter = _write_graph(module, _sample(detector), Path(directory) / "model.onnx", ["score", "map"], maps=True)
    rows, (gh, gw) = len(detector.memory_bank_), detector.grid_
    per_image = gh * gw * rows * 4
    if detector.context_:
        (ch, cw), context_rows = detector.context_grid_, len(detector.context_bank_)
        per_image = max(per_image, ch * cw * context_rows * 4)
    max_batch = int(np.clip(DISTANCE_BUDGET_MB * 2**20 // max(per_image, 1), 1, 1024))
    if detector.export_reference() is not detector:
        notes.append(f"the source searches its memory bank ({rows} rows) with an approximate faiss index "
                     f"(index={detector.index!r}), the graph exactly: image scores agree (the source makes its "
                     "largest patch distances exact), other map values of the source can be slightly larger; the "
                     "check compares the graph with exact search and records the source's own difference "
                     "(check.source_vs_reference)")
    return _spec(detector, "model.onnx", exporter, {"score": "score", "map": "map"}, max_batch, notes)


def export_knn(detector: Any, directory: Path) -> dict[str, Any]:
    """Write ``faiss:knn`` as ``model.onnx`` (output ``score``) in ``directory``."""
    notes = _check_exportable(detector)
    module = _KNNGraph(detector, _cpu_backbone(detector))
    exporter = _write_graph(module, _sample(detector), Path(directory) / "model.onnx", ["score"], maps=False)
    return _spec(detector, "model.onnx", exporter, {"score": "score", "map": None}, None, notes)
