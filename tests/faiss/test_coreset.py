"""Greedy k-center coreset: the lazy selection equals the plain loop; chunked streaming; spilling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pyimgano_faiss.coreset import (
    ChunkedCoreset,
    RandomProjection,
    auto_coreset_ratio,
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
        # the full passes before the lazy loop change nothing: none, some, or every pick by them
        for warm in (1, 7, 300):
            np.testing.assert_array_equal(greedy_coreset(x, 300, start=seed, warm=warm), plain)
        # small pools: points enter a few at a time and a full pool returns its tail to the queue
        for batch in (1, 8, 64):
            np.testing.assert_array_equal(greedy_coreset(x, 300, start=seed, batch=batch), plain)


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
        # runs of consecutive rows: inside one appended chunk (a view), across chunks, one row
        for start, stop in ((0, 50), (60, 110), (40, 170), (199, 200), (0, 200)):
            np.testing.assert_array_equal(store.gather(np.arange(start, stop)), everything[start:stop])
        np.testing.assert_array_equal(store.gather(idx), everything[idx])
        with pytest.raises(IndexError, match=r"\[0, 200\)"):
            store.gather(np.array([3, 200]))
        store.close()


def _stream(x, k, chunk_rows, batches, seed=0, select=greedy_coreset, budget_mb=2048.0):
    coreset = ChunkedCoreset(len(x), k, chunk_rows, RandomProjection(x.shape[1], 8, seed),
                             np.random.default_rng(seed), select=select, budget_mb=budget_mb)
    for part in np.array_split(x, batches):
        coreset.add(part)
    return coreset.finish(), coreset.n_chunks


def test_one_chunk_is_the_exact_greedy_selection_over_all_rows():
    x = _clustered(1500, 24, 2)
    bank, n_chunks = _stream(x, 150, chunk_rows=10_000, batches=7, seed=4)
    start = int(np.random.default_rng(4).integers(len(x)))
    expected = greedy_coreset(RandomProjection(24, 8, 4)(x), 150, start=start)
    assert n_chunks == 1
    np.testing.assert_array_equal(bank, x[expected])


def test_chunks_split_the_picks_and_see_at_most_chunk_rows_at_once():
    x = _clustered(2000, 16, 3)
    seen = []

    def select(points, k, start):
        seen.append((len(points), k))
        return greedy_coreset(points, k, start)

    bank, n_chunks = _stream(x, 203, chunk_rows=300, batches=9, select=select)
    assert n_chunks == 7 and len(bank) == 203
    assert max(n for n, _ in seen) <= 300 and sum(k for _, k in seen) == 203
    # every bank row is a distinct training row, and each chunk contributed its share
    rows = {r.tobytes(): i for i, r in enumerate(x)}
    picked = np.array(sorted(rows[r.tobytes()] for r in bank))
    assert len(set(picked.tolist())) == 203
    per_chunk = np.bincount(picked // 300, minlength=7)
    assert per_chunk.tolist() == [k for _, k in seen]
    # the result does not depend on how the rows were batched, nor on spilling to disk
    for batches, budget in ((1, 2048.0), (40, 2048.0), (9, 0.001)):
        np.testing.assert_array_equal(_stream(x, 203, 300, batches, budget_mb=budget)[0], bank)


def test_each_chunk_selects_from_its_own_projected_rows():
    # the chunks share one buffer of projected rows: every selection, the short last one
    # included, must see exactly its chunk's rows (never rows left from the chunk before)
    x = _clustered(1100, 16, 6)
    projection = RandomProjection(16, 8, 2)
    seen = []

    def select(points, k, start):
        seen.append(points.copy())
        return greedy_coreset(points, k, start)

    bank, n_chunks = _stream(x, 110, chunk_rows=400, batches=13, seed=2, select=select)
    assert n_chunks == 3 and [len(p) for p in seen] == [400, 400, 300]
    for i, points in enumerate(seen):
        np.testing.assert_array_equal(points, projection(x[i * 400 : (i + 1) * 400]))
    out = np.empty((len(x), 8), dtype=np.float32)
    np.testing.assert_array_equal(projection(x, out=out), projection(x))


def test_chunked_selection_still_covers_better_than_random():
    x = _clustered(3000, 8, 5)
    bank, _ = _stream(x, 60, chunk_rows=1000, batches=3)

    def radius(centres):
        return ((x[:, None, :] - centres[None]) ** 2).sum(-1).min(1).max()

    rng = np.random.default_rng(1)
    assert radius(bank) < min(radius(x[rng.choice(len(x), 60, replace=False)]) for _ in range(5))


def test_chunked_coreset_rejects_rows_beyond_the_announced_total():
    x = _clustered(100, 8, 0)
    coreset = ChunkedCoreset(90, 9, 50, RandomProjection(8, 8, 0), np.random.default_rng(0))
    coreset.add(x[:80])
    with pytest.raises(ValueError, match="more than the 90 rows"):
        coreset.add(x[80:])
    coreset.close()
    short = ChunkedCoreset(90, 9, 50, RandomProjection(8, 8, 0), np.random.default_rng(0))
    short.add(x[:60])
    with pytest.raises(ValueError, match="received 60 rows, 90"):
        short.finish()
    with pytest.raises(ValueError, match="k <= total_rows"):
        ChunkedCoreset(10, 11, 5, RandomProjection(8, 8, 0), np.random.default_rng(0))


def test_auto_ratio_keeps_the_bank_per_input_of_a_256_px_input():
    assert auto_coreset_ratio(64) == 0.1  # small inputs: the paper's 10%
    assert auto_coreset_ratio(1024) == 0.1  # 256 x 256 at stride 8: unchanged
    assert auto_coreset_ratio(4096) == pytest.approx(0.025)  # 512 x 512: 102.4 patches per input, as at 256
    assert auto_coreset_ratio(58 * 88) * 58 * 88 == pytest.approx(102.4)
