"""Greedy k-center coreset selection, exact and fast.

The greedy rule (Sener & Savarese 2018, used by PatchCore): start from one point, then
repeatedly add the point farthest from everything chosen so far. The plain loop
(:func:`greedy_coreset_plain`, what anomalib does) costs a full pass over all N points per
chosen point. :func:`greedy_coreset` picks the same points with far less work by lazy
evaluation: a point's distance to the chosen set only ever shrinks, so a stale value is an
upper bound. Points sit in a max-heap keyed by their stale values; to choose the next
centre, the top point is brought up to date (distances to the centres added since its last
refresh only) and chosen when it still beats the next stale bound, else pushed back. Most
points are never refreshed again after the first pass, so the cost is one pass over N plus
work near the top of the heap (linear in N for a fixed coreset size).

Triangle-inequality pruning with k-means clusters (skip a cluster when ``|c - mu| - R``
cannot lower any of its minima) was tried first: on real CNN patch features cluster radii
are about as large as the distances between centroids, so over 90% of clusters still
needed updating at every step and it ran slower than the plain loop.

Selection runs on randomly projected features (:class:`RandomProjection`), computed chunk
by chunk, so the N x D embedding matrix is never needed at once.
"""

from __future__ import annotations

import heapq

import numpy as np


class RandomProjection:
    """Dense Gaussian projection D -> ``dim`` (Johnson-Lindenstrauss), seeded."""

    def __init__(self, in_dim: int, dim: int, seed: int) -> None:
        self.in_dim = int(in_dim)
        self.dim = int(min(dim, in_dim))
        if self.dim == self.in_dim:
            self.matrix = None
        else:
            rng = np.random.default_rng(seed)
            self.matrix = (rng.standard_normal((in_dim, self.dim)) / np.sqrt(self.dim)).astype(np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        return np.ascontiguousarray(x if self.matrix is None else x @ self.matrix)


def coreset_size(n: int, ratio: float) -> int:
    return n if ratio >= 1.0 else max(1, min(n, int(n * ratio)))


def greedy_coreset_plain(points: np.ndarray, k: int, start: int = 0) -> np.ndarray:
    """Reference greedy k-center: one pass over all points per selection (slow, simple)."""
    x = np.asarray(points, dtype=np.float32)
    norms = np.einsum("ij,ij->i", x, x)
    min_d2 = np.full(len(x), np.inf, dtype=np.float32)
    chosen = np.empty(k, dtype=np.int64)
    s = int(start)
    for step in range(k):
        chosen[step] = s
        c = x[s]
        d2 = norms - 2.0 * (x @ c) + norms[s]
        np.minimum(min_d2, d2, out=min_d2)
        min_d2[s] = 0.0
        s = int(np.argmax(min_d2))
    return chosen


def greedy_coreset_torch(points, k: int, start: int = 0):
    """The plain greedy loop in torch, for GPUs (where a full pass per step is cheap)."""
    import torch

    x = points
    norms = (x * x).sum(1)
    min_d2 = torch.full((x.shape[0],), float("inf"), device=x.device, dtype=x.dtype)
    chosen = torch.empty(k, dtype=torch.long, device=x.device)
    s = torch.tensor(int(start), device=x.device)
    for step in range(k):
        chosen[step] = s
        c = x[s]
        d2 = norms - 2.0 * (x @ c) + norms[s]
        torch.minimum(min_d2, d2, out=min_d2)
        min_d2[s] = 0.0
        s = torch.argmax(min_d2)
    return chosen.cpu().numpy()


def greedy_coreset(points: np.ndarray, k: int, start: int = 0) -> np.ndarray:
    """Indices of ``k`` points chosen by exact greedy k-center (the first is ``start``).

    Selects the same points as :func:`greedy_coreset_plain` (up to the choice among tied
    distances) by lazy evaluation over a max-heap of stale (upper-bound) distances.
    """
    x = np.ascontiguousarray(points, dtype=np.float32)
    n = len(x)
    k = int(min(k, n))
    if k >= n:
        return np.arange(n, dtype=np.int64)
    norms = np.einsum("ij,ij->i", x, x)
    centers = np.empty((k, x.shape[1]), dtype=np.float32)
    center_norms = np.empty(k, dtype=np.float32)
    chosen = np.empty(k, dtype=np.int64)
    s = int(start)
    chosen[0], centers[0], center_norms[0] = s, x[s], norms[s]
    bound = norms - 2.0 * (x @ x[s]) + norms[s]
    bound[s] = -np.inf
    heap = list(zip((-bound).tolist(), range(n)))
    heap.pop(s)
    heapq.heapify(heap)
    refreshed = np.ones(n, dtype=np.int64)  # centres [0, refreshed[i]) are in bound[i]
    pop, push = heapq.heappop, heapq.heappush
    for step in range(1, k):
        while True:
            _, i = pop(heap)
            lo = refreshed[i]
            if lo == step:
                break
            d2 = norms[i] - 2.0 * (centers[lo:step] @ x[i]) + center_norms[lo:step]
            value = min(float(bound[i]), float(d2.min()))
            bound[i] = value
            refreshed[i] = step
            if not heap or value >= -heap[0][0]:
                break
            push(heap, (-value, i))
        chosen[step], centers[step], center_norms[step] = i, x[i], norms[i]
    return chosen
