"""faiss:patchcore's index='auto': exact flat for small memory banks, IVF for large ones."""

from __future__ import annotations

import numpy as np

from pyimgano_faiss.search import AUTO_IVF_ROWS, build_index, search


def test_auto_is_flat_below_the_threshold_and_ivf_above():
    import faiss

    rng = np.random.default_rng(0)
    small = rng.standard_normal((1000, 8)).astype(np.float32)
    assert isinstance(build_index(small, "auto"), faiss.IndexFlatL2)
    big = rng.standard_normal((AUTO_IVF_ROWS, 8)).astype(np.float32)
    index = build_index(big, "auto", nprobe=16)
    assert isinstance(index, faiss.IndexIVFFlat) and index.nprobe == 16
    queries = big[:200] + 0.01 * rng.standard_normal((200, 8)).astype(np.float32)
    _, nearest = search(index, queries, 1)
    assert np.mean(nearest[:, 0] == np.arange(200)) > 0.9  # approximate, but finds near duplicates


def test_patchcore_params_accept_auto():
    from pyimgano.plugins import get_registry

    spec = get_registry().resolve("detector", "faiss:patchcore")[0]
    assert spec.params(index="auto").index == "auto"
