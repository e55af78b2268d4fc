"""PatchCore (Roth et al., CVPR 2022) with an exact, fast coreset and faiss search.

Fit: locally aware patch features from two backbone stages (3x3 average pooling, the
deeper map bilinearly upsampled to the shallower one, concatenated, optionally reduced
to ``target_dim`` channels by adaptive average pooling), a memory bank chosen by greedy
k-center selection on randomly projected features (:mod:`pyimgano_faiss.coreset`; by
default 10% of the patches, at most about 102 per training input at high resolution).
Out-of-fold (``fit_out_of_fold``, calibration without a holdout): fit, keeping the patch
features it computed, then each training image is scored against the memory bank without
the rows its own patches gave (``bank_image_`` records each row's image): an exact search
of the bank minus the image's rows, with no second pass through the backbone.
Score: each patch's distance to its nearest memory-bank patch; the image score is the
largest (optionally the paper's neighbourhood reweighting); the map is the patch-score
grid upsampled bilinearly to the network input size, Gaussian-smoothed (sigma 4 there)
and resized to each image's own size (both resizes are :mod:`pyimgano.preprocess`'s).

Detail and context (``context``, on by default for network inputs of 384 px and more): a
second view of each network input, downsampled by ``context_`` with a box filter, has a
memory bank of its own. A stride-8 patch of a large input covers a small part of an object,
so a misplaced or missing part looks locally normal; the coarse view sees it whole. Each
view's map is scaled by its own normal patch distances (the median and the 0.999 quantile of
the maps of up to eight training images, each scored against the bank without its own
patches), and the combined map is the larger of the detail view's and the context view's
term: ``context_weight`` x its map, or past its normal range the map less ``context_margin``
(``docs/patchcore.md``, "Detail and context").
"""

from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pyimgano import StateArray
from pyimgano.contracts import empty_maps
from pyimgano.preprocess import resize_matrix, stitch_tiles
from pyimgano_faiss.backbones import feature_channels
from pyimgano_faiss.base import GEOMETRY_STATE, BackboneDetector, Unit
from pyimgano_faiss.coreset import (
    ChunkedCoreset,
    RandomProjection,
    auto_coreset_ratio,
    coreset_size,
    greedy_coreset,
    greedy_coreset_torch,
)
from pyimgano_faiss.embeddings import EmbeddingStore
from pyimgano_faiss.plugin import CONTEXT_AUTO_MIN_SIDE, PatchCoreParams
from pyimgano_faiss.search import (
    build_index,
    deserialize_index,
    is_exact,
    search,
    search_excluding,
    serialize_index,
)

# the normal scale of a view: the median and this quantile of out-of-image map values
SCALE_QUANTILE = 0.999
# training images scored without their own patches to measure each view's normal scale
SCALE_IMAGES = 8
# out-of-fold with an approximate index: bank rows searched per patch before its own image's are
# excluded by a second search (4: on the VisA capsules subset 0.2% of patches needed it, against
# 31% with 1; the first search costs about the same for 1 to 8)
LEAVE_OUT_NEIGHBOURS = 4


@lru_cache(maxsize=32)
def blur_matrix(size: int, sigma: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The size x size matrix of a 1-D Gaussian blur with reflected borders (radius 4 sigma)."""
    radius = min(int(4.0 * sigma + 0.5), size - 1)
    if sigma <= 0 or radius < 1:
        return torch.eye(size, dtype=dtype)
    taps = np.exp(-(np.arange(-radius, radius + 1) ** 2) / (2.0 * sigma * sigma))
    taps /= taps.sum()
    matrix = np.zeros((size, size))
    rows = np.arange(size)
    for offset, weight in zip(range(-radius, radius + 1), taps):
        src = rows + offset
        src = np.where(src < 0, -src, src)
        src = np.where(src >= size, 2 * (size - 1) - src, src)
        np.add.at(matrix, (rows, src), weight)
    return torch.from_numpy(matrix).to(dtype)


@lru_cache(maxsize=32)
def map_matrix(grid: int, size: int, out: int, sigma: float) -> torch.Tensor:
    """out x grid matrix A with ``A @ P @ A'.T`` = resize(blur(resize(P))) along one axis.

    The resize of the patch grid to ``size``, the Gaussian blur at ``size`` and the resize to
    the image's own side ``out`` (:func:`pyimgano.preprocess.resize_matrix`, the shared
    bilinear resize) are all linear and separable, so one small matrix per axis gives the
    whole map: a few MFLOP per image instead of two convolutions over the full-size map.
    """
    up = torch.from_numpy(resize_matrix(grid, size).copy())
    matrix = blur_matrix(size, sigma, torch.float64) @ up
    if out != size:
        matrix = torch.from_numpy(resize_matrix(size, out).copy()) @ matrix
    return matrix.float()


def context_term(scaled: Any, weight: float, margin: float | None) -> Any:
    """The context view's share of the combined maximum, from its scaled map or score (numpy, a
    float or a torch tensor: the exported graph uses it too): ``weight`` x it, or with a
    ``margin`` it less the margin where that is larger (past its normal range)."""
    term = weight * scaled
    if margin is None:
        return term
    return (torch.maximum if isinstance(scaled, torch.Tensor) else np.maximum)(term, scaled - margin)


class PatchCore(BackboneDetector):
    """Native PatchCore; parameters: :class:`pyimgano_faiss.plugin.PatchCoreParams`.

    See the module docstring and ``docs/patchcore.md``.
    """

    params_model = PatchCoreParams
    state_arrays = {
        "memory_bank": StateArray("float", ("bank_rows", "feature_dim")),
        "grid": StateArray("int", (2,)),
        "n_patches": StateArray("int", ()),
        "coreset_ratio": StateArray("float", (), required=False),  # the ratio fit used (coreset_ratio="auto")
        "faiss_index": StateArray("uint8", ("index_bytes",), required=False),  # IVF/HNSW, faiss's own format
        # the context view (absent: one view, as in models saved before it existed)
        "context": StateArray("int", (), required=False),
        "context_bank": StateArray("float", ("context_rows", "feature_dim"), required=False),
        "context_grid": StateArray("int", (2,), required=False),
        "context_index": StateArray("uint8", ("context_index_bytes",), required=False),
        "view_scales": StateArray("float", (2, 2), required=False),  # (median, quantile) per view
        **GEOMETRY_STATE,
    }

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.memory_bank_: np.ndarray | None = None
        self.grid_: tuple[int, int] | None = None
        self.n_patches_: int | None = None
        self.coreset_ratio_: float | None = None
        self.coreset_chunks_: int | None = None
        self._index = None
        self._bank_tensor: torch.Tensor | None = None
        self._bank_norms: dict[int, np.ndarray] = {}  # per view, |row|^2 of its bank (exact re-search)
        self.bank_image_: np.ndarray | None = None  # per bank row, the training image it came from (not saved)
        self.context_bank_image_: np.ndarray | None = None  # the same for the context bank
        self.context_: int | None = None
        self.context_bank_: np.ndarray | None = None
        self.context_grid_: tuple[int, int] | None = None
        self.view_scales_: np.ndarray | None = None
        self._context_index = None

    # -- features -----------------------------------------------------------------
    def _embed(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Per-layer maps -> B x D x h x w patch embeddings at the shallowest grid."""
        feats = [F.avg_pool2d(f, 3, stride=1, padding=1) for f in feats]
        size = feats[0].shape[-2:]
        feats = [feats[0]] + [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in feats[1:]]
        emb = torch.cat(feats, 1)
        if self.target_dim and self.target_dim < emb.shape[1]:
            b, d, h, w = emb.shape
            flat = emb.permute(0, 2, 3, 1).reshape(-1, 1, d)
            emb = F.adaptive_avg_pool1d(flat, self.target_dim).reshape(b, h, w, -1).permute(0, 3, 1, 2)
        return emb

    @staticmethod
    def _rows(emb: torch.Tensor) -> np.ndarray:
        return emb.permute(0, 2, 3, 1).reshape(-1, emb.shape[1]).float().cpu().numpy()

    # -- views ----------------------------------------------------------------------
    def _resolve_context(self) -> int | None:
        """The context view's downsampling factor for this fit (``context="auto"`` is decided here)."""
        if self.context != "auto":
            return self.context
        side = self.input_side()
        if self.tile_size is not None or side is None or side < CONTEXT_AUTO_MIN_SIDE:
            return None
        return 2

    def _network_outputs(self, x: torch.Tensor):
        """Stage maps of the detail view, and with a context view a pair: (detail, context)."""
        if not self.context_:
            return self.forward(x)
        return self.forward(x), self.forward(F.avg_pool2d(x, self.context_))

    def _views(self, outputs) -> list[list[torch.Tensor]]:
        return list(outputs) if self.context_ else [outputs]

    def _context_shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        return shape[0] // self.context_, shape[1] // self.context_

    # -- fit ------------------------------------------------------------------------
    def _fit(self, images: list[np.ndarray], keep: list[EmbeddingStore] | None = None) -> list[tuple[list[Unit], list]]:
        """Fit the bank(s); with ``keep`` (one store per view), every patch row also goes there,
        and the return value says which rows each batch of units gave: ``[(units, [(h, w) per
        view]), ...]`` in stream order."""
        self._resolve_fit_geometry(images)
        self.context_ = self._resolve_context()
        self.context_bank_ = None
        units = self.plan(images)
        n_views = 2 if self.context_ else 1
        counts = [sum(h * w for h, w in (self.grid_shape(u.shape) for u in units))]
        if self.context_:
            counts.append(sum(h * w for h, w in (self.grid_shape(self._context_shape(u.shape)) for u in units)))
        ratio = self.coreset_ratio
        self.coreset_ratio_ = auto_coreset_ratio(counts[0] / len(units)) if ratio == "auto" else float(ratio)
        ratios = [self.coreset_ratio_] + [
            auto_coreset_ratio(c / len(units)) if ratio == "auto" else float(ratio) for c in counts[1:]
        ]
        # training images whose rows are kept to measure each view's normal scale (context only)
        rng = np.random.default_rng(self.seed)
        sample = set() if not self.context_ else set(
            rng.choice(len(images), size=min(SCALE_IMAGES, len(images)), replace=False).tolist())
        kept: list[dict[int, tuple[np.ndarray, tuple[int, int], tuple[int, int]]]] = [{} for _ in range(n_views)]
        starts: list[list[int]] = [[] for _ in range(n_views)]
        owners: list[list[int]] = [[] for _ in range(n_views)]
        offsets = [0] * n_views
        grids: list[tuple[int, int] | None] = [None] * n_views
        coresets: list[ChunkedCoreset | None] = [None] * n_views
        batches: list[tuple[list[Unit], list]] = []
        try:
            with torch.inference_mode():
                for batch, outputs in self._features(images, "patchcore fit", units):
                    batches.append((batch, []))
                    for v, feats in enumerate(self._views(outputs)):
                        emb = self._embed(feats)
                        rows = self._rows(emb)
                        per = emb.shape[-2] * emb.shape[-1]
                        batches[-1][1].append((int(emb.shape[-2]), int(emb.shape[-1])))
                        if keep is not None:
                            keep[v].append(rows)
                        if grids[v] is None:
                            grids[v] = (int(emb.shape[-2]), int(emb.shape[-1]))
                        if coresets[v] is None:
                            # a chunk of every view holds the same training inputs: the detail view's
                            # coreset_chunk patches (the context view's picks would otherwise grow
                            # with its higher ratio, and the greedy's cost with the picks per chunk)
                            chunk = max(1, self.coreset_chunk * counts[v] // counts[0])
                            coresets[v] = self._coreset(counts[v], ratios[v], rows.shape[1], chunk)
                        coresets[v].add(rows)
                        for j, unit in enumerate(batch):
                            starts[v].append(offsets[v] + j * per)
                            owners[v].append(unit.image)
                            if unit.image in sample:
                                grid = (int(emb.shape[-2]), int(emb.shape[-1]))
                                kept[v][unit.image] = (rows[j * per:(j + 1) * per].copy(), grid, unit.frame)
                        offsets[v] += len(rows)
            banks = [c.finish() for c in coresets]
            bank_owners = [np.asarray(owners[v])[np.searchsorted(starts[v], coresets[v].chosen_rows, "right") - 1]
                           for v in range(n_views)]
            self.coreset_chunks_ = coresets[0].n_chunks
        finally:
            for c in coresets:
                if c is not None:
                    c.close()
        self.memory_bank_, self.grid_, self.bank_image_ = banks[0], grids[0], bank_owners[0]
        self.n_patches_ = counts[0]
        self._build_search()
        if not self.context_:
            self.context_bank_ = self.context_grid_ = self.view_scales_ = self._context_index = None
            self.context_bank_image_ = None
            return batches
        self.context_bank_, self.context_grid_, self.context_bank_image_ = banks[1], grids[1], bank_owners[1]
        self._build_context_search()
        self.view_scales_ = np.array([self._normal_scale(v, kept[v]) for v in range(n_views)], dtype=np.float64)
        return batches

    def _coreset(self, n: int, ratio: float, dim: int, chunk: int) -> ChunkedCoreset:
        """Greedy k-center selection of ``ratio`` of ``n`` streamed rows of width ``dim``, ``chunk`` rows at a time."""
        if self._device is not None and self._device.startswith("cuda"):
            device = self._device

            def select(points: np.ndarray, k: int, start: int) -> np.ndarray:
                return greedy_coreset_torch(torch.from_numpy(points).to(device), k, start)
        else:
            select = greedy_coreset
        return ChunkedCoreset(
            total_rows=n,
            k=coreset_size(n, ratio),
            chunk_rows=chunk,
            projection=RandomProjection(dim, self.projection_dim, self.seed),
            rng=np.random.default_rng(self.seed),
            select=select,
            budget_mb=self.max_embedding_mb,
        )

    def _normal_scale(self, view: int, kept: dict) -> tuple[float, float]:
        """(median, SCALE_QUANTILE quantile) of a view's map values over the kept training images,
        each scored against the bank without the rows it gave (leave one image out)."""
        values = []
        for image, (rows, grid, frame) in sorted(kept.items()):
            dist, _ = self._leave_out_distances(rows, [image], view)
            values.append(self._view_map(view, dist.reshape(grid), frame, frame).ravel())
        pixels = np.concatenate(values)
        median, top = float(np.median(pixels)), float(np.quantile(pixels, SCALE_QUANTILE))
        return median, max(top, median + 1e-6 * max(abs(median), 1.0))

    def _build_search(self) -> None:
        queries = None if self.grid_ is None else self.grid_[0] * self.grid_[1]
        self._index = build_index(self.memory_bank_, self.index, nprobe=self.nprobe, queries=queries)
        self._bank_tensor = None
        self._bank_norms = {}
        if self.context_bank_ is not None:
            self._build_context_search()

    def _build_context_search(self) -> None:
        queries = None if self.context_grid_ is None else self.context_grid_[0] * self.context_grid_[1]
        self._context_index = build_index(self.context_bank_, self.index, nprobe=self.nprobe, queries=queries)
        self._bank_norms.pop(1, None)

    def _view_bank(self, view: int):
        """(memory bank, search index) of view 0 (detail) or 1 (context)."""
        return (self.memory_bank_, self._index) if view == 0 else (self.context_bank_, self._context_index)

    def _view_owners(self, view: int) -> np.ndarray:
        """Per bank row of a view, the training image it came from (known after fit, not saved)."""
        owners = self.bank_image_ if view == 0 else self.context_bank_image_
        if owners is None:
            raise ValueError(f"{self.component}: which training image each bank row came from is known only "
                             "in the process that fitted the detector")
        return owners

    def _view_map(self, view: int, grid: np.ndarray, frame: tuple[int, int], shape: tuple[int, ...]) -> np.ndarray:
        """A view's patch-distance grid -> its map at ``shape`` (the context view is blurred at its own scale)."""
        sigma = self.sigma if view == 0 else self.sigma * self.context_
        out_h, out_w = int(shape[0]), int(shape[1])
        rows_m = map_matrix(grid.shape[0], frame[0], out_h, sigma)
        cols_m = map_matrix(grid.shape[1], frame[1], out_w, sigma)
        return (rows_m @ torch.from_numpy(np.ascontiguousarray(grid, dtype=np.float32)) @ cols_m.T).numpy()

    def set_params(self, **params: Any) -> PatchCore:
        """As :meth:`pyimgano.Detector.set_params`; a new ``index``/``nprobe`` rebuilds the search index."""
        super().set_params(**params)
        if {"index", "nprobe"} & params.keys() and self.memory_bank_ is not None:
            self._build_search()
        return self

    # -- score ----------------------------------------------------------------------
    def _nearest(self, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """k nearest memory-bank patches: faiss on CPU, an exact matmul on a GPU."""
        if self.index == "flat" and self._device is not None and self._device.startswith("cuda"):
            if self._bank_tensor is None:
                self._bank_tensor = torch.from_numpy(self.memory_bank_).to(self._device)
            bank = self._bank_tensor
            bank_norms = (bank * bank).sum(1)[None]
            dists, indices = [], []
            for start in range(0, len(rows), 4096):  # bounds the query x bank matrix
                q = torch.from_numpy(rows[start:start + 4096]).to(self._device)
                d2 = (q * q).sum(1, keepdim=True) - 2.0 * q @ bank.T + bank_norms
                d2, idx = torch.topk(d2, k, dim=1, largest=False)
                dists.append(d2.clamp_min_(0).sqrt_().cpu().numpy())
                indices.append(idx.cpu().numpy())
            return np.concatenate(dists), np.concatenate(indices)
        return search(self._index, rows, k)

    def _patch_distances(self, rows: np.ndarray, b: int, view: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(b x P distances to the nearest bank patch, b x P bank indices) of b inputs' P patches each.

        With an approximate index each input's largest distance is then made exact
        (:meth:`_exact_top`), so image scores equal exact search.
        """
        if view == 0:
            dist, nn_idx = self._nearest(rows, 1)
            index = self._index
        else:
            index = self._context_index
            dist, nn_idx = search(index, rows, 1)
        dist, nn_idx = dist[:, 0].reshape(b, -1), nn_idx[:, 0].reshape(b, -1)
        if not is_exact(index):
            self._exact_top(rows, dist, nn_idx, view)
        return dist, nn_idx

    def _exact_top(self, rows: np.ndarray, dist: np.ndarray, nn_idx: np.ndarray, view: int = 0, step: int = 16,
                   owners: list[int] | None = None) -> None:
        """Search each input's top patches exactly, in place, until its largest distance is exact
        (``owners``: out-of-fold, each input's own image's bank rows left out).

        An approximate index returns the distance to *some* bank patch, an upper bound on the
        nearest one. Patches are re-searched exactly in decreasing order of their bound; once
        the next bound is no larger than the largest exact distance found, no other patch
        can exceed it: the image score is exactly the flat index's (in steps of ``step`` patches).
        """
        bank = self._view_bank(view)[0]
        if view not in self._bank_norms:
            self._bank_norms[view] = np.einsum("ij,ij->i", bank, bank)
        norms = self._bank_norms[view]
        b, n_patch = dist.shape
        order = np.argsort(-dist, axis=1, kind="stable")
        done = np.zeros(b, dtype=bool)
        best = np.full(b, -np.inf)
        for start in range(0, n_patch, step):
            active = np.flatnonzero(~done)
            if not len(active):
                break
            cols = order[active, start : start + step]
            flat = (active[:, None] * n_patch + cols).ravel()
            q = rows[flat]
            d2 = np.einsum("ij,ij->i", q, q)[:, None] - 2.0 * (q @ bank.T) + norms[None]
            if owners is not None:
                query_owner = np.repeat(np.asarray(owners)[active], cols.shape[1])
                d2[self._view_owners(view)[None, :] == query_owner[:, None]] = np.inf
            idx = d2.argmin(1)
            exact = np.sqrt(np.maximum(d2[np.arange(len(idx)), idx], 0.0))
            dist.flat[flat], nn_idx.flat[flat] = exact, idx
            best[active] = np.maximum(best[active], exact.reshape(len(active), -1).max(1))
            nxt = start + step
            bound = dist[active, order[active, nxt]] if nxt < n_patch else np.full(len(active), -np.inf)
            done[active] = bound <= best[active]

    def _reweighted(self, rows: np.ndarray, dist: np.ndarray, nn_idx: np.ndarray,
                    owners: list[int] | None = None) -> np.ndarray:
        """Paper eq. 7: s* scaled by 1 - softmax weight of m* among m*'s bank neighbours
        (``owners``: out-of-fold, the neighbours exclude each input's own image's rows)."""
        b, n_patch = dist.shape
        top = dist.argmax(1)
        s_star = dist[np.arange(b), top]
        feats = rows.reshape(b, n_patch, -1)[np.arange(b), top]
        m_star = nn_idx[np.arange(b), top]
        k = min(self.reweight_neighbors, len(self.memory_bank_))
        if owners is None:
            _, support = search(self._index, self.memory_bank_[m_star], k)
        else:
            centre = self.memory_bank_[m_star]
            d2 = ((self.memory_bank_[None] - centre[:, None]) ** 2).sum(-1)
            d2[self.bank_image_[None] == np.asarray(owners)[:, None]] = np.inf
            support = np.argsort(d2, axis=1, kind="stable")[:, :k]
        diffs = self.memory_bank_[support] - feats[:, None, :]
        d = np.sqrt(np.einsum("bkd,bkd->bk", diffs, diffs))
        d = d - d.max(1, keepdims=True)
        soft = np.exp(d) / np.exp(d).sum(1, keepdims=True)
        return (1.0 - soft[:, 0]) * s_star

    def _leave_out_distances(self, rows: np.ndarray, owners: list[int], view: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(b x P distances, b x P bank indices) of b inputs' patches to their nearest bank row
        of a view not taken from the input's own training image (``owners``).

        With the exact flat index, an exact product against the bank without those rows. With an
        approximate one, one search of the batch's patches for their ``LEAVE_OUT_NEIGHBOURS``
        nearest rows, each patch keeping the nearest that is not its own image's (the same row an
        excluding search finds: both probe the same lists); the rare patch whose every one is its
        own is searched again with its image's rows excluded. Then each input's largest distance
        is made exact as :meth:`_patch_distances` does, so image scores are exact either way.
        A bank whose every row is the image's own (one training image) is searched whole.
        """
        bank_all, index = self._view_bank(view)
        origin = self._view_owners(view)
        b = len(owners)
        per = len(rows) // b
        dist = np.empty((b, per), dtype=np.float32)
        nn_idx = np.empty((b, per), dtype=np.int64)
        exact = is_exact(index)
        if not exact:
            d, i = search(index, rows, min(LEAVE_OUT_NEIGHBOURS, len(bank_all)))
            other = (i >= 0) & (origin[np.maximum(i, 0)] != np.repeat(owners, per)[:, None])
            first = other.argmax(1)
            dist.flat[:], nn_idx.flat[:] = d[np.arange(len(d)), first], i[np.arange(len(i)), first]
            found = other.any(1).reshape(b, per)
        for j, owner in enumerate(owners):
            part = rows[j * per : (j + 1) * per]
            kept = np.flatnonzero(origin != owner)  # the bank without the image's rows
            if not len(kept):
                kept = np.arange(len(bank_all))
            elif not exact:
                missing = np.flatnonzero(~found[j])
                if len(missing):
                    d, i = search_excluding(index, part[missing], np.flatnonzero(origin == owner))
                    dist[j, missing], nn_idx[j, missing] = d[:, 0], i[:, 0]
                continue
            bank = torch.from_numpy(bank_all[kept])
            bank_sq = (bank * bank).sum(1)[None]
            for start in range(0, per, 2048):  # bounds the patches x bank matrix
                q = torch.from_numpy(np.ascontiguousarray(part[start : start + 2048]))
                d2 = torch.addmm(bank_sq, q, bank.T, alpha=-2.0).add_((q * q).sum(1, keepdim=True))
                best, idx = d2.min(1)
                dist[j, start : start + len(q)] = best.clamp_min_(0).sqrt_().numpy()
                nn_idx[j, start : start + len(q)] = kept[idx.numpy()]
        if not exact and (origin != owners[0]).any():
            self._exact_top(rows, dist, nn_idx, view, owners=owners)
        return dist, nn_idx

    def _fit_out_of_fold(self, images: list[np.ndarray]):
        """Fit, then score each training image against the bank(s) without its own rows, from
        the patch features fit computed (see the module docstring)."""
        from pyimgano.errors import InvalidParams

        if len(images) < 2:
            raise InvalidParams(f"{self.component}: out-of-fold scores need at least 2 training images")
        stores = [EmbeddingStore(self.max_embedding_mb) for _ in range(2)]
        try:
            batches = self._fit(images, keep=stores)
            starts = [0, 0]

            def distances():
                for batch, grids in batches:
                    owners = [unit.image for unit in batch]
                    views = []
                    for v, (h, w) in enumerate(grids):
                        rows = stores[v].gather(np.arange(starts[v], starts[v] + len(batch) * h * w))
                        starts[v] += len(rows)
                        views.append((rows, (h, w), *self._leave_out_distances(rows, owners, v)))
                    yield batch, owners, views

            return self._assemble(images, [u for batch, _ in batches for u in batch], distances())
        finally:
            for store in stores:
                store.close()

    def _score(self, images: list[np.ndarray]):
        self._prepare()
        if self._index is None:
            self._build_search()
        units = self.plan(images)

        def distances():
            with torch.inference_mode():
                for batch, outputs in self._features(images, "patchcore score", units):
                    views = []
                    for v, feats in enumerate(self._views(outputs)):
                        emb = self._embed(feats)
                        rows = self._rows(emb)
                        views.append((rows, tuple(emb.shape[-2:]), *self._patch_distances(rows, len(batch), v)))
                    yield batch, None, views

        return self._assemble(images, units, distances())

    def _assemble(self, images: list[np.ndarray], units: list[Unit], distances):
        """Scores and maps from ``(units, owners, views)`` per batch, each view ``(rows, (h, w),
        distances, bank indices)`` (``owners``: out-of-fold, the image each input's patches may
        not match)."""
        per_image: dict[int, list[tuple[Unit, np.ndarray]]] = {}
        remaining = {}
        for unit in units:
            remaining[unit.image] = remaining.get(unit.image, 0) + 1
        scores = np.empty(len(images), dtype=np.float64)
        # images of one size: maps written straight into the N x H x W result (a training set's
        # megapixel maps are gigabytes; a list stacked at the end holds them twice)
        sizes = {tuple(image.shape[:2]) for image in images}
        maps: Any = empty_maps(len(images), *sizes.pop()) if len(sizes) == 1 else [None] * len(images)
        for batch, owners, views in distances:
            rows, (h, w), dist, nn_idx = views[0]
            if self.reweight:
                batch_scores = self._reweighted(rows, dist, nn_idx, owners)
            for j, unit in enumerate(batch):
                grid = dist[j].reshape(h, w)
                if not unit.tiled:
                    score = batch_scores[j] if self.reweight else grid.max()
                    shape = images[unit.image].shape
                    if self.context_:
                        _, grid_shape_c, dist_c, _ = views[1]
                        grid_c = dist_c[j].reshape(grid_shape_c)
                        score, amap = self._combine(score, grid, grid_c.max(), grid_c, unit.frame, shape)
                    else:
                        amap = self._map(grid, unit.frame, shape)
                    scores[unit.image], maps[unit.image] = score, amap
                    continue
                per_image.setdefault(unit.image, []).append((unit, grid))
                remaining[unit.image] -= 1
                if remaining[unit.image] == 0:
                    grid = self._stitch(per_image.pop(unit.image))
                    scores[unit.image] = grid.max()
                    maps[unit.image] = self._map(grid, unit.frame, images[unit.image].shape)
        return scores, maps

    def _combine(self, score: float, grid: np.ndarray, score_c: float, grid_c: np.ndarray, frame: tuple[int, int],
                 shape: tuple[int, ...]) -> tuple[float, np.ndarray]:
        """Detail and context views -> one score and map: each scaled by its normal (median,
        quantile), the larger of the detail view's and the context view's term
        (:func:`context_term`). The maps are combined at the network input size, then resized to
        the image (as the exported graph does)."""
        (m0, q0), (m1, q1) = self.view_scales_
        weight, margin = self.context_weight, self.context_margin
        fused = np.maximum((self._view_map(0, grid, frame, frame) - m0) / (q0 - m0),
                           context_term((self._view_map(1, grid_c, frame, frame) - m1) / (q1 - m1), weight, margin))
        out = (int(shape[0]), int(shape[1]))
        fused = torch.from_numpy(np.ascontiguousarray(fused, dtype=np.float32))
        if out[0] >= frame[0] and out[1] >= frame[1] and out != tuple(frame):
            # enlarging: the shared bilinear resize is torch's (a few taps per pixel, not two dense products)
            fused = F.interpolate(fused[None, None], size=out, mode="bilinear", align_corners=False)[0, 0]
        elif out != tuple(frame):
            rows_m = torch.from_numpy(resize_matrix(frame[0], out[0]).astype(np.float32))
            cols_m = torch.from_numpy(resize_matrix(frame[1], out[1]).astype(np.float32))
            fused = rows_m @ fused @ cols_m.T
        fused = fused.numpy()  # float32 already: no copy of a full-size map
        return max((score - m0) / (q0 - m0), float(context_term((score_c - m1) / (q1 - m1), weight, margin))), fused

    def _stitch(self, tiles: list[tuple[Unit, np.ndarray]]) -> np.ndarray:
        """Tile patch grids -> the frame's patch grid, overlaps averaged (offsets are whole patches)."""
        first = self._prepare().reductions[0]
        frame = tiles[0][0].frame
        shape = self.grid_shape(frame)
        boxes = [(u.box[0] // first, u.box[1] // first, g.shape[0], g.shape[1]) for u, g in tiles]
        return stitch_tiles([g for _, g in tiles], boxes, shape)

    def _map(self, grid: np.ndarray, frame: tuple[int, int], shape: tuple[int, ...]) -> np.ndarray:
        """Patch-distance grid -> the anomaly map at the image's own size (resize, blur, resize)."""
        return self._view_map(0, grid, frame, shape)

    def export_reference(self) -> PatchCore:
        """This detector, or with an approximate index a copy searching exactly (the exported
        graph searches its banks exactly; the index is the only difference)."""
        approximate = not is_exact(self._index) or (
            self._context_index is not None and not is_exact(self._context_index))
        if not approximate:
            return self
        reference = copy.copy(self)
        reference.set_params(index="flat")
        return reference

    # -- persistence ------------------------------------------------------------------
    def state_sizes(self) -> dict[str, int]:
        """The memory bank's width: the chosen stages' channels, pooled to ``target_dim`` when smaller."""
        width = sum(feature_channels(self.backbone, None if self.layers is None else tuple(self.layers)))
        if self.target_dim and self.target_dim < width:
            width = self.target_dim
        return {**super().state_sizes(), "feature_dim": width}

    def _get_state(self) -> dict[str, np.ndarray]:
        state = {
            "memory_bank": self.memory_bank_,
            "grid": np.asarray(self.grid_, dtype=np.int64),
            "n_patches": np.asarray(self.n_patches_, dtype=np.int64),
            "coreset_ratio": np.asarray(self.coreset_ratio_, dtype=np.float64),
            **self._geometry_state(),
        }
        if not is_exact(self._index):  # a flat index is rebuilt from the bank on load
            state["faiss_index"] = serialize_index(self._index)
        if self.context_:
            state.update(
                context=np.asarray(self.context_, dtype=np.int64),
                context_bank=self.context_bank_,
                context_grid=np.asarray(self.context_grid_, dtype=np.int64),
                view_scales=np.asarray(self.view_scales_, dtype=np.float64),
            )
            if not is_exact(self._context_index):
                state["context_index"] = serialize_index(self._context_index)
        return state

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        bank = np.ascontiguousarray(state["memory_bank"], dtype=np.float32)
        if bank.ndim != 2 or len(bank) == 0:
            raise ValueError(f"memory_bank must be a non-empty 2-D array, got shape {bank.shape}")
        self.memory_bank_ = bank
        self.grid_ = tuple(int(v) for v in state["grid"])
        self.n_patches_ = int(state["n_patches"])
        saved = state.get("coreset_ratio")  # absent in models saved before coreset_ratio="auto"
        self.coreset_ratio_ = float(saved) if saved is not None else (
            None if self.coreset_ratio == "auto" else float(self.coreset_ratio))
        self._set_geometry_state(state)
        self._set_context_state(state, bank.shape[1])
        if "faiss_index" in state:
            self._index = deserialize_index(state["faiss_index"])
            if self._index.d != bank.shape[1]:
                raise ValueError(f"saved faiss index has dimension {self._index.d}, memory bank {bank.shape[1]}")
        else:
            self._build_search()

    def _set_context_state(self, state: dict[str, np.ndarray], width: int) -> None:
        """The context view of a saved model (none in models saved without one)."""
        if "context" not in state:
            self.context_ = self.context_bank_ = self.context_grid_ = self.view_scales_ = None
            self._context_index = None
            return
        missing = [key for key in ("context_bank", "context_grid", "view_scales") if key not in state]
        if missing:
            raise ValueError(f"a model with a context view needs {', '.join(missing)} too")
        factor = int(state["context"])
        if not 2 <= factor <= 8:
            raise ValueError(f"context must be 2 to 8, got {factor}")
        bank = np.ascontiguousarray(state["context_bank"], dtype=np.float32)
        if bank.ndim != 2 or len(bank) == 0 or bank.shape[1] != width:
            raise ValueError(f"context_bank must be a non-empty N x {width} array, got shape {bank.shape}")
        scales = np.asarray(state["view_scales"], dtype=np.float64)
        if not np.isfinite(scales).all() or not (scales[:, 1] > scales[:, 0]).all():
            raise ValueError("view_scales must be finite (median, quantile) pairs with the quantile above the median")
        self.context_, self.context_bank_, self.view_scales_ = factor, bank, scales
        self.context_grid_ = tuple(int(v) for v in state["context_grid"])
        if "context_index" in state:
            self._context_index = deserialize_index(state["context_index"])
            if self._context_index.d != width:
                raise ValueError(f"saved context index has dimension {self._context_index.d}, bank {width}")
            self._bank_norms.pop(1, None)
        else:
            self._build_context_search()
