"""Thresholds that keep their promise: the evidence behind the calibration defaults.

For each data set and seed, faiss:patchcore is fitted twice, once per way of getting
normal calibration scores, and every threshold rule is evaluated on the same scores:

- ``holdout``: the old default, the detector fitted on 90% of the training images and the
  held-out tenth scored (``val_fraction`` 0.1);
- ``oof``: the detector fitted on every training image, each then scored against the
  memory bank without its own rows from the features fit computed (``calibration="oof"``);
- ``kfold``: (``--kfold``, small sets only) 5-fold cross-fitting, 6 fits.

Per (data set, seed, calibration, image rule) it reports the target false-reject rate, the
95% upper bound the calibration scores support, the measured false-reject rate on the
test split's good images (k rejected of m) with the binomial probability of k or more
rejects were the true rate the bound (small: the run contradicts the promise; a rate
measured on m images moves in steps of 1/m, so "measured <= bound" alone fails by one image
when m is small), image F1 at the threshold and image F1-max; per pixel rule the
pixel F1 at the threshold and pixel F1-max; per calibration the fit cost (detector fit plus
calibration scoring, seconds) and how close the calibration scores are to the test/good
scores (median ratio, two-sample Kolmogorov-Smirnov statistic and its p-value, and the
one-sided Mann-Whitney p-value of calibration scores lying lower than unseen good ones),
and the fit cost of out-of-fold against holdout calibration (same seed, same run).

The synthetic categories get ``--synthetic-good`` good test images each (default
``SYNTHETIC_GOOD``; the data set's own default, 10, resolves a rate only to 0.1); the other
images are those of the default synthetic set.

Heavy: run it under ``flock /tmp/pyimgano-heavy.lock``; timings from one run compare.

    python benchmarks/bench_thresholds.py --mvtec-grid GRID_DIR \\
        --mvtec-transistor TRANSISTOR_DIR \\
        --visa CAPSULES_DIR --json thresholds.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

IMAGE_RULES = ("quantile:0.99", "fpr:0.01", "fpr:0.05", "fpr:0.1")
PIXEL_RULES = ("quantile:0.999", "quantile:0.9999", "quantile:0.99999", "quantile:0.999999", "quantile:1.0")
SYNTHETIC = ("brick", "grass", "gravel")
SYNTHETIC_GOOD = 150  # good test images per synthetic category: a false-reject rate in steps of 1/150
DETECTOR = "faiss:patchcore"
PARAMS = {"backbone": "efficientnet_lite0", "progress": False}  # the default backbone needs a download


def _datasets(args: argparse.Namespace):
    """(name, data set, seeds), the small sets first, so a run cut short still covers most of them.
    With ``--draw-data`` each seed of a synthetic category is a data set of its own, generated
    with that seed: independent training and test images, not the same images fitted again."""
    import pyimgano

    if args.mvtec_grid:
        yield "mvtec/grid", pyimgano.load_dataset("mvtec", root=args.mvtec_grid, category="grid"), args.seeds
    for category in args.synthetic:
        for seeds in [[seed] for seed in args.seeds] if args.draw_data else [args.seeds]:
            yield f"synthetic/{category}", pyimgano.load_dataset(
                "synthetic", category=category, n_test_good=args.synthetic_good,
                seed=seeds[0] if args.draw_data else 0), seeds
    if args.mvtec_transistor:
        yield ("mvtec/transistor", pyimgano.load_dataset("mvtec", root=args.mvtec_transistor, category="transistor"),
               args.seeds)
    if args.visa:
        yield "visa/capsules", pyimgano.load_dataset("visa", root=args.visa, category="capsules"), args.seeds


def _fit(train: list[np.ndarray], calibration: str, seed: int):
    """(pipeline, calibration scores, calibration maps, fit seconds) of one way of calibrating."""
    import pyimgano
    from pyimgano.calibration import cross_fit_scores
    from pyimgano.pipeline import split_validation

    pipe = pyimgano.Pipeline(DETECTOR, params={**PARAMS, "seed": seed}, calibration=calibration, seed=seed)
    started = time.perf_counter()
    if calibration == "holdout":
        fit_idx, val_idx = split_validation(len(train), pipe.val_fraction, seed)
        pipe.detector.fit([train[i] for i in fit_idx])
        scores, maps = pipe.detector.score([train[i] for i in val_idx])
    elif calibration == "oof":
        scores, maps = pipe.detector.fit_out_of_fold(train)
    else:
        scores, maps = cross_fit_scores(pipe.detector, train, pipe.folds, seed)
        pipe.detector.fit(train)
    return pipe, np.asarray(scores), [np.asarray(m, dtype=np.float32) for m in maps], time.perf_counter() - started


def _closeness(cal: np.ndarray, good: np.ndarray) -> dict:
    from scipy.stats import ks_2samp, mannwhitneyu

    ks = ks_2samp(cal, good)
    return {"median_ratio": float(np.median(cal) / np.median(good)), "ks": float(ks.statistic),
            "ks_p": float(ks.pvalue), "mw_p_lower": float(mannwhitneyu(cal, good, alternative="less").pvalue),
            "cal_median": float(np.median(cal)), "good_median": float(np.median(good))}


def _consistency(rejects: int, good: int, upper: float | None) -> float | None:
    """P(at least ``rejects`` of ``good`` good images rejected) were the false-reject rate ``upper``."""
    from pyimgano.calibration import rejects_probability

    return rejects_probability(rejects, good, upper)


def measure(name: str, dataset, seeds: list[int], calibrations: list[str]) -> list[dict]:
    from pyimgano.benchmark.deployed import image_figures, pixel_figures
    from pyimgano.metrics.image import image_f1_max
    from pyimgano.metrics.pixel import pixel_f1_max
    from pyimgano.thresholds import make_strategy

    train = [dataset.load(s)[0] for s in dataset.train]
    loaded = [dataset.load(s) for s in dataset.test]
    test = [im for im, _ in loaded]
    masks = [np.zeros(im.shape[:2], bool) if m is None else np.asarray(m, bool) for im, m in loaded]
    labels = np.array([s.label for s in dataset.test])
    rows = []
    for seed in seeds:
        for calibration in calibrations:
            pipe, cal_scores, cal_maps, fit_s = _fit(train, calibration, seed)
            started = time.perf_counter()
            scores, maps = pipe.detector.score(test)
            score_s = time.perf_counter() - started
            f1_max = image_f1_max(labels, scores)[0]
            pipe._calibrate_scored(cal_scores, cal_maps, None, None, calibration)  # the post-processing
            processed = pipe.postprocess_maps(list(maps))
            pix_max = pixel_f1_max(masks, processed)[0] if labels.any() else None
            base = {"dataset": name, "seed": seed, "calibration": calibration, "n_calibration": len(cal_scores),
                    "n_test_good": int((labels == 0).sum()), "fit_s": round(fit_s, 2), "score_s": round(score_s, 2),
                    **_closeness(cal_scores, scores[labels == 0])}
            for rule in IMAGE_RULES:
                pipe.image_threshold = make_strategy(rule, "image_threshold")
                pipe._calibrate_scored(cal_scores, cal_maps, None, None, calibration)
                fig = image_figures(labels, scores, pipe.image_threshold_)
                promise = pipe.calibration_["image_promise"]
                rejects = int((scores[labels == 0] > pipe.image_threshold_).sum())
                rows.append({**base, "kind": "image", "rule": rule, **promise, "rejects": rejects,
                             "p_at_bound": _consistency(rejects, base["n_test_good"], promise["upper"]),
                             "p_at_target": _consistency(rejects, base["n_test_good"], promise["target"]),
                             "measured_fpr": fig["image_fpr"], "f1": fig["image_f1"], "f1_max": f1_max,
                             "threshold": pipe.image_threshold_})
            for rule in PIXEL_RULES:
                pipe.pixel_threshold = make_strategy(rule, "pixel_threshold")
                pipe._calibrate_scored(cal_scores, cal_maps, None, None, calibration)
                fig = pixel_figures(masks, processed, pipe.pixel_threshold_)
                rows.append({**base, "kind": "pixel", "rule": rule, "f1": fig["pixel_f1"], "f1_max": pix_max,
                             "threshold": pipe.pixel_threshold_})
            print(json.dumps({k: base[k] for k in ("dataset", "seed", "calibration", "fit_s", "median_ratio", "ks",
                                                   "mw_p_lower")}),
                  file=sys.stderr, flush=True)
    return rows


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def summary(rows: list[dict]) -> str:
    """Markdown tables: per data set, calibration and rule, the means over seeds."""
    def fmt(v):
        return "-" if v is None else f"{v:.3f}"

    out = ["| data set | calibration | n | image rule | target | bound (95%) | measured FRR | image F1 / F1-max "
           "| fit s | median cal/good | KS |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["dataset"], r["calibration"], r["rule"]) for r in rows if r["kind"] == "image"})
    for dataset, calibration, rule in keys:
        group = [r for r in rows if (r["dataset"], r["calibration"], r["rule"], r["kind"]) ==
                 (dataset, calibration, rule, "image")]
        within = sum(1 for r in group if r["measured_fpr"] is not None and r["upper"] is not None
                     and r["measured_fpr"] <= r["upper"])
        out.append(f"| {dataset} | {calibration} | {group[0]['n_calibration']} | {rule} | {fmt(group[0]['target'])} | "
                   f"{fmt(_mean(r['upper'] for r in group))} | {fmt(_mean(r['measured_fpr'] for r in group))} "
                   f"({within}/{len(group)} within) | {fmt(_mean(r['f1'] for r in group))} / "
                   f"{fmt(_mean(r['f1_max'] for r in group))} | {fmt(_mean(r['fit_s'] for r in group))} | "
                   f"{fmt(_mean(r['median_ratio'] for r in group))} | {fmt(_mean(r['ks'] for r in group))} |")
    out += ["", "| data set | calibration | pixel rule | pixel F1 / F1-max |", "|---|---|---|---|"]
    keys = sorted({(r["dataset"], r["calibration"], r["rule"]) for r in rows if r["kind"] == "pixel"})
    for dataset, calibration, rule in keys:
        group = [r for r in rows if (r["dataset"], r["calibration"], r["rule"], r["kind"]) ==
                 (dataset, calibration, rule, "pixel")]
        out.append(f"| {dataset} | {calibration} | {rule} | {fmt(_mean(r['f1'] for r in group))} / "
                   f"{fmt(_mean(r['f1_max'] for r in group))} |")
    return "\n".join(out)


BEFORE = ("holdout", "quantile:0.99", "quantile:0.9999")  # the defaults before out-of-fold calibration
AFTER = ("oof", "fpr:0.05", "quantile:0.999")


def _fit_ratios(rows: list[dict], dataset: str, calibration: str) -> dict[int, float]:
    """Per seed, the fit cost of ``calibration`` over the holdout fit's (same seed, same run)."""
    fits = {(r["calibration"], r["seed"]): r["fit_s"] for r in rows if r["dataset"] == dataset}
    return {seed: fits[(calibration, seed)] / fits[("holdout", seed)] for c, seed in fits
            if c == calibration and ("holdout", seed) in fits}


def _within(r: dict) -> bool:
    return r["measured_fpr"] is not None and r["upper"] is not None and r["measured_fpr"] <= r["upper"]


def _consistent(r: dict) -> bool:
    from pyimgano.calibration import CONSISTENT_P

    return r["p_at_bound"] is None or r["p_at_bound"] >= CONSISTENT_P


def before_after(rows: list[dict]) -> str:
    """The closing table: per data set, the old and the new defaults (means over seeds)."""
    from pyimgano.calibration import CONSISTENT_P

    def fmt(v):
        return "-" if v is None else f"{v:.3f}"

    out = ["| data set | defaults | n | target | bound (95%) | measured FRR (seeds <= bound) | rejects k of m per seed "
           f"| P(>= k) at the bound, least (seeds >= {CONSISTENT_P}) | image F1 / F1-max | pixel F1 / F1-max | fit s "
           "| fit cost / holdout's |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        for name, (calibration, image_rule, pixel_rule) in (("before", BEFORE), ("after", AFTER)):
            image = [r for r in rows if (r["dataset"], r["calibration"], r["kind"], r["rule"]) ==
                     (dataset, calibration, "image", image_rule)]
            pixel = [r for r in rows if (r["dataset"], r["calibration"], r["kind"], r["rule"]) ==
                     (dataset, calibration, "pixel", pixel_rule)]
            if not image:
                continue
            within = sum(map(_within, image))
            consistent = sum(map(_consistent, image))
            least = min((r["p_at_bound"] for r in image if r["p_at_bound"] is not None), default=None)
            ratios = list(_fit_ratios(rows, dataset, calibration).values())
            ratio = "-" if not ratios or calibration == "holdout" else f"{np.mean(ratios):.2f} (max {max(ratios):.2f})"
            out.append(f"| {dataset} | {name}: {calibration}, {image_rule} | {image[0]['n_calibration']} | "
                       f"{fmt(image[0]['target'])} | {fmt(_mean(r['upper'] for r in image))} | "
                       f"{fmt(_mean(r['measured_fpr'] for r in image))} ({within}/{len(image)}) | "
                       f"{', '.join(str(r['rejects']) for r in image)} of {image[0]['n_test_good']} | "
                       f"{fmt(least)} ({consistent}/{len(image)}) | "
                       f"{fmt(_mean(r['f1'] for r in image))} / {fmt(_mean(r['f1_max'] for r in image))} | "
                       f"{fmt(_mean(r['f1'] for r in pixel))} / {fmt(_mean(r['f1_max'] for r in pixel))} | "
                       f"{_mean(r['fit_s'] for r in image):.1f} | {ratio} |")
    return "\n".join(out)


def runs(rows: list[dict], rule: str = AFTER[1], calibration: str = AFTER[0]) -> str:
    """Every run of one rule: the measured rejects against the bound, nothing averaged."""
    out = ["| data set | seed | n | target | bound (95%) | rejects k of m | measured FRR | <= bound | "
           "P(>= k) at the bound | P(>= k) at the target | fit cost / holdout's |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if (r["kind"], r["rule"], r["calibration"]) != ("image", rule, calibration):
            continue
        ratio = _fit_ratios(rows, r["dataset"], calibration).get(r["seed"])
        out.append(f"| {r['dataset']} | {r['seed']} | {r['n_calibration']} | {r['target']:.3f} | {r['upper']:.3f} | "
                   f"{r['rejects']} of {r['n_test_good']} | {r['measured_fpr']:.3f} | {'yes' if _within(r) else 'no'} | "
                   f"{r['p_at_bound']:.3f} | {r['p_at_target']:.3f} | {'-' if ratio is None else f'{ratio:.2f}'} |")
    return "\n".join(out)


def closeness(rows: list[dict]) -> str:
    """Per data set and calibration: how close calibration scores are to the test split's good ones."""
    out = ["| data set | calibration | n | median calibration / test good | KS statistic | KS p, least | "
           "P(calibration lower), least | fit s |", "|---|---|---|---|---|---|---|---|"]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        for calibration in ("holdout", "oof", "kfold"):
            group = [r for r in rows if (r["dataset"], r["calibration"], r["kind"], r["rule"]) ==
                     (dataset, calibration, "image", IMAGE_RULES[0])]
            if group:
                least = {key: min((r[key] for r in group if key in r), default=None) for key in ("ks_p", "mw_p_lower")}
                out.append(f"| {dataset} | {calibration} | {group[0]['n_calibration']} | "
                           f"{_mean(r['median_ratio'] for r in group):.3f} | {_mean(r['ks'] for r in group):.3f} | "
                           + " | ".join("-" if v is None else f"{v:.3f}" for v in least.values())
                           + f" | {_mean(r['fit_s'] for r in group):.1f} |")
    return "\n".join(out)


def pixel_table(rows: list[dict]) -> str:
    """Pixel F1 at each pixel rule / pixel F1-max, per data set (columns) and calibration."""
    sets = list(dict.fromkeys(r["dataset"] for r in rows))
    out = ["| calibration | pixel rule | " + " | ".join(sets) + " | mean |", "|---|---|" + "---|" * (len(sets) + 1)]
    for calibration in ("holdout", "oof"):
        for rule in PIXEL_RULES:
            cells, f1s = [], []
            for dataset in sets:
                group = [r for r in rows if (r["dataset"], r["calibration"], r["kind"], r["rule"]) ==
                         (dataset, calibration, "pixel", rule)]
                f1, top = _mean(r["f1"] for r in group), _mean(r["f1_max"] for r in group)
                cells.append("-" if f1 is None else f"{f1:.3f} / {top:.3f}")
                if f1 is not None:
                    f1s.append(f1)
            out.append(f"| {calibration} | {rule} | " + " | ".join(cells) + f" | {np.mean(f1s):.3f} |")
    return "\n".join(out)


def _pipeline_fit(train: list[np.ndarray], calibration: str, seed: int) -> float:
    """Seconds of the whole pipeline fit (detector, calibration scores, post-processing statistics,
    both thresholds): what a user waits for."""
    import pyimgano

    pipe = pyimgano.Pipeline(DETECTOR, params={**PARAMS, "seed": seed}, calibration=calibration, seed=seed)
    started = time.perf_counter()
    pipe.fit(train)
    return time.perf_counter() - started


def fit_cost(datasets, rounds: int, seed: int) -> str:
    """The fit cost alone, holdout and out-of-fold fits alternating for ``rounds`` rounds per data set
    (the fastest of each: other work on the machine only ever adds time); ``detector`` times the
    detector's fit and calibration scoring (as the main tables), ``pipeline`` the whole
    ``Pipeline.fit``."""
    out = ["| data set | timed | holdout fit s (fastest) | out-of-fold fit s (fastest) | out-of-fold / holdout "
           "| every round |", "|---|---|---|---|---|---|"]
    for name, dataset, _ in datasets:
        train = [dataset.load(s)[0] for s in dataset.train]
        _fit(train[:4], "holdout", seed)  # untimed: the backbone engine compiles for these input shapes once
        for timed, fit in (("detector", lambda c, t=train: _fit(t, c, seed)[3]),
                           ("pipeline", lambda c, t=train: _pipeline_fit(t, c, seed))):
            times: dict[str, list[float]] = {"holdout": [], "oof": []}
            for _ in range(rounds):
                for calibration in times:
                    times[calibration].append(fit(calibration))
            print(json.dumps({"dataset": name, "timed": timed, **times}), file=sys.stderr, flush=True)
            best = {c: min(t) for c, t in times.items()}
            every = ", ".join(f"{o / h:.2f}" for h, o in zip(times["holdout"], times["oof"]))
            out.append(f"| {name} | {timed} | {best['holdout']:.1f} | {best['oof']:.1f} | "
                       f"{best['oof'] / best['holdout']:.2f} | {every} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--synthetic", nargs="*", default=list(SYNTHETIC), help="synthetic categories")
    parser.add_argument("--synthetic-good", type=int, default=SYNTHETIC_GOOD,
                        help="good test images per synthetic category (the rate is measured in steps of 1/this)")
    parser.add_argument("--mvtec-grid", type=Path)
    parser.add_argument("--mvtec-transistor", type=Path)
    parser.add_argument("--visa", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--draw-data", action="store_true",
                        help="generate each synthetic category anew per seed (seed = the data set's seed): "
                        "independent calibration and test images per run")
    parser.add_argument("--kfold", nargs="*", default=[], help="data set names also calibrated by kfold:5")
    parser.add_argument("--json", type=Path, help="write every row here")
    parser.add_argument("--fit-cost", type=int, metavar="ROUNDS",
                        help="only time the holdout and out-of-fold fits, alternating for ROUNDS rounds (first seed)")
    parser.add_argument("--tables", type=Path, help="print the tables of a --json file written earlier, measure nothing")
    args = parser.parse_args(argv)
    if args.tables:
        rows = json.loads(args.tables.read_text())
        print(before_after(rows), runs(rows), closeness(rows), pixel_table(rows), summary(rows), sep="\n\n")
        return 0
    rows: list[dict] = []
    warm = np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    _fit(list(warm), "holdout", 0)  # the backbone's first build is no calibration's cost
    if args.fit_cost:
        print(fit_cost(_datasets(args), args.fit_cost, args.seeds[0]))
        return 0
    for name, dataset, seeds in _datasets(args):
        calibrations = ["holdout", "oof"] + (["kfold"] if name in args.kfold else [])
        rows += measure(name, dataset, seeds, calibrations)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
    print(before_after(rows), runs(rows), closeness(rows), pixel_table(rows), summary(rows), sep="\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
