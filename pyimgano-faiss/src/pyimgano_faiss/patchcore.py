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
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pyimgano import StateArray
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
from pyimgano_faiss.plugin import PatchCoreParams
from pyimgano_faiss.search import (
    build_index,
    deserialize_index,
    is_exact,
    search,
    search_excluding,
    serialize_index,
)


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


class PatchCore(BackboneDetector):
    """Native PatchCore; parameters: :class:`pyimgano_faiss.plugin.PatchCoreParams`.

    See the module docstring and ``docs/patchcore.md``.
    """

    params_model = PatchCoreParams
    supports_out_of_fold = True
    state_arrays = {
        "memory_bank": StateArray("float", ("bank_rows", "feature_dim")),
        "grid": StateArray("int", (2,)),
        "n_patches": StateArray("int", ()),
        "coreset_ratio": StateArray("float", (), required=False),  # the ratio fit used (coreset_ratio="auto")
        "faiss_index": StateArray("uint8", ("index_bytes",), required=False),  # IVF/HNSW, faiss's own format
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
        self._bank_norms: np.ndarray | None = None
        self.bank_image_: np.ndarray | None = None  # per bank row, the training image it came from (not saved)

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

    # -- fit ------------------------------------------------------------------------
    def _fit(self, images: list[np.ndarray], keep: EmbeddingStore | None = None) -> list[tuple[list[Unit], tuple]]:
        """Fit the bank; with ``keep``, every patch row also goes there, and the return value
        says which rows each batch of units gave: ``[(units, (h, w)), ...]`` in stream order."""
        self._resolve_fit_geometry(images)
        units = self.plan(images)
        n = sum(h * w for h, w in (self.grid_shape(unit.shape) for unit in units))
        ratio = self.coreset_ratio
        self.coreset_ratio_ = auto_coreset_ratio(n / len(units)) if ratio == "auto" else float(ratio)
        grids: list[tuple[int, int]] = []
        origins: list[np.ndarray] = []  # per streamed row, its image
        batches: list[tuple[list[Unit], tuple]] = []

        def row_batches():
            with torch.inference_mode():
                for batch, feats in self._features(images, "patchcore fit", units):
                    emb = self._embed(feats)
                    grids.append(tuple(emb.shape[-2:]))
                    batches.append((batch, tuple(emb.shape[-2:])))
                    origins.append(np.repeat([unit.image for unit in batch], emb.shape[-2] * emb.shape[-1]))
                    rows = self._rows(emb)
                    if keep is not None:
                        keep.append(rows)
                    yield rows

        self.memory_bank_, self.coreset_chunks_, chosen = self._select_bank(row_batches(), n)
        self.bank_image_ = np.concatenate(origins)[chosen]
        self.grid_ = (int(grids[0][0]), int(grids[0][1]))
        self.n_patches_ = n
        self._build_search()
        return batches

    def _select_bank(self, row_batches, n: int) -> tuple[np.ndarray, int, np.ndarray]:
        """(memory bank, chunks used, the bank rows' stream positions) from a stream of N x D
        patch-feature batches, ``n`` rows in all."""
        rng = np.random.default_rng(self.seed)
        coreset: ChunkedCoreset | None = None
        if self._device is not None and self._device.startswith("cuda"):
            device = self._device

            def select(points: np.ndarray, k: int, start: int) -> np.ndarray:
                return greedy_coreset_torch(torch.from_numpy(points).to(device), k, start)
        else:
            select = greedy_coreset
        try:
            for rows in row_batches:
                if coreset is None:
                    coreset = ChunkedCoreset(
                        total_rows=n,
                        k=coreset_size(n, self.coreset_ratio_),
                        chunk_rows=self.coreset_chunk,
                        projection=RandomProjection(rows.shape[1], self.projection_dim, self.seed),
                        rng=rng,
                        select=select,
                        budget_mb=self.max_embedding_mb,
                    )
                coreset.add(rows)
            return coreset.finish(), coreset.n_chunks, coreset.chosen_rows
        finally:
            if coreset is not None:
                coreset.close()

    def _build_search(self) -> None:
        queries = None if self.grid_ is None else self.grid_[0] * self.grid_[1]
        self._index = build_index(self.memory_bank_, self.index, nprobe=self.nprobe, queries=queries)
        self._bank_tensor = None
        self._bank_norms = None

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

    def _patch_distances(self, rows: np.ndarray, b: int) -> tuple[np.ndarray, np.ndarray]:
        """(b x P distances to the nearest bank patch, b x P bank indices) of b inputs' P patches each.

        With an approximate index each input's largest distance is then made exact
        (:meth:`_exact_top`), so image scores equal exact search.
        """
        dist, nn_idx = self._nearest(rows, 1)
        dist, nn_idx = dist[:, 0].reshape(b, -1), nn_idx[:, 0].reshape(b, -1)
        if not is_exact(self._index):
            self._exact_top(rows, dist, nn_idx)
        return dist, nn_idx

    def _exact_top(self, rows: np.ndarray, dist: np.ndarray, nn_idx: np.ndarray, step: int = 16,
                   owners: list[int] | None = None) -> None:
        """Search each input's top patches exactly, in place, until its largest distance is exact
        (``owners``: out-of-fold, each input's own image's bank rows left out).

        An approximate index returns the distance to *some* bank patch, an upper bound on the
        nearest one. Patches are re-searched exactly in decreasing order of their bound; once
        the next bound is no larger than the largest exact distance found, no other patch
        can exceed it: the image score is exactly the flat index's (in steps of ``step`` patches).
        """
        if self._bank_norms is None:
            self._bank_norms = np.einsum("ij,ij->i", self.memory_bank_, self.memory_bank_)
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
            d2 = np.einsum("ij,ij->i", q, q)[:, None] - 2.0 * (q @ self.memory_bank_.T) + self._bank_norms[None]
            if owners is not None:
                query_owner = np.repeat(np.asarray(owners)[active], cols.shape[1])
                d2[self.bank_image_[None, :] == query_owner[:, None]] = np.inf
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

    def _leave_out_distances(self, rows: np.ndarray, owners: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """(b x P distances, b x P bank indices) of b inputs' patches to their nearest bank row
        not taken from the input's own training image (``owners``).

        With the exact flat index, an exact product against the bank without those rows; with an
        approximate one, the index searched with those rows excluded, then each input's largest
        distance made exact as :meth:`_patch_distances` does, so image scores are exact either way.
        """
        b = len(owners)
        per = len(rows) // b
        dist = np.empty((b, per), dtype=np.float32)
        nn_idx = np.empty((b, per), dtype=np.int64)
        exact = is_exact(self._index)
        for j, owner in enumerate(owners):
            part = rows[j * per : (j + 1) * per]
            if not exact:
                d, i = search_excluding(self._index, part, np.flatnonzero(self.bank_image_ == owner))
                dist[j], nn_idx[j] = d[:, 0], i[:, 0]
                continue
            kept = np.flatnonzero(self.bank_image_ != owner)  # the bank without the image's rows
            bank = torch.from_numpy(self.memory_bank_[kept])
            bank_sq = (bank * bank).sum(1)[None]
            for start in range(0, per, 2048):  # bounds the patches x bank matrix
                q = torch.from_numpy(part[start : start + 2048])
                d2 = torch.addmm(bank_sq, q, bank.T, alpha=-2.0).add_((q * q).sum(1, keepdim=True))
                best, idx = d2.min(1)
                dist[j, start : start + len(q)] = best.clamp_min_(0).sqrt_().numpy()
                nn_idx[j, start : start + len(q)] = kept[idx.numpy()]
        if not exact:
            self._exact_top(rows, dist, nn_idx, owners=owners)
        return dist, nn_idx

    def _fit_out_of_fold(self, images: list[np.ndarray]):
        """Fit, then score each training image against the bank without its own rows, from
        the patch features fit computed (see the module docstring)."""
        from pyimgano.errors import InvalidParams

        if len(images) < 2:
            raise InvalidParams(f"{self.component}: out-of-fold scores need at least 2 training images")
        store = EmbeddingStore(self.max_embedding_mb)
        try:
            batches = self._fit(images, keep=store)

            def distances():
                start = 0
                for batch, (h, w) in batches:
                    rows = store.gather(np.arange(start, start + len(batch) * h * w))
                    start += len(rows)
                    owners = [unit.image for unit in batch]
                    yield batch, rows, (h, w), owners, *self._leave_out_distances(rows, owners)

            return self._assemble(images, [u for batch, _ in batches for u in batch], distances())
        finally:
            store.close()

    def _score(self, images: list[np.ndarray]):
        self._prepare()
        if self._index is None:
            self._build_search()
        units = self.plan(images)

        def distances():
            with torch.inference_mode():
                for batch, feats in self._features(images, "patchcore score", units):
                    emb = self._embed(feats)
                    rows = self._rows(emb)
                    yield batch, rows, tuple(emb.shape[-2:]), None, *self._patch_distances(rows, len(batch))

        return self._assemble(images, units, distances())

    def _assemble(self, images: list[np.ndarray], units: list[Unit], distances):
        """Scores and maps from ``(units, rows, (h, w), owners, distances, bank indices)`` per
        batch (``owners``: out-of-fold, the image each input's patches may not match)."""
        per_image: dict[int, list[tuple[Unit, np.ndarray]]] = {}
        remaining = {}
        for unit in units:
            remaining[unit.image] = remaining.get(unit.image, 0) + 1
        scores = np.empty(len(images), dtype=np.float64)
        maps: list[np.ndarray] = [None] * len(images)  # type: ignore[list-item]
        for batch, rows, (h, w), owners, dist, nn_idx in distances:
            if self.reweight:
                batch_scores = self._reweighted(rows, dist, nn_idx, owners)
            for j, unit in enumerate(batch):
                grid = dist[j].reshape(h, w)
                if not unit.tiled:
                    scores[unit.image] = batch_scores[j] if self.reweight else grid.max()
                    maps[unit.image] = self._map(grid, unit.frame, images[unit.image].shape)
                    continue
                per_image.setdefault(unit.image, []).append((unit, grid))
                remaining[unit.image] -= 1
                if remaining[unit.image] == 0:
                    grid = self._stitch(per_image.pop(unit.image))
                    scores[unit.image] = grid.max()
                    maps[unit.image] = self._map(grid, unit.frame, images[unit.image].shape)
        if all(m.shape == maps[0].shape for m in maps):
            return scores, np.stack(maps)
        return scores, maps

    def _stitch(self, tiles: list[tuple[Unit, np.ndarray]]) -> np.ndarray:
        """Tile patch grids -> the frame's patch grid, overlaps averaged (offsets are whole patches)."""
        first = self._prepare().reductions[0]
        frame = tiles[0][0].frame
        shape = self.grid_shape(frame)
        boxes = [(u.box[0] // first, u.box[1] // first, g.shape[0], g.shape[1]) for u, g in tiles]
        return stitch_tiles([g for _, g in tiles], boxes, shape)

    def _map(self, grid: np.ndarray, frame: tuple[int, int], shape: tuple[int, ...]) -> np.ndarray:
        """Patch-distance grid -> the anomaly map at the image's own size (resize, blur, resize)."""
        out_h, out_w = int(shape[0]), int(shape[1])
        rows_m = map_matrix(grid.shape[0], frame[0], out_h, self.sigma)
        cols_m = map_matrix(grid.shape[1], frame[1], out_w, self.sigma)
        return (rows_m @ torch.from_numpy(np.ascontiguousarray(grid, dtype=np.float32)) @ cols_m.T).numpy()

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
        if "faiss_index" in state:
            self._index = deserialize_index(state["faiss_index"])
            if self._index.d != bank.shape[1]:
                raise ValueError(f"saved faiss index has dimension {self._index.d}, memory bank {bank.shape[1]}")
        else:
            self._build_search()
