"""A benchmark job in few-shot mode: K defective test images tune the pipeline, and the
evaluation stays honest (docs/few-shot.md).

For a job with ``few_shot = K > 0`` (:func:`draw`):

1. the K shots are drawn from the category's defective test images (seeded by the job's
   seed, defect types taking turns: :func:`pyimgano.pipeline.fewshot.shot_order`) and removed from
   the evaluation set, which the job then scores as usual;
2. the zero-shot pipeline is fitted as in every job; then (:meth:`FewShotJob.calibrate`)
   the few-shot pipeline is that same detector tuned on the normal validation images and
   the shots, or, for a detector that learns from anomalies, a second detector trained on
   the training images and the shots, then tuned the same way;
3. both pipelines are evaluated on the same reduced test set (:meth:`FewShotJob.finish`):
   the run's ``metrics`` and ``deployed`` are the few-shot pipeline's, ``few_shot.zero_shot``
   holds the zero-shot pipeline's on the same images, and the scores file has both.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pyimgano.benchmark.config import JobSpec
from pyimgano.benchmark.results import FewShotResult, ZeroShotFigures
from pyimgano.benchmark.scoring import (
    JobContext,
    build_pipeline,
    fpr_limit,
    load_pair,
    postprocess_each,
    score_test_set,
)


@dataclass
class FewShotJob:
    """The few-shot part of one job: the shots, then the tuned pipeline(s) and their figures."""

    k: int
    shots: list[Any]
    test: list[Any]
    settings: Any
    images: list[np.ndarray] = field(default_factory=list)
    masks: list[np.ndarray] | None = None
    pipe: Any = None
    calibration_only: Any = None
    trained: bool = False
    notes: list[str] = field(default_factory=list)
    fit_s: float = 0.0

    # -- 1. the draw ---------------------------------------------------------------------------------
    @classmethod
    def draw(cls, spec: JobSpec, test: list) -> FewShotJob | None:
        """The job's shots and its evaluation set (the test split less the shots, in order);
        None for a zero-shot job. Too few defective images: one clear error naming both counts."""
        if not spec.few_shot:
            return None
        from pyimgano.pipeline.fewshot import FewShotSettings, draw_shots

        picked = draw_shots(test, spec.few_shot, spec.seed, f"{spec.dataset_label}/{spec.category}'s test split")
        chosen = set(picked)
        return cls(spec.few_shot, [test[i] for i in picked], [s for i, s in enumerate(test) if i not in chosen],
                   FewShotSettings.of(spec.few_shot_settings))

    # -- 2. calibration --------------------------------------------------------------------------------
    def calibrate(self, ctx: JobContext) -> None:
        """Tune the few-shot pipeline on the zero-shot pipeline's validation images and the shots
        (training a second detector with them where the detector learns from anomalies)."""
        from pyimgano.factories import create_detector
        from pyimgano.seeding import seed_everything

        spec, pipe, extra = ctx.spec, ctx.pipe, ctx.extra
        zero_shot_fit_s = ctx.run.timing.fit_s or 0.0
        pairs = [load_pair(ctx.dataset, s, spec.image_size) for s in self.shots]
        self.images = [p[0] for p in pairs]
        if all(p[1] is not None for p in pairs):
            self.masks = [p[1] for p in pairs]
        names = [str(s.image_path) for s in self.shots]
        held = set(pipe.val_indices_ or [])
        val = [img for i, img in enumerate(ctx.train_images) if i in held]
        caps = ctx.det_spec.capabilities
        self.trained = bool(self.settings.train and caps.learns_from_anomalies)
        if self.trained and self.masks is None and caps.needs_anomaly_masks:
            self.trained = False
            self.notes.append(f"few-shot: {spec.detector} learns from anomalies with their masks only, and the "
                              "shots have none: it was not trained with them")
        started = time.perf_counter()
        tuning = {"few_shot": self.settings, "anomaly_names": names}
        if self.trained:
            seed_everything(spec.seed)
            detector = create_detector(spec.detector, **spec.params)
            seed_everything(spec.seed)
            self.pipe = build_pipeline(spec, detector)
            self.pipe.fit(ctx.train_images, anomalies=self.images, anomaly_masks=self.masks, **tuning)
            self.calibration_only = pipe.copy().calibrate_few_shot(val, self.images, self.masks, **tuning)
        else:
            self.pipe = pipe.copy().calibrate_few_shot(val, self.images, self.masks, **tuning)
        self.fit_s = time.perf_counter() - started + (0.0 if self.trained else zero_shot_fit_s)
        self.notes += self.pipe.few_shot_["notes"]
        extra["notes"] += [n if n.startswith("few-shot") else f"few-shot: {n}" for n in self.pipe.few_shot_["notes"]]
        extra["few_shot"] = {
            "shots": [{"image": str(s.image_path), "defect_type": getattr(s, "defect_type", ""),
                       "mask": None if getattr(s, "mask_path", None) is None else str(s.mask_path)}
                      for s in self.shots],
            "pipeline": self.pipe.to_dict(),
            "trials": getattr(self.pipe, "tuning_trials_", None),
            "zero_shot_fit_s": zero_shot_fit_s,
        }

    # -- 3. evaluation on the reduced test set ----------------------------------------------------
    def finish(self, ctx: JobContext) -> None:
        """Evaluate the few-shot pipeline on the images the zero-shot one was just evaluated on;
        the run takes its figures and keeps the zero-shot ones beside them. The context then
        holds the few-shot pipeline, scores and post-processed maps (for the overlays)."""
        from pyimgano.benchmark.deployed import deployed_metrics, metrics_and_curves
        from pyimgano.benchmark.metric_set import compute_metrics

        run, extra, scored, labels, masks = ctx.run, ctx.extra, ctx.scored, ctx.labels, ctx.masks
        zero = ZeroShotFigures(metrics=run.metrics, deployed=run.deployed)
        extra["zero_shot"] = {"thresholds": extra.get("thresholds"), "raw_metrics": extra.get("raw_metrics"),
                              "curves": extra.get("curves"), "predict_s": scored.predict_s}
        evaluated = [str(s.image_path) for s in self.test]
        if self.trained:
            fs_scored = score_test_set(ctx.spec, ctx.dataset, self.test, self.pipe.detector, ctx.det_spec,
                                       ctx.progress)
            fs_raw = fs_scored.maps if (fs_scored.maps is not None and ctx.det_spec.capabilities.pixel_maps) else None
        else:
            fs_scored = dataclasses.replace(scored, predict_s=scored.predict_s - extra.get("postprocess_s", 0.0))
            fs_raw = ctx.raw_maps
        fs_maps, postprocess_s = postprocess_each(self.pipe, fs_raw)
        fs_scored.predict_s += postprocess_s
        notes: list[str] = []
        run.metrics, extra["thresholds"], extra["curves"] = metrics_and_curves(
            labels, fs_scored.scores, masks, fs_maps, ctx.metrics, notes, fpr_limit(ctx.metrics))
        extra["notes"] += [f"few-shot: {n}" for n in notes]
        extra["postprocess_s"] = postprocess_s
        run.deployed = deployed_metrics(labels, fs_scored.scores, self.pipe.image_threshold_, masks, fs_maps,
                                        self.pipe.pixel_threshold_)
        ctx.set_timing(fs_scored.predict_s, fit_s=self.fit_s)
        record = self.pipe.few_shot_
        run.few_shot = FewShotResult(k=self.k, shots=record["shots"], tuned=record["tuned"],
                                     objective=record["objective"], image_only=record["image_only"],
                                     trained=record["trained"], zero_shot=zero, notes=list(self.notes))
        if len(fs_scored.scores) != len(ctx.score_rows):
            raise RuntimeError(f"the few-shot pipeline scored {len(fs_scored.scores)} images, the zero-shot one "
                               f"{len(ctx.score_rows)}")
        extra["few_shot"]["evaluated"] = {"zero_shot": [row["image"] for row in ctx.score_rows],
                                          "few_shot": evaluated}
        if self.calibration_only is not None:
            co_maps, _ = postprocess_each(self.calibration_only, ctx.raw_maps)
            co_metrics, _ = compute_metrics(labels, scored.scores, masks, co_maps, ctx.metrics, [])
            extra["few_shot"]["calibration_only"] = {
                "metrics": co_metrics,
                "deployed": deployed_metrics(labels, scored.scores, self.calibration_only.image_threshold_, masks,
                                             co_maps, self.calibration_only.pixel_threshold_).model_dump(),
                "tuned": self.calibration_only.few_shot_["tuned"],
            }
        ctx.score_rows = [
            {**row, "score": float(v), "predicted": int(v > self.pipe.image_threshold_),
             "zero_shot_score": row["score"], "zero_shot_predicted": row["predicted"]}
            for row, v in zip(ctx.score_rows, fs_scored.scores)
        ]
        ctx.pipe, ctx.scored, ctx.maps = self.pipe, fs_scored, fs_maps
