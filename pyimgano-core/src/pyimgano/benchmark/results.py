"""The ``results.json`` schema and the benchmark output folder.

``results.json`` is what tools read; its schema is documented in docs/benchmark.md
("Output folder") and checked by :class:`RunResult` before anything is written::

    {"runs": [{"detector", "dataset", "category", "seed", "status": "ok"|"error", "error",
               "params", "pipeline": {postprocess, image_threshold, pixel_threshold, val_fraction, calibration},
               "metrics": {key: value or null, one per metric of the run},
               "deployed": {image_threshold, image_precision, ..., pixel_iou},
               "timing": {fit_s, predict_s, images_per_s}, "peak_rss_mb", "n_train", "n_val", "n_test",
               "few_shot": {k, shots, tuned, objective, image_only, trained, zero_shot, notes}}]}

(``metrics``: the core's metrics under their bare names, image_auroc ... aupro, a plugin's
under ``plugin:name``, computed on the post-processed maps; ``deployed``: figures at the
calibrated thresholds; ``seed``: the job's seed; ``few_shot``: docs/few-shot.md, ``k`` 0 for
the zero-shot pipeline. Files written before seeds, before the inspection pipeline or before
few-shot mode lack ``seed`` / ``pipeline``, ``deployed``, ``n_val`` / ``few_shot``: they read
as ``null``.)

Output folder::

    DIR/results.json  results.csv  summary.md  report.html
    DIR/jobs/<job id>.json         one record per finished job: spec, run entry, extras
    DIR/scores/<job id>.csv        per-image scores of the test split
    DIR/overlays/<job id>/*.jpg    heatmap overlays (image | heatmap | ground truth and predicted mask)
    DIR/figures/*.png              score histograms, ROC and PRO curves per category (matplotlib)

Every file is written atomically (temporary file + rename), and a job's record is written
the moment it finishes, so an interrupted benchmark loses nothing it had finished. The
whole-benchmark files are rebuilt from the records (the driver rewrites them at most every
``flush_interval`` seconds and at the end), so a stale ``results.json`` is never a loss.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pyimgano.atomic import atomic_write
from pyimgano.benchmark.config import JobSpec

RECORD_FORMAT = 1
OVERLAY_SUFFIXES = (".png", ".jpg", ".webp")
SCORE_COLUMNS = ["image", "label", "defect_type", "score", "predicted"]
# a few-shot run's scores file adds the zero-shot pipeline's on the same images
FEW_SHOT_SCORE_COLUMNS = ["zero_shot_score", "zero_shot_predicted"]


# A run record is built as these models from the start of a job (validate_assignment: a
# wrong type fails where it is set, not when the file is written).
RECORD_CONFIG = ConfigDict(extra="forbid", validate_assignment=True)
MAX_RECORD_BYTES = 64 * 1024**2  # a job record: parameters, metrics, few-shot trials; far below this


class Timing(BaseModel):
    model_config = RECORD_CONFIG

    fit_s: float | None = Field(None, ge=0)
    predict_s: float | None = Field(None, ge=0)
    images_per_s: float | None = Field(None, ge=0)


def _column(title: str, level: str) -> dict[str, Any]:
    """json_schema_extra of a deployed figure the tables show: its column title and level."""
    return {"title": title, "level": level}


class Deployed(BaseModel):
    """What the calibrated pipeline does on the test split (docs/benchmark.md): image figures
    over the test images at the image threshold, pixel figures over all test pixels at the
    pixel threshold; null where not applicable (no maps, no masks, a class missing). Beside the
    measured ``image_fpr``, the promise calibration made: ``image_fpr_target`` (the rate asked
    for), ``image_fpr_upper`` (its 95% upper bound from ``n_calibration`` normal calibration
    scores; docs/pipeline.md); null when the image threshold strategy makes no promise. A figure
    with a column title (``json_schema_extra``) is a column of the tables, the CSV and the
    report, and of the log line of a finished run."""

    model_config = RECORD_CONFIG

    image_threshold: float | None = Field(None, description="the calibrated image threshold")
    image_precision: float | None = None
    image_recall: float | None = None
    image_f1: float | None = Field(None, description="F1 of the image labels at the calibrated image threshold",
                                   json_schema_extra=_column("img F1@thr", "image"))
    image_fpr: float | None = Field(
        None, description="share of good test images flagged at the calibrated image threshold (false rejects)",
        json_schema_extra=_column("img FPR@thr", "image"))
    image_fpr_target: float | None = Field(
        None, description="the false-reject rate calibration was asked for (fpr:ALPHA; docs/pipeline.md)")
    image_fpr_upper: float | None = Field(
        None, description="95% upper bound of the calibrated false-reject rate (docs/pipeline.md)")
    n_calibration: int | None = Field(None, description="normal calibration scores behind the promise")
    pixel_threshold: float | None = Field(None, description="the calibrated pixel threshold")
    pixel_precision: float | None = None
    pixel_recall: float | None = None
    pixel_f1: float | None = Field(
        None, description="F1 of the defect masks over all test pixels at the calibrated pixel threshold",
        json_schema_extra=_column("px F1@thr", "pixel"))
    pixel_iou: float | None = None


def deployed_columns() -> list[tuple[str, str, str, str]]:
    """(key, title, description, level) of each deployed figure the tables show, in field order."""
    return [(name, field.json_schema_extra["title"], field.description or "", field.json_schema_extra["level"])
            for name, field in Deployed.model_fields.items() if isinstance(field.json_schema_extra, dict)]


class RunPipeline(BaseModel):
    """How a run's maps were post-processed and its thresholds chosen (the strategies, not
    the fitted values: those are in ``deployed`` and the job record);
    :meth:`~pyimgano.pipeline.settings.ResolvedSettings.record` writes it."""

    model_config = RECORD_CONFIG

    postprocess: list[dict[str, Any]]
    image_threshold: str
    pixel_threshold: str | None
    val_fraction: float
    calibration: str | None = Field(None, description="where the calibration scores came from without validation "
                                                      "images (the setting; null in files from before it)")


class ZeroShotFigures(BaseModel):
    """The zero-shot pipeline on a few-shot run's evaluation images (the paired baseline)."""

    model_config = RECORD_CONFIG

    metrics: dict[str, float | None]
    deployed: Deployed | None = None


class FewShotResult(BaseModel):
    """How a run used labelled defects (docs/few-shot.md): ``k`` 0 for the zero-shot pipeline."""

    model_config = RECORD_CONFIG

    k: int = Field(ge=0, description="defective test images drawn to tune the run (0: zero-shot)")
    shots: list[str] = Field(default_factory=list, description="the drawn images (removed from the evaluation)")
    tuned: dict[str, Any] = Field(default_factory=dict, description="the tuned post-processing, thresholds, figures")
    objective: str | None = Field(None, description="pixel_f1 or aupro; null when only the image threshold was tuned")
    image_only: bool | None = Field(None, description="only the image threshold was tuned (no masks or maps)")
    trained: bool | None = Field(None, description="the detector was trained with the shots")
    zero_shot: ZeroShotFigures | None = Field(None, description="the zero-shot pipeline on the same images")
    notes: list[str] = Field(default_factory=list)


class RunResult(BaseModel):
    """One entry of ``results.json`` ``runs`` (docs/benchmark.md). A job builds it from its
    start (:meth:`start`) and fills it in stage by stage; a new field is one field here."""

    model_config = RECORD_CONFIG

    detector: str
    dataset: str
    category: str
    seed: int | None = Field(None, description="the job's seed (null in files from before seeds were recorded)")
    status: Literal["ok", "error"] = "ok"
    error: str | None = None
    params: dict[str, Any]
    pipeline: RunPipeline | None = Field(None, description="post-processing and threshold strategies (null in "
                                                           "files from before the inspection pipeline)")
    metrics: dict[str, float | None] = Field(description="metric key -> value; null where it does not apply")
    deployed: Deployed | None = Field(None, description="figures at the calibrated thresholds")
    timing: Timing = Field(default_factory=Timing)
    peak_rss_mb: float | None = Field(None, ge=0, description="peak RSS of the process that ran the job, MiB")
    n_train: int = Field(0, ge=0, description="training images the detector was fitted on")
    n_val: int | None = Field(None, ge=0, description="training images held out to calibrate (null: older files)")
    n_test: int = Field(0, ge=0)
    few_shot: FewShotResult | None = Field(None, description="few-shot mode (null: files from before it)")

    @classmethod
    def start(cls, spec: JobSpec, metric_keys: list[str]) -> RunResult:
        """The record of a job with nothing measured yet (every metric of ``metric_keys`` null)."""
        return cls(detector=spec.detector, dataset=spec.dataset_label, category=spec.category, seed=spec.seed,
                   params=dict(spec.params), pipeline=RunPipeline(**spec.resolved_settings().record()),
                   metrics=dict.fromkeys(metric_keys), few_shot=FewShotResult(k=spec.few_shot))

    def failed(self, message: str) -> RunResult:
        """This record marked as an error with ``message``."""
        self.status, self.error = "error", message
        return self


class ResultsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    runs: list[RunResult]


class ResultStore:
    """The output folder of one benchmark: job records, scores, overlays, result files."""

    def __init__(self, out: str | os.PathLike) -> None:
        self.out = Path(out)
        self.jobs_dir = self.out / "jobs"
        self.scores_dir = self.out / "scores"
        self.overlays_dir = self.out / "overlays"

    # -- per job ----------------------------------------------------------------------
    def record_path(self, spec: JobSpec) -> Path:
        return self.jobs_dir / f"{spec.job_id}.json"

    def load_record(self, spec: JobSpec) -> dict[str, Any] | None:
        """The stored record of this exact job (same key), or None. A record that is not
        readable, over :data:`MAX_RECORD_BYTES` or out of bounds is one
        :class:`~pyimgano.errors.SavedFileError` naming the file and field (records are
        written atomically: only a hand edit or another program damages one)."""
        from pyimgano.errors import SavedFileError, validation_problems
        from pyimgano.modelfile import read_json_object

        path = self.record_path(spec)
        if not path.exists():
            return None
        record = read_json_object(path, "job record", SavedFileError, MAX_RECORD_BYTES, allow_nan=True)
        if record.get("key") != spec.key:
            return None  # the record of other settings under the same name: the job runs again
        if not isinstance(record.get("run"), dict):
            raise SavedFileError(f"{path}: invalid job record: run: expected an object; delete the file to run "
                                 "the job again")
        record["run"].setdefault("seed", spec.seed)  # records written before runs carried their seed
        try:
            record["run"] = RunResult.model_validate(record["run"]).model_dump(mode="json")
        except ValidationError as exc:
            raise SavedFileError(f"{path}: invalid job record: run.{validation_problems(exc)}; delete the file to "
                                 "run the job again") from None
        return record

    def finished(self, spec: JobSpec, metric_keys: list[str]) -> dict[str, Any] | None:
        """The record of a job that finished ok and holds every metric of ``metric_keys``
        (a rerun skips it), its metrics narrowed to those, in that order; else None."""
        record = self.load_record(spec)
        if record is None or record["run"]["status"] != "ok":
            return None
        held = record["run"]["metrics"]
        if any(key not in held for key in metric_keys):
            return None  # a metric was added: the run is redone (pixel metrics need its maps)
        record["run"]["metrics"] = {key: held[key] for key in metric_keys}
        zero = (record["run"].get("few_shot") or {}).get("zero_shot")
        if zero:
            zero["metrics"] = {key: zero["metrics"].get(key) for key in metric_keys}
        return record

    def save_outcome(self, spec: JobSpec, outcome: dict[str, Any]) -> dict[str, Any]:
        """Persist one finished job: overlays, scores, then its record (last, atomically)."""
        run = RunResult.model_validate({**outcome["run"], "seed": spec.seed}).model_dump(mode="json")
        overlay_dir = self.overlays_dir / spec.job_id
        overlay_files = []
        if outcome.get("overlays"):
            for old in overlay_dir.glob("*"):
                if old.suffix in OVERLAY_SUFFIXES:
                    old.unlink()
            for name, data in outcome["overlays"]:
                atomic_write(overlay_dir / name, data)
                overlay_files.append(str((overlay_dir / name).relative_to(self.out)))
        scores_file = None
        if outcome.get("scores"):
            scores_file = self.scores_dir / f"{spec.job_id}.csv"
            columns = SCORE_COLUMNS + [c for c in FEW_SHOT_SCORE_COLUMNS if c in outcome["scores"][0]]
            atomic_write(scores_file, rows_to_csv(outcome["scores"], columns))
        record = {
            "format": RECORD_FORMAT,
            "key": spec.key,
            "job": spec.model_dump(mode="json"),
            "run": run,
            "extra": outcome.get("extra", {}),
            "overlays": overlay_files,
            "scores_file": None if scores_file is None else str(scores_file.relative_to(self.out)),
        }
        atomic_write(self.record_path(spec), json.dumps(record, indent=2, default=str))
        return record

    # -- whole benchmark ------------------------------------------------------------------
    def write_results(self, records: list[dict[str, Any]]) -> Path:
        """``results.json`` of the given job records (grid order), validated, atomic."""
        results = ResultsFile.model_validate({"runs": [r["run"] for r in records]})
        path = self.out / "results.json"
        atomic_write(path, json.dumps(results.model_dump(mode="json"), indent=2) + "\n")
        return path


def rows_to_csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    return buffer.getvalue()
