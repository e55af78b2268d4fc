"""What a benchmark runs: the grid of detectors x data sets x categories.

A :class:`BenchmarkConfig` comes from the command line, from a ``bench.toml`` (or
``.json``) file, or from :func:`default_config` (the embedded default). :func:`expand_jobs`
resolves names through the registry, validates every detector's parameters up front (a
typo fails before anything runs) and returns one :class:`JobSpec` per (detector, data set,
category, seed). A ``JobSpec`` is plain data, so any executor can ship it to another process
or machine.

The seed belongs to the job (Python, NumPy and torch are seeded with it, and detectors with
a ``seed`` parameter get it), never to the data set: the data is the benchmark's fixed input.

``bench.toml``::

    image_size = 128          # optional: resize images and masks to N x N
    seeds = [0, 1, 2]         # or seed = 0 (one seed; the default); not both
    jobs = 2
    job_timeout = 3600        # seconds one job may run before it is stopped (0 or absent: no limit)
    flush_interval = 10       # seconds between rewrites of results.json, CSV, summary, report
    out = "runs/grid"         # relative paths (out, root) are relative to this file
    metrics = ["image_auroc", "aupro"]   # absent: every registered metric
    few_shot = [0, 5]         # zero-shot, and 5 labelled test defects tune each run (docs/few-shot.md)

    [[detectors]]
    name = "faiss:patchcore"
    params = { backbone = "efficientnet_lite0" }

    [[detectors]]
    name = "anomalib:patchcore"

    [[datasets]]
    name = "mvtec"
    root = "/data/mvtec_ad"
    categories = ["bottle", "grid"]   # empty or absent: every category
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pyimgano.bounds import TIMEOUT_MAX_S, VALIDATED_BOUND, Seed
from pyimgano.errors import (
    ComponentNotFound,
    ConfigError,
    DatasetError,
    InvalidParams,
    PyimganoError,
    validation_problems,
)
from pyimgano.pipeline.fewshot import FewShotObjective, FewShotSettings
from pyimgano.pipeline.settings import PipelineOverrides, PipelineSettings, ResolvedSettings, field_from
from pyimgano.specs import OFFLINE_BACKBONE
from pyimgano.thresholds import make_strategy

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_DETECTOR = "faiss:patchcore"
DEFAULT_DETECTOR_PARAMS: dict[str, Any] = {"backbone": OFFLINE_BACKBONE}
DEFAULT_DATASET = "synthetic"
DEFAULT_FLUSH_INTERVAL_S = 10.0


class DetectorEntry(PipelineOverrides):  # type: ignore[misc,valid-type]
    """One detector of the grid with its parameters, and any pipeline setting of its own."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="qualified (plugin:name) or bare detector name")
    params: dict[str, Any] = Field(default_factory=dict, description="detector parameters")


class DatasetEntry(BaseModel):
    """One data set of the grid."""

    model_config = ConfigDict(extra="forbid")

    name: str
    root: str | None = Field(None, description="data set folder (not needed by 'synthetic')")
    categories: list[str] = Field(default_factory=list, description="empty: every category")
    options: dict[str, Any] = Field(default_factory=dict, description="data set options")


class BenchmarkConfig(PipelineSettings):
    """A whole benchmark: the grid plus run settings. The pipeline settings (post-processing,
    thresholds, validation share) are every detector's, unless its entry has its own; the
    post-processing and pixel threshold apply to detectors with maps only."""

    model_config = ConfigDict(extra="forbid")

    detectors: list[DetectorEntry] = Field(default_factory=list)
    datasets: list[DatasetEntry] = Field(default_factory=list)
    image_size: int | None = Field(
        None, ge=8, json_schema_extra={VALIDATED_BOUND: "the image pixel limit (pyimgano.limits)"},
        description="resize images and masks to N x N before the detector (squashing other aspect "
        "ratios; N x N within the image pixel limit); None: each image at its own size",
    )
    seed: Seed | None = Field(None, description="the one seed of the grid (default 0); or give seeds")
    seeds: list[Seed] | None = Field(None, description="several seeds: one job per seed of every grid cell")
    jobs: int = Field(1, ge=1, le=1024, description="categories run in parallel processes")
    job_timeout: float | None = Field(
        None, ge=0, le=TIMEOUT_MAX_S,
        description="seconds a job may run before its worker is stopped and it is recorded as an error (0 or None: "
                    "no limit; at most a week)",
    )
    out: str | None = None
    force: bool = False
    overlays: int = Field(4, ge=0, le=10_000, description="heatmap overlays saved per category")
    metrics: list[str] | None = Field(
        None, description="metrics to compute (names as list-plugins shows them); absent: every registered metric"
    )
    few_shot: list[Annotated[int, Field(ge=0, le=10_000)]] | None = Field(
        None, description="few-shot runs (docs/few-shot.md): for each K, K defective test images drawn per run (seeded "
                          "by its seed) tune the pipeline and leave the evaluation; 0: the zero-shot pipeline; "
                          "absent: [0]")
    few_shot_objective: FewShotObjective = field_from(FewShotSettings, "objective")
    few_shot_search: dict[str, Any] | None = Field(
        None, description=f"{FewShotSettings.model_fields['search'].description}: {{sigma, open_size, min_area}} "
                          "lists (docs/few-shot.md); absent: the documented default")
    few_shot_training: bool = field_from(FewShotSettings, "train")
    flush_interval: float = Field(
        DEFAULT_FLUSH_INTERVAL_S, ge=0, le=3600,
        description="seconds between rewrites of results.json, CSV, summary.md and report.html "
                    "(0: after every job); each job's own record is always written at once",
    )

    @field_validator("val_fraction")
    @classmethod
    def _a_validation_split(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("a benchmark calibrates on held-out training images (never on test images); "
                             "give a share above 0")
        return value

    @field_validator("image_size")
    @classmethod
    def _image_size_within_limit(cls, value: int | None) -> int | None:
        from pyimgano.limits import ENV_MAX_IMAGE_PIXELS, max_image_pixels, max_image_side

        if value is not None and value > max_image_side():
            raise ValueError(
                f"{value} x {value} = {value * value:,} pixels exceeds the image limit of {max_image_pixels():,} "
                f"pixels (at most {max_image_side()}; set {ENV_MAX_IMAGE_PIXELS} to change it)"
            )
        return value

    @property
    def seed_list(self) -> list[int]:
        """The seeds of the grid, in the order given (a ConfigError when given badly)."""
        return grid_seeds(self)


def grid_few_shot(config: BenchmarkConfig) -> list[int]:
    """``config.few_shot`` (default ``[0]``: zero-shot only; the field bounds each K); a repeated K is an error."""
    values = [0] if config.few_shot is None else list(config.few_shot)
    if not values:
        raise ConfigError("few_shot is empty; give at least one K (0: zero-shot)")
    repeated = sorted({k for k in values if values.count(k) > 1})
    if repeated:
        raise ConfigError(f"few_shot {values}: {', '.join(map(str, repeated))} given more than once")
    return values


def few_shot_settings(config: BenchmarkConfig) -> dict[str, Any]:
    """The few-shot settings of the grid as a JobSpec carries them (checked)."""
    from pyimgano.pipeline.fewshot import FewShotSettings

    try:
        settings = FewShotSettings.of({"objective": config.few_shot_objective, "search": config.few_shot_search or {},
                                       "train": config.few_shot_training})
    except InvalidParams as exc:
        raise ConfigError(str(exc)) from None
    return settings.model_dump(mode="json")


def grid_seeds(config: BenchmarkConfig) -> list[int]:
    """``config.seeds``, or ``[config.seed]``, or ``[0]``; both given or a repeated seed is an error."""
    if config.seeds is None:
        return [0 if config.seed is None else config.seed]
    if config.seed is not None:
        raise ConfigError(f"give either seed ({config.seed}) or seeds ({config.seeds}), not both")
    if not config.seeds:
        raise ConfigError("seeds is empty; give at least one seed")
    repeated = sorted({s for s in config.seeds if config.seeds.count(s) > 1})
    if repeated:
        raise ConfigError(f"seeds {config.seeds}: {', '.join(map(str, repeated))} given more than once")
    return list(config.seeds)


class JobSpec(ResolvedSettings):
    """One (detector, data set, category, seed) run: plain, serialisable data. Its pipeline
    settings (:class:`~pyimgano.pipeline.settings.ResolvedSettings`) are resolved for its detector."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    detector: str = Field(description="qualified detector name")
    params: dict[str, Any] = Field(description="validated detector parameters, defaults filled in")
    dataset: str = Field(description="qualified data set name")
    dataset_label: str = Field(description="the data set name as results.json reports it")
    root: str | None = None
    category: str
    dataset_options: dict[str, Any] = Field(default_factory=dict)
    image_size: int | None = field_from(BenchmarkConfig, "image_size",
                                        json_schema_extra=BenchmarkConfig.model_fields["image_size"].json_schema_extra)
    seed: Seed = 0
    overlays: int = field_from(BenchmarkConfig, "overlays")
    metrics: list[str] | None = Field(
        None, description="qualified names of the metrics to compute; None: every registered metric"
    )
    few_shot: int = Field(0, ge=0, le=10_000, description="K defective test images drawn to tune this run (0: zero-shot)")
    few_shot_settings: dict[str, Any] | None = Field(None, description="FewShotSettings of a few-shot run")

    @property
    def key(self) -> str:
        """Stable identity of the run: same key, same scores (used to skip finished runs).

        The metric set is not part of it: metrics are computed from the scores, and a
        finished record is reused when it holds every metric asked for (ResultStore.finished).
        A zero-shot run's key leaves the few-shot fields out, so it is what it was before them.
        """
        excluded = {"overlays", "dataset_label", "metrics"}
        if not self.few_shot:
            excluded |= {"few_shot", "few_shot_settings"}
        fields = self.model_dump(mode="json", exclude=excluded)
        digest = hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()
        return digest[:10]

    @property
    def job_id(self) -> str:
        """A readable, file-name-safe id: ``detector__dataset__category__key``."""
        parts = [self.detector, self.dataset_label, self.category] + ([f"{self.few_shot}-shot"] if self.few_shot else [])
        return "__".join(_slug(p) for p in parts) + f"__{self.key}"

    def describe(self, with_seed: bool = False) -> str:
        where = f"{self.detector} on {self.dataset_label}/{self.category}"
        where += f" ({self.few_shot}-shot)" if self.few_shot else ""
        return f"{where} (seed {self.seed})" if with_seed else where


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"


def default_config(out: str | None = None) -> BenchmarkConfig:
    """The embedded default: native PatchCore with the offline backbone on ``synthetic``."""
    return BenchmarkConfig(
        detectors=[DetectorEntry(name=DEFAULT_DETECTOR, params=dict(DEFAULT_DETECTOR_PARAMS))],
        datasets=[DatasetEntry(name=DEFAULT_DATASET)],
        out=out,
    )


def load_config_file(path: str | Path) -> BenchmarkConfig:
    """Read a ``bench.toml`` (or a ``.json`` file of the same fields); errors name the file and the field."""
    from pyimgano.userfiles import read_text

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such config file")
    text = read_text(path, ConfigError)  # UTF-8 (a BOM is fine); binary data is one clear line
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object of settings, got {type(data).__name__}")
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    try:
        config = BenchmarkConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {validation_problems(exc)}") from None
    try:
        grid_seeds(config)
        grid_few_shot(config)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    base = path.resolve().parent
    if config.out is not None and not Path(config.out).expanduser().is_absolute():
        config.out = str(base / Path(config.out).expanduser())
    for entry in config.datasets:
        if entry.root is not None and not Path(entry.root).expanduser().is_absolute():
            entry.root = str(base / Path(entry.root).expanduser())
    return config


def dataset_categories(entry: DatasetEntry) -> list[str]:
    """The categories to run: the entry's own, else every category the data set reports."""
    if entry.categories:
        return list(dict.fromkeys(entry.categories))
    from pyimgano.factories import load_dataset
    from pyimgano.plugins import get_registry

    spec, _ = get_registry().resolve("dataset", entry.name)
    try:
        info = load_dataset(entry.name, root=entry.root, category=None, **entry.options).info
        categories = list(info.categories)
    except (DatasetError, InvalidParams):
        raise
    except Exception:  # noqa: BLE001 - a loader that needs a category: fall back to the spec
        categories = list(spec.categories)
    if not categories:
        raise ConfigError(f"data set {entry.name!r}: cannot list its categories; give --category")
    return categories


def _resolve(registry: Any, kind: str, name: str) -> tuple[Any, Any]:
    """A component's (spec, plugin record); an unknown name is a ConfigError."""
    try:
        return registry.resolve(kind, name)
    except ComponentNotFound as exc:
        raise ConfigError(str(exc)) from None


def expand_jobs(config: BenchmarkConfig) -> list[JobSpec]:
    """One validated :class:`JobSpec` per (detector, data set, category, seed), in grid order.

    Order: data set, category, detector, seed, then few-shot K, so that the detectors of one
    category (and the seeds of one detector) finish close together and the table fills up
    row by row.
    A detector with a ``seed`` parameter gets the job's seed unless its entry sets one; with
    several seeds an entry may not set it (every seed would fit the same detector).
    """
    from pyimgano.plugins import get_registry

    registry = get_registry()
    if not config.detectors:
        raise ConfigError("no detector to run; give --detector NAME")
    if not config.datasets:
        raise ConfigError("no data set to run on; give --dataset NAME")
    seeds = grid_seeds(config)
    shots = grid_few_shot(config)
    shot_settings = few_shot_settings(config) if any(shots) else None
    from pyimgano.benchmark.metric_set import resolve_metrics

    metrics = [m.qualified for m in resolve_metrics(config.metrics)]
    detectors = []
    for entry in config.detectors:
        spec, record = _resolve(registry, "detector", entry.name)
        takes_seed = "seed" in spec.params.model_fields
        if takes_seed and "seed" in entry.params and len(seeds) > 1:
            raise ConfigError(
                f"detector {entry.name!r} sets seed={entry.params['seed']!r} itself, so the seeds "
                f"{', '.join(map(str, seeds))} would all fit the same detector; leave its seed unset "
                "(each job passes its own) or run one seed"
            )
        per_seed = []
        for seed in seeds:
            params = dict(entry.params)
            if takes_seed and "seed" not in params:
                params["seed"] = seed
            if "progress" in spec.params.model_fields and "progress" not in params:
                params["progress"] = False  # the benchmark draws its own progress bars
            validated = registry.validate_params("detector", entry.name, params)
            per_seed.append((seed, validated.model_dump(mode="json")))
        detectors.append((f"{record.name}:{spec.name}", per_seed, entry_pipeline(config, entry, spec, record)))
    jobs = []
    for ds_entry in config.datasets:
        ds_spec, ds_record = _resolve(registry, "dataset", ds_entry.name)
        options = dict(ds_entry.options)
        if config.image_size and "image_size" in ds_spec.params.model_fields and "image_size" not in options:
            options["image_size"] = config.image_size
        registry.validate_params("dataset", ds_entry.name, options)
        if ds_spec.needs_root and not ds_entry.root:
            raise ConfigError(f"data set {ds_entry.name!r} needs --root DIR (the folder that holds it)")
        root = str(Path(ds_entry.root).expanduser().resolve()) if ds_entry.root else None
        resolved = ds_entry.model_copy(update={"root": root, "options": options})
        for category in dataset_categories(resolved):
            for name, per_seed, pipeline in detectors:
                for seed, params in per_seed:
                    jobs += [
                        JobSpec(
                            detector=name,
                            params=params,
                            dataset=f"{ds_record.name}:{ds_spec.name}",
                            dataset_label=ds_spec.name,
                            root=root,
                            category=category,
                            dataset_options=options,
                            image_size=config.image_size,
                            seed=seed,
                            overlays=config.overlays,
                            metrics=metrics,
                            **pipeline,
                            **_few_shot_fields(k, shot_settings),
                        )
                        for k in shots
                    ]
    keys = [job.key for job in jobs]
    if len(set(keys)) != len(keys):
        raise ConfigError("the grid holds the same (detector, params, data set, category, seed) twice")
    return jobs


def _few_shot_fields(k: int, settings: dict[str, Any] | None) -> dict[str, Any]:
    """The JobSpec fields of one K: none for zero-shot (its spec and key stay as before few-shot)."""
    return {"few_shot": k, "few_shot_settings": settings} if k else {}


def entry_pipeline(config: BenchmarkConfig, entry: DetectorEntry, spec: Any, record: Any) -> dict[str, Any]:
    """The pipeline settings of one detector entry resolved for its detector (JobSpec fields),
    checked before anything runs. An entry's own setting wins over the benchmark's; the
    benchmark's settings that apply to detectors with maps only (post-processing, pixel
    threshold) are left at their defaults for a detector without maps."""
    from pyimgano.pipeline import DetectorTraits

    traits = DetectorTraits.of_spec(f"{record.name}:{spec.name}", spec)
    chosen: dict[str, Any] = {}
    for name in PipelineSettings.model_fields:
        own = getattr(entry, name)
        if own is not None:
            chosen[name] = own
        elif traits.pixel_maps or not PipelineSettings.maps_only(name):
            chosen[name] = getattr(config, name)
    try:
        resolved = PipelineSettings.of(chosen).resolve(traits)
        for what in ("image_threshold", "pixel_threshold"):
            strategy = getattr(resolved, what)
            if strategy is not None and make_strategy(strategy).needs_labels:
                raise InvalidParams(f"{what} {make_strategy(strategy).spec()!r} needs labelled anomalous validation "
                                    "images, which a benchmark does not have (it never calibrates on test images); "
                                    "use quantile:Q or fixed:V")
    except PyimganoError as exc:
        raise ConfigError(f"detector {entry.name!r}: {exc}") from None
    return resolved.model_dump(mode="json")
