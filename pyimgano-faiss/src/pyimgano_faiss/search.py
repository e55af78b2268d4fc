"""faiss indexes over a memory bank: exact flat L2 by default, IVF or HNSW for huge banks."""

from __future__ import annotations

import math

import numpy as np

INDEX_KINDS = ("flat", "ivf", "hnsw", "auto")
# index="auto" without a query count: exact flat below this many memory-bank rows, IVF from
# there on. At 100k rows IVF searched 33x faster than flat with recall@1 0.97 and image AUROC
# within 0.001 (benchmarks/bench_patchcore_large.py, docs/scaling.md).
AUTO_IVF_ROWS = 50_000
# index="auto" knowing the queries per input (PatchCore: the patches of one network input):
# exact flat while one input costs at most this many distance evaluations (bank rows x
# patches; 3,276 x 1,024 for the synthetic set at 256 px), IVF above (docs/patchcore.md).
AUTO_FLAT_EVALUATIONS = 2**23


def auto_index_kind(bank_rows: int, queries: int | None = None) -> str:
    """What ``index="auto"`` builds for a bank of ``bank_rows`` searched ``queries`` rows at a time."""
    if queries is None:
        return "flat" if bank_rows < AUTO_IVF_ROWS else "ivf"
    return "flat" if bank_rows * queries <= AUTO_FLAT_EVALUATIONS else "ivf"


def build_index(
    bank: np.ndarray,
    kind: str = "flat",
    *,
    nprobe: int = 8,
    hnsw_m: int = 32,
    ef_search: int = 64,
    queries: int | None = None,
):
    """A faiss index holding ``bank`` (M x D float32). ``flat`` is exact; ``auto``: :func:`auto_index_kind`."""
    import faiss

    bank = np.ascontiguousarray(bank, dtype=np.float32)
    m, d = bank.shape
    if kind == "auto":
        kind = auto_index_kind(m, queries)
    if kind == "flat":
        index = faiss.IndexFlatL2(d)
    elif kind == "ivf":
        nlist = int(max(1, min(int(4 * math.sqrt(m)), m // 39 or 1)))
        quantizer = faiss.IndexFlatL2(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_L2)
        index.cp.seed = 1234
        index.train(bank)
        index.nprobe = int(min(nprobe, nlist))
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, int(hnsw_m))
        index.hnsw.efSearch = int(ef_search)
    else:
        raise ValueError(f"index {kind!r} is not one of {INDEX_KINDS}")
    index.add(bank)
    return index


def is_exact(index) -> bool:
    """Whether ``index`` returns the true nearest neighbours (a flat index)."""
    import faiss

    return isinstance(index, faiss.IndexFlat)


def serialize_index(index) -> np.ndarray:
    """The index as a uint8 array (faiss's own writer; stored in the npz state, no pickle)."""
    import faiss

    return np.asarray(faiss.serialize_index(index), dtype=np.uint8)


def deserialize_index(data: np.ndarray):
    import faiss

    return faiss.deserialize_index(np.ascontiguousarray(data, dtype=np.uint8))


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(Euclidean distances, bank indices), each N x k."""
    d2, idx = index.search(np.ascontiguousarray(queries, dtype=np.float32), int(k))
    return np.sqrt(np.maximum(d2, 0.0)), idx


def search_excluding(index, queries: np.ndarray, excluded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Euclidean distances, bank indices), N x 1, of the nearest bank rows not in ``excluded``
    (faiss's ID selector; an IVF index probes as it is set to). A query whose probed rows are
    all excluded gets an infinite distance and index -1."""
    import faiss

    if isinstance(index, faiss.IndexIVF):
        params = faiss.SearchParametersIVF(nprobe=index.nprobe)
    elif isinstance(index, faiss.IndexHNSW):
        params = faiss.SearchParametersHNSW(efSearch=index.hnsw.efSearch)
    else:
        params = faiss.SearchParameters()
    params.sel = faiss.IDSelectorNot(faiss.IDSelectorBatch(np.ascontiguousarray(excluded, dtype=np.int64)))
    d2, idx = index.search(np.ascontiguousarray(queries, dtype=np.float32), 1, params=params)
    d2 = np.where(idx < 0, np.inf, d2)
    return np.sqrt(np.maximum(d2, 0.0)), idx
