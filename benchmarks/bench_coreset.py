"""Greedy k-center coreset selection on real patch features: the lazy selection against the plain loop.

Patch features come from faiss:patchcore's own fit path (EfficientNet-Lite0, the detector's
default geometry) on a data set's training images; the projected rows that the coreset
selection sees are captured and both selections run on them, in this process, one after
the other (best of ``--repeat``):

* ``greedy_coreset``: the lazy selection faiss:patchcore runs (``pyimgano_faiss.coreset``);
* ``greedy_coreset_plain``: the plain loop (a full vectorised pass over all rows per pick,
  what anomalib does), the peer.

It prints both times, their ratio and whether both picked the same rows (where the order
or the rows differ, by float32 near-ties, how many and both selections' covering radius).

    python benchmarks/bench_coreset.py                                  # synthetic brick, 32 images
    python benchmarks/bench_coreset.py --dataset visa --root CAPSULES_DIR \\
        --category capsules --images 10 --ratio 0.1

Timings are noisy on a shared machine: run this alone (``flock /tmp/pyimgano-heavy.lock``)
and compare the ratio.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def projected_rows(dataset: str, root: str | None, category: str, images: int, seed: int) -> np.ndarray:
    """The randomly projected patch features faiss:patchcore's coreset selection receives."""
    import pyimgano
    import pyimgano_faiss.patchcore as patchcore

    ds = pyimgano.load_dataset(dataset, category=category, **({"root": root} if root else {}))
    train = [str(s.image_path) for s in ds.train][:images]
    captured: list[np.ndarray] = []
    original = patchcore.greedy_coreset

    def capture(points: np.ndarray, k: int, start: int) -> np.ndarray:
        captured.append(np.array(points))
        return original(points, k, start)

    patchcore.greedy_coreset = capture
    try:
        detector = pyimgano.create_detector(
            "faiss:patchcore", backbone="efficientnet_lite0", device="cpu", progress=False, seed=seed,
            coreset_chunk=10**8,  # one chunk (the bound of the parameter): every row in one selection
        )
        detector.fit(train)
    finally:
        patchcore.greedy_coreset = original
    return captured[0]


def best_time(fn, repeat: int) -> tuple[float, np.ndarray]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    from pyimgano_faiss.coreset import coreset_size, greedy_coreset, greedy_coreset_plain

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--root", help="data set root (not for synthetic)")
    parser.add_argument("--category", default="brick")
    parser.add_argument("--images", type=int, default=32, help="training images whose patches are selected from")
    parser.add_argument("--ratio", type=float, default=0.1, help="coreset ratio")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--no-plain", action="store_true", help="skip the plain loop (slow on large inputs)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    points = projected_rows(args.dataset, args.root, args.category, args.images, args.seed)
    k = coreset_size(len(points), args.ratio)
    print(f"{args.dataset}/{args.category}: {args.images} images, {points.shape[0]:,} patches x {points.shape[1]} "
          f"(projected), picking {k:,}")
    lazy_s, lazy = best_time(lambda: greedy_coreset(points, k, 0), args.repeat)
    print(f"  greedy_coreset (lazy)   {lazy_s:8.2f} s")
    if args.no_plain:
        return
    plain_s, plain = best_time(lambda: greedy_coreset_plain(points, k, 0), args.repeat)
    same = np.array_equal(lazy, plain)
    print(f"  greedy_coreset_plain    {plain_s:8.2f} s")
    print(f"  plain / lazy: {plain_s / lazy_s:.2f}x; same picks in the same order: {same}")
    if not same:
        only = len(set(lazy.tolist()) ^ set(plain.tolist())) // 2
        print(f"  {int((lazy != plain).sum())} of {k} positions differ; {only} rows picked by one selection only; "
              f"covering radius (what greedy k-center minimises) lazy {radius(points, lazy):.6g}, "
              f"plain {radius(points, plain):.6g}")


def radius(points: np.ndarray, chosen: np.ndarray) -> float:
    """The largest distance from a row to its nearest chosen row (exact search)."""
    import faiss

    index = faiss.IndexFlatL2(points.shape[1])
    index.add(np.ascontiguousarray(points[chosen]))
    d2, _ = index.search(np.ascontiguousarray(points), 1)
    return float(np.sqrt(max(float(d2.max()), 0.0)))


if __name__ == "__main__":
    main()
