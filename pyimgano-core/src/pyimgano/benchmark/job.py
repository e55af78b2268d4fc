"""One benchmark job: load, fit, score, compute metrics and the deployed figures, draw.

:func:`run_job` is the executor seam: a plain function of a serialisable
:class:`~pyimgano.benchmark.config.JobSpec` that returns a plain dict, so it runs the same
in this process, in a process pool or on a cluster worker. It never writes files (the
driver does) and never raises for a failing detector: any exception, contract violations
included, becomes ``status: "error"`` with its message.

The job is a sequence of stage functions (:data:`STAGES`) over one
:class:`~pyimgano.benchmark.scoring.JobContext`, which carries the typed run record
(:class:`~pyimgano.benchmark.results.RunResult`) from the first stage to the last.
"""

from __future__ import annotations

import os
import platform
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from pyimgano.benchmark.config import JobSpec
from pyimgano.benchmark.deployed import deployed_metrics, metrics_and_curves
from pyimgano.benchmark.few_shot import FewShotJob
from pyimgano.benchmark.metric_set import compute_metrics, metric_key, resolve_metrics
from pyimgano.benchmark.results import RunResult
from pyimgano.benchmark.scoring import (
    JobContext,
    ProgressFn,
    build_pipeline,
    fpr_limit,
    load_pair,
    no_progress,
    score_test_set,
)
from pyimgano.detector import fitted_attributes
from pyimgano.errors import ContractViolation, validation_problems
from pyimgano.limits import sync_pil
from pyimgano.seeding import seed_everything

__all__ = ["STAGES", "ProgressFn", "check_samples", "empty_run", "load_pair", "metric_keys", "pick_overlay_samples",
           "run_job"]


# -- peak memory ----------------------------------------------------------------------------
def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux ``clear_refs``); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (since the last reset, on Linux)."""
    try:
        match = re.search(r"VmHWM:\s+(\d+)\s+kB", Path("/proc/self/status").read_text())
        if match:
            return int(match.group(1)) / 1024.0
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


# -- the job -----------------------------------------------------------------------------------
def metric_keys(spec: JobSpec) -> list[str]:
    """The results.json metric keys of a job, in column order."""
    names = spec.metrics if spec.metrics is not None else [m.qualified for m in resolve_metrics()]
    return [metric_key(name) for name in names]


def empty_run(spec: JobSpec) -> RunResult:
    """A job's run record with nothing measured yet."""
    return RunResult.start(spec, metric_keys(spec))


def load(ctx: JobContext) -> None:
    """Open the data set, check its samples, draw the few-shot images, load the training images."""
    spec, run = ctx.spec, ctx.run
    ctx.metrics = resolve_metrics(spec.metrics)
    seed_everything(spec.seed)
    sync_pil()  # loaders that use PIL directly get the pyimgano image limit too
    ctx.stage = "loading the data set"
    ctx.dataset = _open_dataset(spec)
    ctx.train = check_samples(spec, list(ctx.dataset.train), "train")
    ctx.test = check_samples(spec, list(ctx.dataset.test), "test")
    ctx.extra["notes"] += overlap_notes(ctx.train, ctx.test)
    ctx.stage = "drawing the few-shot images"
    ctx.few = FewShotJob.draw(spec, ctx.test)  # None: zero-shot
    if ctx.few is not None:
        ctx.test = ctx.few.test  # the shots never join the evaluated images
    run.n_train, run.n_test = len(ctx.train), len(ctx.test)
    if not ctx.train:
        raise ValueError(f"{spec.dataset_label}/{spec.category} has no training images")
    if not ctx.test:
        raise ValueError(f"{spec.dataset_label}/{spec.category} has no test images")
    ctx.stage = "loading training images"
    t0 = time.perf_counter()
    for i, sample in enumerate(ctx.train):
        ctx.train_images.append(load_pair(ctx.dataset, sample, spec.image_size)[0])
        ctx.progress(spec.job_id, "load", i + 1, len(ctx.train))
    ctx.extra["load_train_s"] = time.perf_counter() - t0


def fit(ctx: JobContext) -> None:
    """Build the detector and its pipeline; fit the detector, then calibrate on the held-out
    training images (and tune the few-shot pipeline on the shots)."""
    from pyimgano.factories import create_detector
    from pyimgano.plugins import get_registry

    spec = ctx.spec
    ctx.stage = "building the detector"
    ctx.det_spec, _ = get_registry().resolve("detector", spec.detector)
    detector = create_detector(spec.detector, **spec.params)
    seed_everything(spec.seed)  # the detector's import may have brought torch in
    ctx.pipe = build_pipeline(spec, detector)
    ctx.stage = "fit"
    ctx.progress(spec.job_id, "fit", 0, 1)
    t0 = time.perf_counter()
    ctx.pipe.fit(ctx.train_images)
    ctx.run.timing.fit_s = time.perf_counter() - t0
    ctx.run.n_train, ctx.run.n_val = ctx.pipe.n_train_, ctx.pipe.n_val_
    ctx.extra["pipeline"] = ctx.pipe.to_dict()
    ctx.extra["fitted"] = fitted_attributes(ctx.pipe.detector)
    if ctx.few is not None:
        ctx.stage = "few-shot calibration"
        ctx.few.calibrate(ctx)
    ctx.progress(spec.job_id, "fit", 1, 1)
    ctx.train_images = []


def score(ctx: JobContext) -> None:
    """Score the test split with the fitted detector."""
    ctx.stage = "scoring"
    ctx.scored = score_test_set(ctx.spec, ctx.dataset, ctx.test, ctx.pipe.detector, ctx.det_spec, ctx.progress)
    ctx.extra["load_test_s"] = ctx.scored.load_s


def metrics(ctx: JobContext) -> None:
    """Post-process the test maps and compute every metric on them (the raw maps' pixel
    metrics go to the extras)."""
    ctx.stage = "computing metrics"
    ctx.progress(ctx.spec.job_id, "metrics", 0, 1)
    scored, notes = ctx.scored, ctx.extra["notes"]
    ctx.labels = np.array([int(s.label) for s in ctx.test], dtype=np.int64)
    maps = scored.maps if (scored.maps is not None and ctx.det_spec.capabilities.pixel_maps) else None
    ctx.masks = _full_masks(scored.masks, scored.shapes) if _has_masks(ctx.dataset, ctx.test, scored.masks) else None
    ctx.raw_maps = list(maps) if (ctx.few is not None and maps is not None) else None
    ctx.maps = _postprocess_test_maps(ctx, maps)
    ctx.set_timing(scored.predict_s)
    ctx.run.metrics, ctx.extra["thresholds"], ctx.extra["curves"] = metrics_and_curves(
        ctx.labels, scored.scores, ctx.masks, ctx.maps, ctx.metrics, notes, fpr_limit(ctx.metrics))
    if ctx.maps is None:
        notes.append("pixel metrics: the detector gives no anomaly maps")
    elif ctx.masks is None:
        notes.append("pixel metrics: the data set has no masks")


def deployed(ctx: JobContext) -> None:
    """The figures at the calibrated thresholds and the per-image scores (the report's curves
    come with the metrics)."""
    scores, pipe = ctx.scored.scores, ctx.pipe
    ctx.run.deployed = deployed_metrics(ctx.labels, scores, pipe.image_threshold_, ctx.masks, ctx.maps,
                                        pipe.pixel_threshold_, pipe.promise_)
    ctx.score_rows = [
        {"image": str(s.image_path), "label": int(s.label), "defect_type": getattr(s, "defect_type", ""),
         "score": float(v), "predicted": int(v > pipe.image_threshold_)}
        for s, v in zip(ctx.test, scores)
    ]


def few_shot(ctx: JobContext) -> None:
    """A few-shot job: the tuned pipeline's figures on the same images replace the zero-shot
    pipeline's, which stay beside them."""
    if ctx.few is not None:
        ctx.stage = "few-shot evaluation"
        ctx.few.finish(ctx)


def draw(ctx: JobContext) -> None:
    """Overlays of a few test images (the job writes no file: the driver does)."""
    ctx.stage = "drawing overlays"
    if ctx.spec.overlays and ctx.maps is not None:
        colours = (ctx.pipe.calibration_ or {}).get("heatmap_range")
        ctx.overlays = _overlays(ctx.spec, ctx.dataset, ctx.test, ctx.scored.scores, ctx.maps, ctx.masks,
                                 ctx.pipe.pixel_threshold_, colours)


STAGES = (load, fit, score, metrics, deployed, few_shot, draw)


def run_job(spec: JobSpec | dict, progress: ProgressFn | None = None) -> dict[str, Any]:
    """Run one job; returns ``{"run", "scores", "overlays", "extra"}`` and never raises.

    - ``run``: the results.json entry (:class:`~pyimgano.benchmark.results.RunResult`, as JSON data);
    - ``scores``: one row per test image (image, label, defect_type, score, predicted label);
    - ``overlays``: ``[(file name, JPEG bytes), ...]``;
    - ``extra``: what the schema has no room for (thresholds of the metrics that return
      one, the fitted pipeline, the raw maps' metrics, the report's curves, load and
      post-processing times, metric notes, traceback, host, pid).

    The detector fits on the training images less a seeded ``val_fraction`` (the job's
    seed); post-processing statistics and both thresholds are fitted on those held-out
    images, never on test images. Metrics are computed on the post-processed maps.
    """
    spec = spec if isinstance(spec, JobSpec) else JobSpec.model_validate(spec)
    reset_peak_rss()
    started = time.perf_counter()
    ctx = JobContext(spec, empty_run(spec), progress or no_progress)
    ctx.extra.update(job_id=spec.job_id, host=platform.node(), pid=os.getpid(), notes=[])
    try:
        for stage in STAGES:
            stage(ctx)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - failure isolation: record, never raise
        kind = "contract violation" if isinstance(exc, ContractViolation) else type(exc).__name__
        ctx.run.failed(f"{ctx.stage}: {kind}: {exc}")
        ctx.extra["traceback"] = traceback.format_exc()
    ctx.run.peak_rss_mb = round(peak_rss_mb(), 1)
    ctx.extra["wall_s"] = time.perf_counter() - started
    return {"run": ctx.run.model_dump(mode="json"), "scores": ctx.score_rows, "overlays": ctx.overlays,
            "extra": ctx.extra}


def _postprocess_test_maps(ctx: JobContext, maps: list | None) -> list | None:
    """Post-process the test maps one by one in place (peak memory: one extra map), after the
    raw maps' pixel metrics went to ``extra["raw_metrics"]``; the time joins ``predict_s``."""
    if maps is None:
        return None
    ctx.extra["postprocess_s"] = 0.0
    if ctx.pipe.postprocess:
        if ctx.masks is not None:
            pixel = [m for m in ctx.metrics if m.level == "pixel"]
            ctx.extra["raw_metrics"] = compute_metrics(ctx.labels, ctx.scored.scores, ctx.masks, maps, pixel, [])[0]
        t0 = time.perf_counter()
        for i, amap in enumerate(maps):
            maps[i] = ctx.pipe.postprocess_maps([amap])[0]
        ctx.extra["postprocess_s"] = time.perf_counter() - t0
        ctx.scored.predict_s += ctx.extra["postprocess_s"]
    return maps


def overlap_notes(train: list, test: list) -> list[str]:
    """A warning for test images identical to training images (:mod:`pyimgano.overlap`): the
    benchmark goes on, as the data set is given, but says its figures count them."""
    from pyimgano.overlap import find_overlaps

    overlaps = find_overlaps({"training images": [s.image_path for s in train],
                              "test images": [s.image_path for s in test]})
    return [f"{o.describe()}; the test figures count images the detector trained on" for o in overlaps]


def _open_dataset(spec: JobSpec) -> Any:
    from pyimgano.factories import load_dataset

    return load_dataset(spec.dataset, root=spec.root, category=spec.category, **spec.dataset_options)


def check_samples(spec: JobSpec, samples: list, split: str) -> list:
    """Data set output against the sample contract; the train split holds normal images only."""
    from pydantic import ValidationError

    from pyimgano.contracts import DatasetSample

    for i, sample in enumerate(samples):
        if not isinstance(sample, DatasetSample):
            try:
                DatasetSample.model_validate(sample, from_attributes=True)
            except ValidationError as exc:
                problems = validation_problems(exc, top="sample")
                raise ContractViolation(
                    component=spec.dataset, field=f"{split} sample {i}",
                    expected="a DatasetSample (image_path, label 0/1, mask_path, defect_type, category)",
                    actual=f"{type(sample).__name__} ({problems})",
                ) from None
        if split == "train" and int(sample.label) != 0:
            raise ContractViolation(
                component=spec.dataset, field=f"train sample {i}", expected="label 0 (training is on normal images)",
                actual=f"label {sample.label} for {sample.image_path}",
            )
    return samples


def _has_masks(dataset: Any, test: list, masks: list) -> bool:
    info = getattr(dataset, "info", None)
    if info is not None and not getattr(info, "has_masks", True):
        return False
    defects = [m for s, m in zip(test, masks) if int(s.label) == 1]
    return bool(defects) and all(m is not None for m in defects)


def _full_masks(masks: list, shapes: list) -> list[np.ndarray]:
    return [np.zeros(shape, dtype=bool) if m is None else m for m, shape in zip(masks, shapes)]


def pick_overlay_samples(test: list, scores: np.ndarray, count: int) -> list[int]:
    """Indices of test images to draw: one per defect kind in turn, then one good image."""
    by_kind: dict[str, list[int]] = {}
    good = []
    for i, sample in enumerate(test):
        if int(sample.label) == 1:
            by_kind.setdefault(getattr(sample, "defect_type", "defect"), []).append(i)
        else:
            good.append(i)
    picked: list[int] = []
    queues = [by_kind[k] for k in sorted(by_kind)]
    want_defects = count - 1 if good and count > 1 else count
    depth = 0
    while len(picked) < want_defects and any(depth < len(q) for q in queues):
        for queue in queues:
            if depth < len(queue) and len(picked) < want_defects:
                picked.append(queue[depth])
        depth += 1
    if good and len(picked) < count:
        picked.append(max(good, key=lambda i: scores[i]))  # the most suspicious good image
    return picked


def _overlays(
    spec: JobSpec, dataset: Any, test: list, scores: np.ndarray, maps: list, masks: list | None,
    pixel_threshold: float | None = None, colours: list[float] | None = None,
) -> list[tuple[str, bytes]]:
    """Overlays of a few test images (:func:`pick_overlay_samples`), the predicted mask
    (``map > pixel_threshold``) outlined; colours: the pipeline's heatmap range, else the maps'."""
    from pyimgano.benchmark.overlays import OVERLAY_SUFFIX, map_range, render_overlay

    lo, hi = colours if colours else map_range(maps)
    out = []
    for i in pick_overlay_samples(test, scores, spec.overlays):
        sample = test[i]
        image, _ = load_pair(dataset, sample, spec.image_size)
        mask = masks[i] if masks is not None else None
        predicted = None if pixel_threshold is None else maps[i] > pixel_threshold
        kind = getattr(sample, "defect_type", "") or ("good" if int(sample.label) == 0 else "defect")
        caption = f"{spec.category} / {kind} / {Path(sample.image_path).name} / score {scores[i]:.4g}"
        name = f"{i:03d}_{kind}_{Path(sample.image_path).stem}{OVERLAY_SUFFIX}"
        out.append((re.sub(r"[^A-Za-z0-9._-]+", "-", name),
                    render_overlay(image, mask, maps[i], lo, hi, caption, predicted=predicted)))
    return out
