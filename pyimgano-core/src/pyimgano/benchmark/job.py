"""One benchmark job: build, fit, score, validate, measure, compute metrics.

:func:`run_job` is the executor seam: a plain function of a serialisable
:class:`~pyimgano.benchmark.config.JobSpec` that returns a plain dict, so it runs the same
in this process, in a process pool or on a cluster worker. It never writes files (the
driver does) and never raises for a failing detector: any exception, contract violations
included, becomes ``status: "error"`` with its message.
"""

from __future__ import annotations

import os
import platform
import re
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pyimgano.benchmark.config import JobSpec
from pyimgano.benchmark.deployed import curves, deployed_metrics
from pyimgano.benchmark.few_shot import FewShotJob, zero_shot_block
from pyimgano.benchmark.metric_set import compute_metrics, metric_key, resolve_metrics
from pyimgano.detector import fitted_attributes
from pyimgano.errors import ContractViolation, DatasetError
from pyimgano.limits import sync_pil
from pyimgano.seeding import seed_everything

SCORE_BATCH = 16

# progress(job_id, stage, completed, total); stage is "load", "fit", "score" or "metrics"
ProgressFn = Callable[[str, str, int, int], None]


def _no_progress(job_id: str, stage: str, completed: int, total: int) -> None:
    pass


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


# -- images ------------------------------------------------------------------------------------
def load_pair(dataset: Any, sample: Any, image_size: int | None) -> tuple[np.ndarray, np.ndarray | None]:
    """An (HxWx3 uint8 image, HxW bool mask or None) pair, resized when asked."""
    from pyimgano.images import as_rgb, read_image

    try:
        if hasattr(dataset, "load"):
            image, mask = dataset.load(sample)
        else:
            image, mask = read_image(sample.image_path), None
            if getattr(sample, "mask_path", None) is not None:
                mask = read_image(sample.mask_path)
    except Exception as exc:
        named = [str(p) for p in (sample.image_path, getattr(sample, "mask_path", None)) if p is not None]
        if any(name in str(exc) for name in named):
            raise
        raise DatasetError(f"{sample.image_path}: cannot be loaded ({type(exc).__name__}: {exc})") from None
    image = as_rgb(np.asarray(image), str(sample.image_path))
    if mask is not None:
        mask = np.asarray(mask)
        if mask.ndim == 3:
            mask = mask[..., 0]
        mask = mask > 0
        if mask.shape != image.shape[:2]:
            raise ContractViolation(
                component=f"data set {getattr(sample, 'category', '')}",
                field="mask",
                expected=f"shape {image.shape[:2]} (the image's)",
                actual=f"of shape {mask.shape} for {sample.image_path}",
            )
    if image_size is None:
        return image, mask
    from pyimgano.preprocess import Preprocess

    return Preprocess(resize=image_size).apply(image, mask)


# -- the job -----------------------------------------------------------------------------------
def metric_keys(spec: JobSpec) -> list[str]:
    """The results.json metric keys of a job, in column order."""
    names = spec.metrics if spec.metrics is not None else [m.qualified for m in resolve_metrics()]
    return [metric_key(name) for name in names]


def empty_run(spec: JobSpec) -> dict[str, Any]:
    """A results.json run entry with nothing measured yet."""
    return {
        "detector": spec.detector,
        "dataset": spec.dataset_label,
        "category": spec.category,
        "status": "ok",
        "error": None,
        "params": dict(spec.params),
        "pipeline": run_pipeline(spec),
        "metrics": dict.fromkeys(metric_keys(spec)),
        "deployed": None,
        "timing": {"fit_s": None, "predict_s": None, "images_per_s": None},
        "peak_rss_mb": None,
        "n_train": 0,
        "n_val": None,
        "n_test": 0,
        "few_shot": {**zero_shot_block(), "k": spec.few_shot},
    }


def run_pipeline(spec: JobSpec) -> dict[str, Any]:
    """results.json's ``pipeline`` entry of a job: its post-processing and threshold specs."""
    from pyimgano.thresholds import make_strategy, spec_of

    pixel = None if spec.pixel_threshold is None else make_strategy(spec.pixel_threshold)
    return {"postprocess": list(spec.postprocess), "image_threshold": make_strategy(spec.image_threshold).spec(),
            "pixel_threshold": spec_of(pixel), "val_fraction": spec.val_fraction}


def run_job(spec: JobSpec | dict, progress: ProgressFn | None = None) -> dict[str, Any]:
    """Run one job; returns ``{"run", "scores", "overlays", "extra"}`` and never raises.

    - ``run``: the results.json entry (the schema in docs/benchmark.md);
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
    progress = progress or _no_progress
    reset_peak_rss()
    started = time.perf_counter()
    run = empty_run(spec)
    outcome: dict[str, Any] = {"run": run, "scores": [], "overlays": [], "extra": {}}
    extra = outcome["extra"]
    extra.update(job_id=spec.job_id, host=platform.node(), pid=os.getpid(), notes=[])
    stage = "set-up"
    try:
        metrics = resolve_metrics(spec.metrics)
        seed_everything(spec.seed)
        sync_pil()  # loaders that use PIL directly get the pyimgano image limit too
        stage = "loading the data set"
        dataset = _open_dataset(spec)
        train = check_samples(spec, list(dataset.train), "train")
        test = check_samples(spec, list(dataset.test), "test")
        stage = "drawing the few-shot images"
        few = FewShotJob.draw(spec, test)  # None: zero-shot
        if few is not None:
            test = few.test  # the shots never join the evaluated images
        run["n_train"], run["n_test"] = len(train), len(test)
        if not train:
            raise ValueError(f"{spec.dataset_label}/{spec.category} has no training images")
        if not test:
            raise ValueError(f"{spec.dataset_label}/{spec.category} has no test images")

        stage = "loading training images"
        t0 = time.perf_counter()
        train_images = []
        for i, sample in enumerate(train):
            train_images.append(load_pair(dataset, sample, spec.image_size)[0])
            progress(spec.job_id, "load", i + 1, len(train))
        extra["load_train_s"] = time.perf_counter() - t0

        stage = "building the detector"
        from pyimgano.plugins import get_registry
        from pyimgano.registry import create_detector

        det_spec, _ = get_registry().resolve("detector", spec.detector)
        detector = create_detector(spec.detector, **spec.params)
        seed_everything(spec.seed)  # the detector's import may have brought torch in
        pipe = build_pipeline(spec, detector)

        stage = "fit"
        progress(spec.job_id, "fit", 0, 1)
        t0 = time.perf_counter()
        pipe.fit(train_images)
        run["timing"]["fit_s"] = time.perf_counter() - t0
        run["n_train"], run["n_val"] = pipe.n_train_, pipe.n_val_
        extra["pipeline"] = pipe.to_dict()
        extra["fitted"] = fitted_attributes(pipe.detector)
        if few is not None:
            stage = "few-shot calibration"
            few.calibrate(spec, dataset, pipe, train_images, det_spec, extra, run["timing"]["fit_s"])
        progress(spec.job_id, "fit", 1, 1)
        del train_images

        stage = "scoring"
        scored = _score_test_set(spec, dataset, test, detector, det_spec, progress)
        extra["load_test_s"] = scored["load_s"]

        stage = "computing metrics"
        progress(spec.job_id, "metrics", 0, 1)
        labels = np.array([int(s.label) for s in test], dtype=np.int64)
        has_masks = _has_masks(dataset, test, scored["masks"])
        maps = scored["maps"] if (scored["maps"] is not None and det_spec.capabilities.pixel_maps) else None
        masks = _full_masks(scored["masks"], scored["shapes"]) if has_masks else None
        raw_maps = list(maps) if (few is not None and maps is not None) else None  # for the few-shot pipeline
        maps = _postprocess_test_maps(pipe, maps, masks, labels, scored, metrics, extra)
        run["timing"]["predict_s"] = scored["predict_s"]
        run["timing"]["images_per_s"] = len(test) / scored["predict_s"] if scored["predict_s"] > 0 else None
        run["metrics"], extra["thresholds"] = compute_metrics(
            labels, scored["scores"], masks, maps, metrics, extra["notes"]
        )
        if maps is None:
            extra["notes"].append("pixel metrics: the detector gives no anomaly maps")
        elif masks is None:
            extra["notes"].append("pixel metrics: the data set has no masks")
        run["deployed"] = deployed_metrics(labels, scored["scores"], pipe.image_threshold_, masks, maps,
                                           pipe.pixel_threshold_, pipe.promise_)
        extra["curves"] = curves(labels, scored["scores"], masks, maps, _fpr_limit(metrics))
        outcome["scores"] = [
            {
                "image": str(s.image_path),
                "label": int(s.label),
                "defect_type": getattr(s, "defect_type", ""),
                "score": float(v),
                "predicted": int(v > pipe.image_threshold_),
            }
            for s, v in zip(test, scored["scores"])
        ]
        if few is not None:
            stage = "few-shot evaluation"
            pipe, scored, maps = few.finish(spec, dataset, pipe, labels, masks, raw_maps, scored, metrics, run,
                                            outcome, det_spec, progress)

        stage = "drawing overlays"
        if spec.overlays and maps is not None:
            colours = (pipe.calibration_ or {}).get("heatmap_range")
            outcome["overlays"] = _overlays(spec, dataset, test, scored["scores"], maps, masks,
                                            pipe.pixel_threshold_, colours)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - failure isolation: record, never raise
        run["status"] = "error"
        kind = "contract violation" if isinstance(exc, ContractViolation) else type(exc).__name__
        run["error"] = f"{stage}: {kind}: {exc}"
        extra["traceback"] = traceback.format_exc()
    run["peak_rss_mb"] = round(peak_rss_mb(), 1)
    extra["wall_s"] = time.perf_counter() - started
    return outcome


# -- the inspection pipeline of a job ---------------------------------------------------------------
def build_pipeline(spec: JobSpec, detector: Any) -> Any:
    """The job's :class:`~pyimgano.Pipeline` around an unfitted detector."""
    from pyimgano.pipeline import Pipeline

    return Pipeline(detector, postprocess=spec.postprocess, image_threshold=spec.image_threshold,
                    pixel_threshold=spec.pixel_threshold, val_fraction=spec.val_fraction, seed=spec.seed)


def _postprocess_test_maps(
    pipe: Any, maps: list | None, masks: list | None, labels: np.ndarray, scored: dict[str, Any],
    metrics: list, extra: dict[str, Any],
) -> list | None:
    """Post-process the test maps one by one (peak memory: one extra map), after the raw
    maps' pixel metrics went to ``extra["raw_metrics"]``; the time joins ``predict_s``."""
    if maps is None:
        return None
    if pipe.postprocess:
        if masks is not None:
            pixel = [m for m in metrics if m.level == "pixel"]
            extra["raw_metrics"] = compute_metrics(labels, scored["scores"], masks, maps, pixel, [])[0]
        t0 = time.perf_counter()
        for i, amap in enumerate(maps):
            maps[i] = pipe.postprocess_maps([amap])[0]
        extra["postprocess_s"] = time.perf_counter() - t0
        scored["predict_s"] += extra["postprocess_s"]
    else:
        extra["postprocess_s"] = 0.0
    return maps


def _fpr_limit(metrics: list) -> float:
    """The AUPRO FPR limit of the job's metrics (its spec's default when AUPRO is not among them)."""
    from pyimgano.metrics.params import DEFAULT_FPR_LIMIT

    for metric in metrics:
        if "fpr_limit" in metric.params:
            return float(metric.params["fpr_limit"])
    return DEFAULT_FPR_LIMIT


def _open_dataset(spec: JobSpec) -> Any:
    from pyimgano.registry import load_dataset

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
                problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'sample'}: {e['msg']}" for e in exc.errors())
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


def _score_test_set(
    spec: JobSpec, dataset: Any, test: list, detector: Any, det_spec: Any, progress: ProgressFn
) -> dict[str, Any]:
    """Score the test split in batches.

    ``predict_s`` is what a user waits for: decoding the images (and, a few milliseconds, their
    masks), the benchmark's resize, and the detector's own preprocessing and scoring;
    ``load_s`` is the decoding-and-resize part of it.
    """
    from pyimgano.contracts import validate_maps, validate_scores

    scores: list[np.ndarray] = []
    maps: list[np.ndarray] | None = []
    masks: list[np.ndarray | None] = []
    shapes: list[tuple[int, int]] = []
    predict_s = load_s = 0.0
    progress(spec.job_id, "score", 0, len(test))
    for start in range(0, len(test), SCORE_BATCH):
        batch = test[start : start + SCORE_BATCH]
        t_load = time.perf_counter()
        pairs = [load_pair(dataset, s, spec.image_size) for s in batch]
        load_s += time.perf_counter() - t_load
        images = [p[0] for p in pairs]
        masks.extend(p[1] for p in pairs)
        batch_shapes = [(int(im.shape[0]), int(im.shape[1])) for im in images]
        shapes.extend(batch_shapes)
        if hasattr(detector, "score"):
            batch_scores, batch_maps = detector.score(images)
        else:  # a duck-typed detector that is not a pyimgano.Detector subclass
            batch_scores = detector.decision_function(images)
            batch_maps = detector.predict_anomaly_map(images) if det_spec.capabilities.pixel_maps else None
        predict_s += time.perf_counter() - t_load
        scores.append(validate_scores(batch_scores, len(images), component=spec.detector))
        if batch_maps is None or maps is None:
            maps = None
        else:
            checked = validate_maps(batch_maps, batch_shapes, component=spec.detector)
            maps.extend(list(checked))
        progress(spec.job_id, "score", min(start + SCORE_BATCH, len(test)), len(test))
    return {
        "scores": np.concatenate(scores) if scores else np.zeros(0),
        "maps": maps,
        "masks": masks,
        "shapes": shapes,
        "predict_s": predict_s,
        "load_s": load_s,
    }


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
