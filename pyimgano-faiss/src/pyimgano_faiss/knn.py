"""Global-embedding kNN: a fast image-level baseline.

Each image becomes one vector (the chosen backbone stages, average-pooled over space and
concatenated; with tiles, the mean of its tiles' vectors); its anomaly score is the mean Euclidean distance to its ``n_neighbors``
nearest training embeddings (exact faiss search). No anomaly maps.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pyimgano import StateArray
from pyimgano_faiss.backbones import feature_channels
from pyimgano_faiss.base import GEOMETRY_STATE, BackboneDetector
from pyimgano_faiss.plugin import KNNParams
from pyimgano_faiss.search import build_index, search


class GlobalKNN(BackboneDetector):
    """Image-level kNN; parameters: :class:`pyimgano_faiss.plugin.KNNParams`."""

    params_model = KNNParams
    state_arrays = {"embeddings": StateArray("float", ("n_train", "feature_dim")), **GEOMETRY_STATE}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.embeddings_: np.ndarray | None = None
        self._index = None

    def _embed_all(self, images: list[np.ndarray], desc: str) -> np.ndarray:
        sums: np.ndarray | None = None
        counts = np.zeros(len(images))
        with torch.inference_mode():
            for batch, feats in self._features(images, desc=desc):
                pooled = torch.cat([f.float().mean(dim=(2, 3)) for f in feats], 1).cpu().numpy()
                if sums is None:
                    sums = np.zeros((len(images), pooled.shape[1]))
                for j, unit in enumerate(batch):
                    sums[unit.image] += pooled[j]
                    counts[unit.image] += 1
        return np.ascontiguousarray(sums / counts[:, None], dtype=np.float32)

    def _fit(self, images: list[np.ndarray]) -> None:
        self._resolve_fit_geometry(images)
        self.embeddings_ = self._embed_all(images, "knn fit")
        self._index = build_index(self.embeddings_, "flat")

    def _score(self, images: list[np.ndarray]):
        queries = self._embed_all(images, "knn score")
        if self._index is None:
            self._index = build_index(self.embeddings_, "flat")
        k = min(self.n_neighbors, len(self.embeddings_))
        dist, _ = search(self._index, queries, k)
        return dist.mean(1).astype(np.float64), None

    def state_sizes(self) -> dict[str, int]:
        """The embeddings' width: the chosen stages' channels, concatenated."""
        width = sum(feature_channels(self.backbone, None if self.layers is None else tuple(self.layers)))
        return {**super().state_sizes(), "feature_dim": width}

    def _get_state(self) -> dict[str, np.ndarray]:
        return {"embeddings": self.embeddings_, **self._geometry_state()}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        emb = np.ascontiguousarray(state["embeddings"], dtype=np.float32)
        if emb.ndim != 2 or len(emb) == 0:
            raise ValueError(f"embeddings must be a non-empty 2-D array, got shape {emb.shape}")
        self.embeddings_ = emb
        self._set_geometry_state(state)
        self._index = build_index(emb, "flat")
