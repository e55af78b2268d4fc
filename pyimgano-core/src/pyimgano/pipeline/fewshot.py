"""Few-shot mode: a handful of labelled defective images ("shots") tune an inspection pipeline.

The protocol (docs/few-shot.md, which this module follows step by step):

- **Draw** (:func:`shot_order`, :func:`draw_shots`): in a benchmark the K shots are defective
  *test* images, drawn with a generator seeded by the run's seed, defect types taking turns
  so that the shots spread over them; the first K of one seed's order are its K shots (the
  1-shot image is among the 5 shots). They leave the evaluation set.
- **Tune** (:func:`tune_few_shot`), on the normal *validation* images (held out from the
  detector's training images, never test images) and the shots:

  1. post-processing: every config of the search space (:class:`SearchSpace`: a Gaussian
     blur before the pipeline's own steps, a grey opening after them, each also left out),
     its statistics fitted on the validation maps, scored by the objective (``pixel_f1``:
     the best pixel F1 over thresholds; ``aupro``) over the shots' masks and the validation
     images' defect-free pixels;
  2. the pixel threshold, F1-optimal over the same pixels after the chosen post-processing,
     jointly with a minimum defect area (connected regions of the mask smaller than it are
     dropped: the ``remove_small`` step at the pixel threshold);
  3. the image threshold, F1-optimal over the validation scores (normal) and the shots'
     scores (defective).

  Without masks (or maps) only the image threshold is tuned, and the calibration says so.

Tuning is numbers in, numbers out: the caller scores the images (a detector, or the
scores a benchmark already has) and applies the result (:meth:`FewShotMixin.apply_few_shot`,
which :class:`pyimgano.Pipeline` inherits with the rest of its few-shot mode).
"""

from __future__ import annotations

import os
import time
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pyimgano.errors import InvalidParams, validation_problems
from pyimgano.pipeline.calibration import (
    fit_postprocessing,
    heatmap_range,
    image_figures,
    pixel_figures,
    split_validation,
)
from pyimgano.pipeline.settings import postprocess_config
from pyimgano.postprocess.params import Area, ElementSize, Sigma
from pyimgano.thresholds import make_strategy

FewShotObjective = Literal["pixel_f1", "aupro"]  # what the post-processing search maximises over the shots
OBJECTIVES: tuple[str, ...] = typing.get_args(FewShotObjective)
FEW_SHOT_STREAM = 15  # the draw's random stream: [FEW_SHOT_STREAM, seed], apart from the validation split's
REFERENCE_SIDE = 256  # the default search space is written for maps of this side and scaled to others
DEFAULT_SIGMAS = (1.0, 2.0, 4.0)
DEFAULT_OPEN_SIZES = (3, 5, 7)
DEFAULT_MIN_AREAS = (16, 64, 256)
AREA_THRESHOLD_QUANTILES = tuple(np.round(np.linspace(0.05, 0.95, 19), 2))


# -- settings ---------------------------------------------------------------------------------------
class SearchSpace(BaseModel):
    """The post-processing candidates tried on the shots (each axis also tries the step left
    out). ``None``: the default, written for 256-pixel maps and scaled to the maps' shorter
    side S (sigma x S/256, sizes x S/256 rounded to odd, areas x (S/256)^2); ``[]``: never
    use the step. Given values are pixels of the maps, used as they are."""

    model_config = ConfigDict(extra="forbid")

    # each value bounded as the step it becomes (pyimgano.postprocess.params)
    sigma: list[Sigma] | None = Field(None, description="Gaussian blur sigmas (before the pipeline's own steps)")
    open_size: list[ElementSize] | None = Field(None, description="grey-opening sizes (after them)")
    min_area: list[Area] | None = Field(None, description="minimum defect areas in pixels (on the mask)")

    @field_validator("open_size", "min_area")
    @classmethod
    def _at_least_two(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and any(v < 2 for v in value):
            raise ValueError(f"must be at least 2 pixels (1 would change nothing), got {value}")
        return value

    def resolve(self, side: int) -> dict[str, list[Any]]:
        """The candidate values for maps whose shorter side is ``side`` pixels."""
        scale = side / REFERENCE_SIDE
        sigma = self.sigma if self.sigma is not None else [round(s * scale, 2) for s in DEFAULT_SIGMAS]
        sizes = self.open_size if self.open_size is not None else [
            max(3, 2 * int(round(s * scale / 2 - 0.5)) + 1) for s in DEFAULT_OPEN_SIZES]
        areas = self.min_area if self.min_area is not None else [
            max(2, int(round(a * scale * scale))) for a in DEFAULT_MIN_AREAS]
        return {"sigma": sorted(set(sigma)), "open_size": sorted(set(sizes)), "min_area": sorted(set(areas))}


class FewShotSettings(BaseModel):
    """How shots are used: the tuning objective, the search space, and whether a detector that
    learns from anomalies gets them for training."""

    model_config = ConfigDict(extra="forbid")

    objective: FewShotObjective = Field(
        "pixel_f1", description="what the post-processing search maximises over the shots")
    search: SearchSpace = Field(default_factory=SearchSpace, description="the post-processing candidates")
    train: bool = Field(True, description="a detector whose fit learns from anomalies gets the shots too")

    @classmethod
    def of(cls, value: Any) -> FewShotSettings:
        """Settings from None (the defaults), a dict or settings; one clear line otherwise."""
        if isinstance(value, cls):
            return value
        try:
            return cls.model_validate(value or {})
        except ValidationError as exc:
            raise InvalidParams(f"few-shot settings {value!r}: {validation_problems(exc, top='few_shot')}") from None


# -- the draw ----------------------------------------------------------------------------------------
def shot_order(samples: Sequence[Any], seed: int) -> list[int]:
    """Indices of the defective samples (``label`` 1) in drawing order for ``seed``.

    Defect types (``defect_type``) are put in a seeded random order, each type's images (by
    path) in a seeded random order, then the types take turns: the first K indices are the K
    shots, as spread over the types as K allows, and K shots contain the K - 1 shots.
    """
    rng = np.random.default_rng([FEW_SHOT_STREAM, int(seed)])
    by_type: dict[str, list[int]] = {}
    for i, sample in enumerate(samples):
        if int(sample.label) == 1:
            by_type.setdefault(str(getattr(sample, "defect_type", "") or "defect"), []).append(i)
    types = sorted(by_type)
    queues = []
    for t in (types[j] for j in rng.permutation(len(types))):
        members = sorted(by_type[t], key=lambda i: str(samples[i].image_path))
        queues.append([members[j] for j in rng.permutation(len(members))])
    order: list[int] = []
    for depth in range(max((len(q) for q in queues), default=0)):
        order.extend(q[depth] for q in queues if depth < len(q))
    return order


def draw_shots(samples: Sequence[Any], k: int, seed: int, where: str = "the test split") -> list[int]:
    """The indices of the K shots of ``samples`` for ``seed`` (:func:`shot_order`).

    At least one defective image must stay to be evaluated: a K that leaves none, or a set
    without defective images, is one :class:`InvalidParams` line naming both counts.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise InvalidParams(f"few-shot K {k!r}: must be a whole number >= 0 (0: zero-shot)")
    order = shot_order(samples, seed)
    if k and not order:
        raise InvalidParams(f"few-shot {k}: {where} has no defective images to draw shots from; "
                            "run this category zero-shot (few-shot 0)")
    if k >= len(order) and k:
        raise InvalidParams(
            f"few-shot {k}: {where} has {len(order)} defective image(s), and {k} shot(s) would leave "
            f"{max(0, len(order) - k)} to evaluate; K must be at most {len(order) - 1}")
    return order[:k]


# -- tuning -------------------------------------------------------------------------------------------
@dataclass
class FewShotCalibration:
    """What :func:`tune_few_shot` chose: the post-processing (fitted), both thresholds (the
    pixel threshold None when it was not tuned) and how the choice went."""

    postprocessing: Any
    image_threshold: float
    pixel_threshold: float | None
    objective: str | None
    image_only: bool
    n_val: int
    n_shots: int
    objective_value: float | None = None
    pixel_f1: float | None = None
    image_f1: float | None = None
    min_area: int | None = None
    heatmap_range: list[float] | None = None
    trials: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tuning_s: float = 0.0

    @property
    def postprocess(self) -> list[dict[str, Any]]:
        """The chosen step list (without fitted statistics)."""
        return self.postprocessing.to_config()

    def tuned(self) -> dict[str, Any]:
        """results.json's ``few_shot.tuned``: the chosen post-processing (with its fitted
        statistics), both thresholds and the tuning figures."""
        return {
            "postprocess": self.postprocessing.to_config(include_state=True),
            "image_threshold": self.image_threshold,
            "pixel_threshold": self.pixel_threshold,
            "min_area": self.min_area,
            "objective": self.objective,
            "objective_value": self.objective_value,
            "pixel_f1": self.pixel_f1,
            "image_f1": self.image_f1,
            "n_val": self.n_val,
            "n_shots": self.n_shots,
            "n_trials": len(self.trials),
            "tuning_s": round(self.tuning_s, 4),
        }


def search_configs(base: list[dict[str, Any]], candidates: dict[str, list[Any]]) -> list[list[dict[str, Any]]]:
    """The post-processing configs of the map search: an optional Gaussian blur, the
    pipeline's own steps, an optional grey opening (simplest first)."""
    from pyimgano.postprocess.chain import expand_search_space

    space: list[dict[str, Any]] = []
    if candidates["sigma"]:
        space.append({"name": "gaussian", "sigma": list(candidates["sigma"]), "optional": True})
    space += [dict(step) for step in base]
    if candidates["open_size"]:
        space.append({"name": "open", "size": list(candidates["open_size"]), "optional": True})
    return expand_search_space(space)


def _pixel_f1(masks: list[np.ndarray], maps: list[np.ndarray], threshold: float) -> float:
    return pixel_figures(masks, maps, threshold)["pixel_f1"] or 0.0


def _image_f1(labels: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    return image_figures(labels, scores, threshold)["image_f1"] or 0.0


def tune_few_shot(
    base_postprocess: list[dict[str, Any]],
    val_scores: np.ndarray,
    val_maps: list[np.ndarray] | None,
    shot_scores: np.ndarray,
    shot_maps: list[np.ndarray] | None,
    shot_masks: list[np.ndarray] | None,
    settings: FewShotSettings | dict | None = None,
) -> FewShotCalibration:
    """Tune post-processing and both thresholds on normal validation images and K shots (the
    module docstring and docs/few-shot.md say exactly how). Raw detector outputs in: scores,
    and maps (None for a detector without maps); ``shot_masks`` None: image threshold only."""
    from pyimgano.postprocess.chain import PostProcessing, search_postprocessing
    from pyimgano.thresholds import F1Threshold

    started = time.perf_counter()
    settings = FewShotSettings.of(settings)
    val_scores = np.asarray(val_scores, dtype=np.float64).ravel()
    shot_scores = np.asarray(shot_scores, dtype=np.float64).ravel()
    if not val_scores.size:
        raise InvalidParams("few-shot tuning needs normal validation images; got none")
    if not shot_scores.size:
        raise InvalidParams("few-shot tuning needs at least one defective image (a shot); got none")
    labels = np.r_[np.zeros(val_scores.size, bool), np.ones(shot_scores.size, bool)]
    scores = np.r_[val_scores, shot_scores]
    image_threshold = F1Threshold().compute(scores, labels)
    notes: list[str] = []
    common = {"n_val": int(val_scores.size), "n_shots": int(shot_scores.size),
              "image_f1": _image_f1(labels, scores, image_threshold)}

    def image_only(why: str) -> FewShotCalibration:
        chain = fit_postprocessing(base_postprocess if val_maps else [], list(val_maps or []))
        processed = chain(list(val_maps)) if val_maps else []
        notes.append(f"{why}: only the image threshold is tuned (post-processing and pixel threshold as zero-shot)")
        return FewShotCalibration(chain, image_threshold, None, None, True, **common,
                                  heatmap_range=None if not processed else heatmap_range(processed, None),
                                  notes=notes, tuning_s=time.perf_counter() - started)

    if val_maps is None or shot_maps is None:
        return image_only("the detector gives no anomaly maps")
    if shot_masks is None:
        return image_only("the shots have no defect masks")
    val_maps = [np.asarray(m, dtype=np.float32) for m in val_maps]
    shot_maps = [np.asarray(m, dtype=np.float32) for m in shot_maps]
    shot_masks = [np.asarray(m, dtype=bool) for m in shot_masks]
    if not any(m.any() for m in shot_masks):
        return image_only("the shots' defect masks are empty")
    masks = shot_masks + [np.zeros(m.shape, bool) for m in val_maps]
    raw = shot_maps + val_maps
    side = int(np.median([min(m.shape) for m in raw]))
    candidates = settings.search.resolve(side)

    (objective_value, _, chain, processed), scored = search_postprocessing(
        search_configs(base_postprocess, candidates), raw, masks, settings.objective, fit_maps=val_maps)
    processed = [np.asarray(m, dtype=np.float32) for m in processed]
    trials: list[dict[str, Any]] = [{"postprocess": c, settings.objective: v} for c, v in scored]

    truth = np.concatenate([m.ravel() for m in masks])
    pixels = np.concatenate([m.ravel() for m in processed]).astype(np.float64)
    threshold = F1Threshold().compute(pixels, truth)
    defect_pixels = pixels[truth]
    normal_val = np.concatenate([m.ravel() for m in processed[len(shot_maps):]])
    fill = float(min(np.median(normal_val), threshold))  # removed regions read as a typical normal pixel
    thresholds = sorted({threshold, *(float(t) for t in np.quantile(defect_pixels, AREA_THRESHOLD_QUANTILES))})
    best_area: tuple[float, int | None, float] = (_pixel_f1(masks, processed, threshold), None, threshold)
    trials.append({"min_area": None, "pixel_threshold": threshold, "pixel_f1": best_area[0]})
    for area in candidates["min_area"]:
        for t in thresholds:
            step = PostProcessing.from_config([{"name": "remove_small", "min_area": area, "threshold": t,
                                                "fill": fill}])
            f1 = _pixel_f1(masks, step(processed), t)
            trials.append({"min_area": area, "pixel_threshold": t, "pixel_f1": f1})
            if f1 > best_area[0]:
                best_area = (f1, area, t)
    pixel_f1, min_area, threshold = best_area
    if min_area is not None:
        chain = PostProcessing(chain.steps + PostProcessing.from_config(
            [{"name": "remove_small", "min_area": min_area, "threshold": threshold, "fill": fill}]).steps)
        processed = chain(raw)
    return FewShotCalibration(
        chain, image_threshold, float(threshold), settings.objective, False, **common,
        objective_value=objective_value, pixel_f1=pixel_f1, min_area=min_area,
        heatmap_range=heatmap_range(processed[len(shot_maps):], float(threshold)),
        trials=trials, notes=notes, tuning_s=time.perf_counter() - started)


def describe_tuned(tuned: dict[str, Any]) -> str:
    """A tuned post-processing in a few words, for tables: ``gaussian(sigma=2.0)+standardize``."""
    steps = tuned.get("postprocess") or []
    parts = []
    for step in steps:
        name = step["name"]
        if name == "gaussian":
            parts.append(f"gauss{step.get('sigma'):g}")
        elif name == "open":
            parts.append(f"open{step.get('size')}")
        elif name == "remove_small":
            parts.append(f"area>={step.get('min_area')}")
        else:
            parts.append(name)
    return "+".join(parts) or "none"


# -- few-shot mode of a pipeline -----------------------------------------------------------------------
class FewShotMixin:
    """The few-shot mode of :class:`pyimgano.Pipeline` (docs/few-shot.md): fit with labelled
    anomalies, calibrate on them, apply a tuning. It works on the pipeline's own attributes
    (detector, traits, thresholds, ``calibrate``) and imports nothing of the pipeline."""

    def _fit_few_shot(self, train_images: Any, val_images: Any, anomalies: Any, anomaly_masks: Any,
                      few_shot: Any, names: list[str] | None) -> Any:
        """:meth:`fit` with labelled anomalies: the detector (trained with them when it can),
        then zero-shot calibration on the validation images, then few-shot tuning."""
        from pyimgano.images import load_anomalies, load_images

        settings = FewShotSettings.of(few_shot)
        sized = isinstance(train_images, (list, tuple))
        self.check_fit(len(train_images) if sized else None, val_images is not None)
        names = self._anomaly_names(anomalies, names)
        defects, masks = load_anomalies(anomalies, anomaly_masks, "anomalies")
        train = load_images(train_images)
        if not train:
            raise InvalidParams(f"Pipeline.fit: no training images for {self.traits.name}")
        self.val_indices_ = None
        if val_images is not None:
            val = load_images(val_images)
            if not val:
                raise InvalidParams("val_images is empty: an empty validation split; give at least one image")
        else:
            if self.val_fraction == 0:
                raise InvalidParams("val_fraction 0 leaves no normal validation images, which few-shot calibration "
                                    "needs beside the anomalies; give val_images or a val_fraction above 0")
            fit_idx, val_idx = split_validation(len(train), self.val_fraction, self.seed,
                                                self.traits.min_train_images, self.traits.name)
            train, val = [train[i] for i in fit_idx], [train[i] for i in val_idx]
            self.val_indices_ = val_idx
        notes = []
        trained = settings.train and self.traits.learns_from_anomalies
        if trained and masks is None and self.traits.needs_anomaly_masks:
            trained = False
            notes.append(f"{self.traits.name} learns from anomalies with their defect masks only; without masks it "
                         "was trained on normal images only")
        if trained:
            self.detector.fit(train, anomalies=defects, anomaly_masks=masks)
        else:
            self.detector.fit(train)
        self.n_train_ = len(train)
        del train
        return self.calibrate_few_shot(val, defects, masks, few_shot=settings, anomaly_names=names,
                                       trained=trained, notes=notes)

    @staticmethod
    def _anomaly_names(anomalies: Any, names: list[str] | None) -> list[str] | None:
        if names is not None:
            return [str(n) for n in names]
        if isinstance(anomalies, (list, tuple)) and all(isinstance(a, (str, os.PathLike)) for a in anomalies):
            return [str(a) for a in anomalies]
        return None

    def calibrate_few_shot(
        self,
        images: Any,
        anomalies: Any,
        anomaly_masks: Any = None,
        *,
        few_shot: Any = None,
        anomaly_names: list[str] | None = None,
        trained: bool = False,
        notes: Sequence[str] = (),
    ) -> Any:
        """Calibrate on normal validation ``images`` and a few labelled ``anomalies`` (the
        detector stays as it is): the zero-shot calibration first (:meth:`calibrate`), then
        post-processing and both thresholds tuned on both (:func:`pyimgano.pipeline.fewshot.tune_few_shot`).
        ``trained``: whether the detector was trained with these anomalies (for the record)."""
        from pyimgano.images import load_anomalies, load_images

        self._check_detector_fitted()
        settings = FewShotSettings.of(few_shot)
        names = self._anomaly_names(anomalies, anomaly_names)
        defects, masks = load_anomalies(anomalies, anomaly_masks, "anomalies")
        val = load_images(images)
        if not val:
            raise InvalidParams("few-shot calibration needs normal validation images; got none")
        val_scores, val_maps = self.detector.score(val)
        shot_scores, shot_maps = self.detector.score(defects)
        self._restore_zero_shot()
        self._calibrate_scored(val_scores, val_maps, None, None)
        val_list = None if val_maps is None or not self.traits.pixel_maps else list(val_maps)
        shot_list = None if shot_maps is None or not self.traits.pixel_maps else list(shot_maps)
        calibration = tune_few_shot(self.postprocess, val_scores, val_list, shot_scores, shot_list, masks, settings)
        return self.apply_few_shot(calibration, shots=names or [f"anomaly {i}" for i in range(len(defects))],
                                   trained=trained, notes=notes)

    def apply_few_shot(self, calibration: Any, *, shots: list[str], trained: bool = False,
                       notes: Sequence[str] = ()) -> Any:
        """Take a :class:`pyimgano.pipeline.fewshot.FewShotCalibration` (tuned on this pipeline's
        detector): its post-processing and thresholds replace the zero-shot ones, and
        ``few_shot_`` records the shots, what was tuned and why (saved with the pipeline)."""
        from pyimgano.thresholds import F1Threshold

        if self.pixel_threshold is None and calibration.pixel_threshold is not None:
            calibration.pixel_threshold = None  # a pipeline without masks stays without masks
        zero_shot = (self.few_shot_ or {}).get("zero_shot") or {
            "postprocess": self.postprocess, "image_threshold": self.image_threshold.to_dict(),
            "pixel_threshold": None if self.pixel_threshold is None else self.pixel_threshold.to_dict()}
        self.postprocess = calibration.postprocess
        self.postprocessing = calibration.postprocessing
        self.image_threshold, self.image_threshold_ = F1Threshold(), float(calibration.image_threshold)
        self.detector.threshold_ = self.image_threshold_
        if calibration.pixel_threshold is not None:
            self.pixel_threshold, self.pixel_threshold_ = F1Threshold(), float(calibration.pixel_threshold)
        self.calibration_ = {**self.calibration_, "n_anomalous": calibration.n_shots,
                             "heatmap_range": calibration.heatmap_range or self.calibration_.get("heatmap_range")}
        self.tuning_trials_ = list(calibration.trials)  # every candidate tried (not saved)
        self.few_shot_ = {
            "k": calibration.n_shots,
            "shots": list(shots),
            "objective": calibration.objective,
            "image_only": calibration.image_only,
            "trained": bool(trained),
            "tuned": calibration.tuned(),
            "notes": [*notes, *calibration.notes],
            "zero_shot": zero_shot,
        }
        self.is_fitted_ = True
        return self

    def _restore_zero_shot(self) -> None:
        """Back to the strategies the pipeline had before few-shot tuning (a recalibration)."""
        before = (self.few_shot_ or {}).get("zero_shot")
        if before:
            self.postprocess = postprocess_config(before["postprocess"], self.traits)
            self.image_threshold = make_strategy(before["image_threshold"], "image_threshold")
            pixel = before["pixel_threshold"]
            self.pixel_threshold = None if pixel is None else make_strategy(pixel, "pixel_threshold")
