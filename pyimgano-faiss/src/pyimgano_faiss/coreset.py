"""Greedy k-center coreset selection, exact and fast.

The greedy rule (Sener & Savarese 2018, used by PatchCore): start from one point, then
repeatedly add the point farthest from everything chosen so far. The plain loop
(:func:`greedy_coreset_plain`, what anomalib does) costs a full pass over all N points per
chosen point. :func:`greedy_coreset` picks the same points with less work by lazy
evaluation: a point's distance to the chosen set only ever shrinks, so a stale value is an
upper bound. Points wait in the order of their stale values; a pool of the leading ones is
kept up to date (one product with each new centre), and a point enters the pool, brought up
to date by a matrix product over the centres added since its last refresh, only while its
stale bound beats the pool's best. Most points are refreshed a few times in large products
instead of N distances per pick (``docs/patchcore.md``; ``benchmarks/bench_coreset.py``).

Triangle-inequality pruning with k-means clusters (skip a cluster when ``|c - mu| - R``
cannot lower any of its minima) was tried first: on real CNN patch features cluster radii
are about as large as the distances between centroids, so over 90% of clusters still
needed updating at every step and it ran slower than the plain loop.

Selection runs on randomly projected features (:class:`RandomProjection`). For large
training sets :class:`ChunkedCoreset` streams the rows: every ``chunk_rows`` rows it picks
that chunk's share of the coreset and keeps only the chosen rows' full features, so memory
is bounded by one chunk plus the memory bank, whatever N is (a composable coreset: the
union of per-part greedy k-center sets covers the whole set within a constant factor of
the optimum, Indyk et al., PODS 2014). A training set that fits in one chunk gets the exact
greedy selection over all of it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pyimgano.contracts import empty_array
from pyimgano_faiss.embeddings import EmbeddingStore


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

    def __call__(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The projected rows (``out``: a C-contiguous N x dim float32 array to write them into)."""
        x = np.asarray(x, dtype=np.float32)
        if out is None:
            return np.ascontiguousarray(x if self.matrix is None else x @ self.matrix)
        if self.matrix is None:
            out[...] = x
        else:
            np.matmul(x, self.matrix, out=out)
        return out


# coreset_ratio="auto": the paper's 0.1 up to the 1,024 patches of a 256 x 256 input (stride 8);
# above, the bank keeps as many rows per training input as 0.1 keeps there (docs/patchcore.md)
AUTO_RATIO = 0.1
AUTO_RATIO_PATCHES = 1024


def auto_coreset_ratio(patches_per_input: float) -> float:
    """The coreset ratio ``coreset_ratio="auto"`` gives inputs of ``patches_per_input`` patches."""
    return AUTO_RATIO * min(1.0, AUTO_RATIO_PATCHES / max(1.0, float(patches_per_input)))


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


# picks made by full passes before the lazy loop starts (see greedy_coreset)
WARM_PICKS = 32
# points brought into greedy_coreset's pool at a time (one matrix product each)
POOL_BATCH = 1024


def greedy_coreset(points: np.ndarray, k: int, start: int = 0, warm: int = WARM_PICKS,
                   batch: int = POOL_BATCH) -> np.ndarray:
    """Indices of ``k`` points chosen by exact greedy k-center (the first is ``start``).

    Selects the same points as :func:`greedy_coreset_plain` (up to the order of picks whose
    distances tie to float32 rounding) by lazy evaluation. A point's distance to the chosen set
    only shrinks, so a stale value is an upper bound. The first ``warm`` picks are made by the
    plain loop's full passes (one vectorised product each), which leaves every bound exact.
    Then the points are ordered by their stale bounds, and a *pool* holds the leading ones with
    exact values: while the best stale bound outside the pool beats the pool's best value, the
    next ``batch`` points enter it, brought up to date by one matrix product with the centres
    added since their last refresh. The pool's best is then the exact farthest point; after the
    pick one product with the new centre updates the pool. A pool past ``4 x batch`` keeps its
    best ``2 x batch`` and returns the rest, with exact values, to the ordered outside. A
    product is ``[c, |c|^2] . [-2x, 1]`` with ``|x|^2`` added: ``|x - c|^2``.
    """
    x = np.ascontiguousarray(points, dtype=np.float32)
    n, dim = x.shape
    k = int(min(k, n))
    if k >= n:
        return np.arange(n, dtype=np.int64)
    norms = np.einsum("ij,ij->i", x, x)
    query = empty_array((n, dim + 1), np.float32)  # a chunk's worth: ordinary pages (pyimgano.contracts)
    np.multiply(x, -2.0, out=query[:, :dim])
    query[:, dim] = 1.0
    centers = np.empty((k, dim + 1), dtype=np.float32)
    chosen = np.empty(k, dtype=np.int64)
    bound = np.full(n, np.inf, dtype=np.float32)
    s = int(start)
    warm = max(1, min(int(warm), k))
    for step in range(warm):  # full passes: every bound exact after each
        chosen[step], centers[step, :dim], centers[step, dim] = s, x[s], norms[s]
        np.minimum(bound, norms + query @ centers[step], out=bound)
        bound[chosen[: step + 1]] = -np.inf
        s = int(np.argmax(bound))
    if warm == k:
        return chosen
    refreshed = np.full(n, warm, dtype=np.int64)  # centres [0, refreshed[i]) are in bound[i]
    outside = np.argsort(-bound, kind="stable")[: n - warm]  # by stale bound, descending; chosen last
    head = 0  # outside[head:] are not in the pool
    pool = np.empty(0, dtype=np.int64)
    value = np.empty(0, dtype=np.float32)  # the pool's exact distances to the chosen set
    pool_query = np.empty((0, dim + 1), dtype=np.float32)
    pool_norms = np.empty(0, dtype=np.float32)
    for step in range(warm, k):
        while head < len(outside) and (len(pool) == 0 or bound[outside[head]] > value.max()):
            enter = outside[head:head + batch]
            head += len(enter)
            lo = refreshed[enter]
            first = int(lo.min())
            rows = query[enter]
            fresh = bound[enter]
            if first < step:
                d2 = rows @ centers[first:step].T
                if (lo > first).any():  # centres a point has seen already do not count twice
                    d2[np.arange(first, step)[None, :] < lo[:, None]] = np.inf
                fresh = np.minimum(fresh, norms[enter] + d2.min(1))
            pool = np.concatenate([pool, enter])
            value = np.concatenate([value, fresh])
            pool_query = np.concatenate([pool_query, rows])
            pool_norms = np.concatenate([pool_norms, norms[enter]])
        best = int(np.argmax(value))
        i = int(pool[best])
        chosen[step], centers[step, :dim], centers[step, dim] = i, x[i], norms[i]
        value[best] = -np.inf
        np.minimum(value, pool_norms + pool_query @ centers[step], out=value)
        if len(pool) > 4 * batch:
            keep = np.argpartition(-value, 2 * batch)[: 2 * batch]
            back = np.ones(len(pool), dtype=bool)
            back[keep] = False
            back &= value > -np.inf  # chosen points leave for good
            returned = pool[back]
            bound[returned], refreshed[returned] = value[back], step + 1
            rest = np.concatenate([returned, outside[head:]])
            outside, head = rest[np.argsort(-bound[rest], kind="stable")], 0
            pool, value, pool_query, pool_norms = pool[keep], value[keep], pool_query[keep], pool_norms[keep]
    return chosen


Selector = Callable[[np.ndarray, int, int], np.ndarray]


class ChunkedCoreset:
    """Greedy k-center over a stream of N x D rows, one chunk at a time.

    ``add`` takes full-dimension rows in any batch sizes; every ``chunk_rows`` rows the
    chunk's projected features go through ``select`` (greedy k-center, starting from a
    seeded random point) for the chunk's share of the ``k`` picks (``k * rows / N``,
    rounded so the shares add up to ``k``), and only the chosen rows' full features are
    kept. Memory: one chunk (projected + full features, the latter spilled to a temporary
    file past ``budget_mb``) plus the memory bank. Selection work per chunk depends only on
    the chunk size and its share, so the total grows linearly with N. When N fits in one
    chunk this is the exact greedy selection over all rows.
    """

    def __init__(
        self,
        total_rows: int,
        k: int,
        chunk_rows: int,
        projection: RandomProjection,
        rng: np.random.Generator,
        select: Selector = greedy_coreset,
        budget_mb: float = 2048.0,
    ) -> None:
        if total_rows < 1 or not 1 <= k <= total_rows:
            raise ValueError(f"need 1 <= k <= total_rows, got k={k}, total_rows={total_rows}")
        self.total_rows = int(total_rows)
        self.k = int(k)
        self.chunk_rows = int(max(1, min(chunk_rows, total_rows)))
        self.projection = projection
        self.rng = rng
        self.select = select
        self.budget_mb = float(budget_mb)
        self.n_chunks = 0
        self._done = 0  # rows of finished chunks
        self._store = EmbeddingStore(self.budget_mb)
        # one chunk's projected rows, written in place and reused by every chunk: a fresh array
        # per chunk (tens of megabytes) cost more in page faults than the projection itself
        self._projected: np.ndarray | None = None
        self._buffered = 0
        self._bank: list[np.ndarray] = []
        self._chosen: list[np.ndarray] = []  # stream positions of the bank's rows

    def _quota(self, rows: int) -> int:
        """Picks due for the first ``rows`` rows."""
        return self.k * rows // self.total_rows

    def add(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.float32)
        if self._done + self._buffered + len(rows) > self.total_rows:
            raise ValueError(
                f"received more than the {self.total_rows} rows announced "
                f"({self._done + self._buffered + len(rows)}); every image must give the same patch grid"
            )
        while len(rows):
            part, rows = rows[: self.chunk_rows - self._buffered], rows[self.chunk_rows - self._buffered:]
            self._store.append(part)
            if self._projected is None:
                self._projected = empty_array((self.chunk_rows, self.projection.dim), np.float32)
            self.projection(part, out=self._projected[self._buffered : self._buffered + len(part)])
            self._buffered += len(part)
            if self._buffered == self.chunk_rows:
                self._select_chunk()

    def _select_chunk(self) -> None:
        n = self._buffered
        if n == 0:
            return
        picks = self._quota(self._done + n) - self._quota(self._done)
        if picks > 0:
            if picks >= n:
                chosen = np.arange(n)
            else:
                chosen = np.asarray(self.select(self._projected[:n], picks, int(self.rng.integers(n))))
            self._bank.append(self._store.gather(chosen))
            self._chosen.append(self._done + np.asarray(chosen, dtype=np.int64))
        self._store.close()
        self._store = EmbeddingStore(self.budget_mb)
        self._done += n
        self._buffered = 0
        self.n_chunks += 1

    def finish(self) -> np.ndarray:
        """The memory bank: the chosen rows' full features (k x D float32)."""
        try:
            self._select_chunk()
            if self._done != self.total_rows:
                raise ValueError(f"received {self._done} rows, {self.total_rows} were announced")
            return np.concatenate(self._bank) if len(self._bank) > 1 else self._bank[0]
        finally:
            self.close()

    @property
    def chosen_rows(self) -> np.ndarray:
        """The bank's rows as positions in the stream of added rows (after :meth:`finish`)."""
        return np.concatenate(self._chosen) if self._chosen else np.zeros(0, dtype=np.int64)

    def close(self) -> None:
        self._store.close()
        self._projected = None
