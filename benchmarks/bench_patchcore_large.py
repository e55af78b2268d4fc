"""faiss:patchcore at large N: peak memory, fit time, flat vs IVF / HNSW memory banks.

The backbone is replaced by synthetic patch features at the scale of EfficientNet-Lite0
(blocks.2 + blocks.4) on 256 px images: 32 x 32 patches per image, 40 + 112 = 152
channels. Everything after the backbone is faiss:patchcore's own code path (chunked
embedding store, random projection, greedy coreset, memory bank, faiss index, scoring),
so fit time and memory are those of a real fit minus the CNN. Normal images mix a few
"texture" prototypes per image plus noise; anomalous test images get a 4-8 patch square
pushed off the normal manifold by a random amount (so the AUROC is not trivially 1).

Each (N, index) fit runs in its own subprocess (the detector built with that ``index``), so
its fit time (coreset + index build) and peak RSS (``ru_maxrss``) are its own. For
approximate indexes the child also builds the exact flat index on the same bank and reports
recall@1 of the nearest memory-bank patch over all test patches and the image AUROC
difference against flat. ``bench_patchcore.py --large-n N`` runs this case too.

    .venv/bin/python benchmarks/bench_patchcore_large.py                      # N=2000
    .venv/bin/python benchmarks/bench_patchcore_large.py --n-train 500 --indexes flat ivf

The machine may be shared: compare the ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

GRID = 32  # 256 px / stride 8
CHANNELS = (40, 112)  # EfficientNet-Lite0 blocks.2, blocks.4
PROTOTYPES = 48


def _encode(index: int, anomalous: bool) -> np.ndarray:
    """A tiny placeholder image that carries the synthetic image's id and kind."""
    image = np.zeros((4, 4, 3), dtype=np.uint8)
    image[0, 0] = [index & 255, (index >> 8) & 255, (index >> 16) & 255]
    image[0, 1, 0] = 255 if anomalous else 0
    return image


def _decode(image: np.ndarray) -> tuple[int, bool]:
    b = image[0, 0].astype(np.int64)
    return int(b[0] + (b[1] << 8) + (b[2] << 16)), bool(image[0, 1, 0])


def synthetic_maps(index: int, anomalous: bool):
    """Per-layer feature maps (C x h x w float32) of one synthetic image, deterministic in ``index``."""
    bases = [np.random.default_rng(100 + i).standard_normal((PROTOTYPES, c)).astype(np.float32) for i, c in
             enumerate(CHANNELS)]
    rng = np.random.default_rng(index)
    choice = rng.choice(PROTOTYPES, size=4, replace=False)
    # smooth spatial mixing of 4 prototypes: a low-frequency weight field per prototype
    coarse = rng.random((4, 4, 4)).astype(np.float32)
    weights = np.kron(coarse, np.ones((1, GRID // 4, GRID // 4), dtype=np.float32))
    weights /= weights.sum(0, keepdims=True)
    out = []
    for layer, (c, basis) in enumerate(zip(CHANNELS, bases)):
        step = 1 if layer == 0 else 2
        w = weights[:, ::step, ::step]
        maps = np.einsum("kc,khw->chw", basis[choice], w) + 0.35 * rng.standard_normal((c,) + w.shape[1:]).astype(
            np.float32)
        out.append(maps.astype(np.float32))
    if anomalous:
        size = int(rng.integers(4, 9))
        y, x = rng.integers(0, GRID - size, size=2)
        strength = float(rng.uniform(0.4, 1.6))
        for layer, maps in enumerate(out):
            step = 1 if layer == 0 else 2
            ys, xs = slice(y // step, max(y // step + 1, (y + size) // step)), slice(
                x // step, max(x // step + 1, (x + size) // step))
            direction = np.random.default_rng(index + 7).standard_normal(maps.shape[0]).astype(np.float32)
            maps[:, ys, xs] += strength * direction[:, None, None]
    return out


def _make_detector(index: str, nprobe: int, coreset_ratio: float, max_embedding_mb: float = 2048.0,
                   batch_size: int = 32, coreset_chunk: int = 131_072):
    import torch

    from pyimgano_faiss.patchcore import PatchCore

    class SyntheticFeaturePatchCore(PatchCore):
        """PatchCore whose backbone is replaced by :func:`synthetic_maps`."""

        def _prepare(self):
            self._device = "cpu"
            return None

        def _features(self, images, desc):
            for start in range(0, len(images), self.batch_size):
                batch = [synthetic_maps(*_decode(im)) for im in images[start:start + self.batch_size]]
                yield start, [torch.from_numpy(np.stack([maps[i] for maps in batch])) for i in range(len(CHANNELS))]

    return SyntheticFeaturePatchCore(backbone="synthetic", pretrained=False, image_size=256, index=index,
                                     nprobe=nprobe, coreset_ratio=coreset_ratio, batch_size=batch_size,
                                     progress=False, sigma=4.0, max_embedding_mb=max_embedding_mb,
                                     coreset_chunk=coreset_chunk)


def _image_scores(index, rows: np.ndarray, n_images: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    from pyimgano_faiss.search import search

    t0 = time.perf_counter()
    dist, idx = search(index, rows, 1)
    elapsed = time.perf_counter() - t0
    return dist[:, 0].reshape(n_images, -1).max(1), dist[:, 0], idx[:, 0], elapsed


def compare_indexes(bank: np.ndarray, rows: np.ndarray, labels: np.ndarray, kinds, nprobe: int) -> dict:
    """Build each index over ``bank``; search time, recall@1 vs flat, image AUROC (max patch distance)."""
    from pyimgano.metrics import image_auroc
    from pyimgano_faiss.search import build_index

    out = {}
    exact = None
    for kind in ["flat"] + [k for k in kinds if k != "flat"]:
        t0 = time.perf_counter()
        index = build_index(bank, kind, nprobe=nprobe)
        build_s = time.perf_counter() - t0
        scores, dist, idx, search_s = _image_scores(index, rows, len(labels))
        entry = {"build_s": build_s, "search_s": search_s, "image_auroc": float(image_auroc(labels, scores))}
        if exact is None:
            exact = (dist, idx, entry["image_auroc"])
        else:
            entry.update(recall_at_1=float(np.mean(idx == exact[1])),
                         mean_distance_ratio=float(np.mean(dist / np.maximum(exact[0], 1e-12))),
                         d_image_auroc=entry["image_auroc"] - exact[2])
        out[kind] = entry
    return out


def child(args: argparse.Namespace) -> dict:
    """One fit with ``args.index`` as the memory-bank index (faiss:patchcore's code path), in this process.

    Fit time includes building the index; peak memory is this process's own. For an
    approximate index the exact flat index is then built over the same bank to measure
    recall@1 and the image AUROC difference.
    """
    import torch

    torch.set_num_threads(args.threads)
    from pyimgano.metrics import image_auroc

    train = [_encode(i, False) for i in range(args.n_train)]
    test_ids = range(10_000_000, 10_000_000 + args.n_test)
    test = [_encode(i, k % 2 == 1) for k, i in enumerate(test_ids)]
    labels = np.array([k % 2 for k in range(args.n_test)])
    detector = _make_detector(args.index, args.nprobe, args.coreset_ratio, args.max_embedding_mb,
                              coreset_chunk=args.coreset_chunk)
    t0 = time.perf_counter()
    detector.fit(train)
    fit_s = time.perf_counter() - t0
    peak_fit = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    scores, _ = detector.score(test)
    score_s = time.perf_counter() - t0
    n, d = detector.n_patches_, detector.memory_bank_.shape[1]
    result = {
        "n_train": args.n_train, "index": args.index, "coreset_ratio": args.coreset_ratio, "nprobe": args.nprobe,
        "max_embedding_mb": args.max_embedding_mb, "coreset_chunk": args.coreset_chunk,
        "coreset_chunks": detector.coreset_chunks_,
        "n_patches": n, "dim": d, "bank": list(detector.memory_bank_.shape),
        "all_features_mb": n * d * 4 / 2**20, "projected_mb": n * detector.projection_dim * 4 / 2**20,
        "fit_s": fit_s, "score_s": score_s, "peak_fit_mb": peak_fit,
        "image_auroc": float(image_auroc(labels, scores)),
    }
    rows = np.concatenate([detector._rows(detector._embed(f)) for _, f in detector._features(test, "rows")])
    if args.index != "flat":
        result["vs_flat"] = compare_indexes(detector.memory_bank_, rows, labels, [args.index], args.nprobe)[args.index]
    if args.big_bank:  # a bank of a million-patch scale: where approximate search pays
        rng = np.random.default_rng(0)
        big_ids = rng.choice(args.n_train, size=min(args.n_train, args.big_bank // (GRID * GRID) + 1), replace=False)
        big = np.concatenate([detector._rows(detector._embed(f))
                              for _, f in detector._features([train[i] for i in big_ids], "big")])[: args.big_bank]
        result["big_bank"] = {"size": len(big),
                              "indexes": compare_indexes(big, rows, labels, [args.index], args.nprobe)}
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def _print_indexes(title: str, indexes: dict) -> None:
    for kind, e in indexes.items():
        line = f"    {title} {kind:5s} build {e['build_s']:6.2f} s  search {e['search_s']:6.2f} s  AUROC {e['image_auroc']:.4f}"
        if "recall_at_1" in e:
            line += (f"  recall@1 {e['recall_at_1']:.3f}  dist ratio {e['mean_distance_ratio']:.4f}"
                     f"  dAUROC vs flat {e['d_image_auroc']:+.4f}")
        print(line, flush=True)


def _table(results: list[dict]) -> str:
    head = (f"{'images':>7} {'patches':>9} {'chunks':>6} {'bank':>7} {'index':6} {'fit s':>7} {'peak MiB':>9} "
            f"{'score s':>8} {'img AUROC':>9} {'recall@1':>8} {'dAUROC':>8}")
    lines = [head, "-" * len(head)]
    for r in results:
        v = r.get("vs_flat", {})
        recall = f"{v['recall_at_1']:8.3f}" if v else f"{'exact':>8}"
        delta = f"{v['d_image_auroc']:+8.4f}" if v else f"{'':>8}"
        lines.append(f"{r['n_train']:7d} {r['n_patches']:9d} {r['coreset_chunks']:6d} {r['bank'][0]:7d} {r['index']:6} "
                     f"{r['fit_s']:7.1f} {r['peak_fit_mb']:9.0f} {r['score_s']:8.2f} {r['image_auroc']:9.4f} "
                     f"{recall} {delta}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-train", type=int, nargs="+", default=[2000])
    parser.add_argument("--n-test", type=int, default=100)
    parser.add_argument("--indexes", nargs="+", default=["flat", "ivf", "hnsw"], choices=["flat", "ivf", "hnsw"])
    parser.add_argument("--nprobe", type=int, default=8)
    parser.add_argument("--coreset-ratio", type=float, default=0.01)
    parser.add_argument("--big-bank", type=int, default=0, help="also compare indexes over a bank of this many "
                        "raw training patches (no coreset)")
    parser.add_argument("--max-embedding-mb", type=float, default=2048.0, help="faiss:patchcore's in-memory "
                        "budget for full-dimension patch features (beyond it they spill to a temp file)")
    parser.add_argument("--coreset-chunk", type=int, default=131_072, help="faiss:patchcore's coreset_chunk "
                        "(training patches per coreset chunk; at least N x 1024 = one exact selection)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="write all results here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--index", default="flat", help=argparse.SUPPRESS)
    return parser


def run(args: argparse.Namespace) -> list[dict]:
    """Every (N, index) fit in its own subprocess; prints one line per fit and a table."""
    results = []
    for n in args.n_train:
        for kind in ["flat"] + [k for k in args.indexes if k != "flat"]:
            cmd = [sys.executable, __file__, "--child", "--n-train", str(n), "--n-test", str(args.n_test),
                   "--index", kind, "--nprobe", str(args.nprobe), "--coreset-ratio", str(args.coreset_ratio),
                   "--threads", str(args.threads), "--big-bank", str(args.big_bank),
                   "--max-embedding-mb", str(args.max_embedding_mb), "--coreset-chunk", str(args.coreset_chunk)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"child failed: {' '.join(cmd)}")
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            results.append(r)
            print(f"N={n} images, {kind}: {r['n_patches']} patches x {r['dim']} (all features "
                  f"{r['all_features_mb']:.0f} MiB, projected {r['projected_mb']:.0f} MiB), {r['coreset_chunks']} "
                  f"coreset chunk(s), bank {r['bank'][0]}: fit {r['fit_s']:.1f} s, peak RSS after fit "
                  f"{r['peak_fit_mb']:.0f} MiB (whole run {r['peak_mb']:.0f} MiB), score {args.n_test} images "
                  f"{r['score_s']:.1f} s, image AUROC {r['image_auroc']:.4f}", flush=True)
            if "vs_flat" in r:
                _print_indexes("same bank vs flat:", {kind: r["vs_flat"]})
            if "big_bank" in r:
                _print_indexes(f"{r['big_bank']['size']}-patch bank", r["big_bank"]["indexes"])
    print()
    print(_table(results))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return results


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.child:
        args.n_train = args.n_train[0]
        print(json.dumps(child(args)))
        return
    run(args)


if __name__ == "__main__":
    main()
