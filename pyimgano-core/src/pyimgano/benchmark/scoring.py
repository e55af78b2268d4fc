"""What a benchmark job is made of, shared by its stages (:mod:`pyimgano.benchmark.job`) and its
few-shot part (:mod:`pyimgano.benchmark.few_shot`): the job context, loading images, scoring
the test split, the job's pipeline."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pyimgano.benchmark.config import JobSpec
from pyimgano.benchmark.results import RunResult
from pyimgano.errors import ContractViolation, DatasetError

SCORE_BATCH = 16

# progress(job_id, stage, completed, total); stage is "load", "fit", "score" or "metrics"
ProgressFn = Callable[[str, str, int, int], None]


def no_progress(job_id: str, stage: str, completed: int, total: int) -> None:
    pass


@dataclass
class Scored:
    """The test split as a detector scored it: scores, raw maps (None without maps), the
    masks as the data set gave them (None where an image has none), the image shapes, and
    the time a user waits (``predict_s``, decoding included) and its decoding part (``load_s``)."""

    scores: np.ndarray
    maps: list[np.ndarray] | None
    masks: list[np.ndarray | None]
    shapes: list[tuple[int, int]]
    predict_s: float
    load_s: float


@dataclass
class JobContext:
    """Everything one job's stages hand each other: the spec, the typed run record, the extras
    (what results.json has no room for), and what the stages produced so far."""

    spec: JobSpec
    run: RunResult
    progress: ProgressFn = no_progress
    extra: dict[str, Any] = field(default_factory=dict)
    stage: str = "set-up"
    metrics: list = field(default_factory=list)  # the resolved BenchMetrics
    dataset: Any = None
    det_spec: Any = None
    train: list = field(default_factory=list)  # samples
    test: list = field(default_factory=list)  # the evaluated samples (the shots left out)
    train_images: list[np.ndarray] = field(default_factory=list)
    few: Any = None  # a FewShotJob, or None: zero-shot
    pipe: Any = None
    scored: Scored | None = None
    labels: np.ndarray | None = None
    masks: list[np.ndarray] | None = None  # full-size masks of every test image, None without masks
    maps: list[np.ndarray] | None = None  # the post-processed test maps, None without maps
    raw_maps: list[np.ndarray] | None = None  # kept for the few-shot pipeline
    score_rows: list[dict[str, Any]] = field(default_factory=list)
    overlays: list[tuple[str, bytes]] = field(default_factory=list)

    def set_timing(self, predict_s: float, fit_s: float | None = None) -> None:
        """The run's timing: fit seconds (when given), predict seconds and images per second."""
        if fit_s is not None:
            self.run.timing.fit_s = fit_s
        self.run.timing.predict_s = predict_s
        self.run.timing.images_per_s = len(self.test) / predict_s if predict_s > 0 else None


# -- images and scores -----------------------------------------------------------------------------------
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


def score_test_set(
    spec: JobSpec, dataset: Any, test: list, detector: Any, det_spec: Any, progress: ProgressFn
) -> Scored:
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
    return Scored(np.concatenate(scores) if scores else np.zeros(0), maps, masks, shapes, predict_s, load_s)


def build_pipeline(spec: JobSpec, detector: Any) -> Any:
    """The job's :class:`~pyimgano.Pipeline` around an unfitted detector, with its resolved settings."""
    from pyimgano.pipeline import Pipeline

    return Pipeline(detector, spec.resolved_settings().model_dump(), seed=spec.seed)


def postprocess_each(pipe: Any, raw: list | None) -> tuple[list | None, float]:
    """The pipeline's post-processing of raw maps one by one (new arrays: ``raw`` stays as it
    is; peak memory one extra map) and the seconds it took."""
    if raw is None:
        return None, 0.0
    started = time.perf_counter()
    out = [pipe.postprocess_maps([amap])[0] for amap in raw]
    return out, time.perf_counter() - started


def fpr_limit(metrics: list) -> float:
    """The AUPRO FPR limit of the job's metrics (its spec's default when AUPRO is not among them)."""
    from pyimgano.metrics.params import DEFAULT_FPR_LIMIT

    for metric in metrics:
        if "fpr_limit" in metric.params:
            return float(metric.params["fpr_limit"])
    return DEFAULT_FPR_LIMIT
