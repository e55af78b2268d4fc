"""Greedy k-center coreset: the lazy selection equals the plain loop; storage spills correctly."""

from __future__ import annotations

import numpy as np
import torch

from pyimgano_faiss.coreset import (
    RandomProjection,
    coreset_size,
    greedy_coreset,
    greedy_coreset_plain,
    greedy_coreset_torch,
)
from pyimgano_faiss.embeddings import EmbeddingStore


def _clustered(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, d)) * 4
    return (centres[rng.integers(0, 20, n)] + rng.standard_normal((n, d))).astype(np.float32)


def test_lazy_greedy_selects_exactly_what_the_plain_loop_selects():
    for seed in range(3):
        x = _clustered(3000, 32, seed)
        lazy = greedy_coreset(x, 300, start=seed)
        plain = greedy_coreset_plain(x, 300, start=seed)
        np.testing.assert_array_equal(lazy, plain)
        assert len(set(lazy.tolist())) == 300


def test_torch_loop_agrees_and_small_cases():
    x = _clustered(800, 16, 5)
    np.testing.assert_array_equal(greedy_coreset_torch(torch.from_numpy(x), 50, start=7), greedy_coreset_plain(x, 50, 7))
    np.testing.assert_array_equal(greedy_coreset(x[:5], 10), np.arange(5))
    assert greedy_coreset(x, 1, start=3).tolist() == [3]
    assert coreset_size(1000, 0.1) == 100 and coreset_size(5, 0.01) == 1 and coreset_size(7, 1.0) == 7


def test_greedy_covers_better_than_a_random_subset():
    x = _clustered(2000, 8, 1)
    chosen = greedy_coreset(x, 40)

    def radius(idx):
        d2 = ((x[:, None, :] - x[idx][None]) ** 2).sum(-1)
        return d2.min(1).max()

    rng = np.random.default_rng(0)
    assert radius(chosen) < min(radius(rng.choice(2000, 40, replace=False)) for _ in range(5))


def test_random_projection_is_seeded_and_keeps_small_inputs():
    x = np.random.default_rng(0).standard_normal((10, 64)).astype(np.float32)
    a, b = RandomProjection(64, 16, seed=3)(x), RandomProjection(64, 16, seed=3)(x)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (10, 16)
    np.testing.assert_array_equal(RandomProjection(64, 128, seed=0)(x), x)


def test_embedding_store_in_memory_and_spilled_give_the_same_rows():
    rng = np.random.default_rng(0)
    chunks = [rng.standard_normal((50, 8)).astype(np.float32) for _ in range(4)]
    everything = np.concatenate(chunks)
    idx = np.array([150, 3, 77, 199, 0])
    for budget_mb in (100.0, 0.002):
        store = EmbeddingStore(budget_mb)
        for chunk in chunks:
            store.append(chunk)
        assert store.spilled == (budget_mb < 1)
        np.testing.assert_array_equal(store.gather(idx), everything[idx])
        store.close()
