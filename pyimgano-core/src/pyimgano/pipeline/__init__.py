"""The inspection pipeline: a detector, post-processing and two thresholds, fitted, saved,
predicted with and benchmarked as one unit.

``Pipeline.fit(train, val_images=None)`` fits the detector on the training images, then
fits everything else on *validation* images (given, or a seeded ``val_fraction`` of the
training images held out from the detector): the statistics of the post-processing steps
(on the maps of normal validation images), the image threshold (on their scores) and the
pixel threshold (on their post-processed maps). Test images are never seen. ``predict``
gives scores, 0/1 labels, post-processed maps at each image's own size, boolean defect
masks and the masks' connected regions.

A saved pipeline is one folder: the detector exactly as :meth:`Detector.save` writes it
(``pyimgano-model.json``, ``state.npz``, its own files; its threshold is the image
threshold) plus ``pyimgano-pipeline.json`` (see :data:`PIPELINE_FILE` and docs/pipeline.md).
A folder saved by a plain detector loads as a pipeline without post-processing whose
pixel threshold is the image threshold, so it predicts as it always did.

The package, by job: :mod:`~pyimgano.pipeline.settings` (the settings, declared once, and
their resolution for a detector), :mod:`~pyimgano.pipeline.calibration` (the validation
split, statistics and threshold values, module functions reusable on their own),
:mod:`~pyimgano.pipeline.fewshot` (few-shot mode: settings, draw, tuning), and here the
:class:`Pipeline` with prediction and save/load.
"""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from pyimgano.bounds import SEED_MAX
from pyimgano.calibration import DEFAULT_CALIBRATION, p_values, parse_calibration, promise
from pyimgano.errors import InvalidParams, ModelLoadError, NotFittedError, PyimganoError
from pyimgano.pipeline.calibration import (
    finite,
    fit_postprocessing,
    heatmap_range,
    needs_data,
    normal_pixels,
    pixel_threshold_value,
    split_validation,
)
from pyimgano.pipeline.fewshot import FewShotMixin
from pyimgano.pipeline.settings import (
    DEFAULT,
    DetectorTraits,
    PipelineSettings,
    ResolvedSettings,
    detector_traits,
    parse_postprocess,
    postprocess_config,
)
from pyimgano.thresholds import DEFAULT_IMAGE_THRESHOLD, DEFAULT_PIXEL_THRESHOLD, make_strategy

__all__ = ["DEFAULT", "DEFAULT_IMAGE_THRESHOLD", "DEFAULT_PIXEL_THRESHOLD", "PIPELINE_FILE", "DetectorTraits",
           "Pipeline", "PipelineOutput", "PipelineSettings", "ResolvedSettings", "detector_traits", "find_regions",
           "fit_postprocessing", "load", "normal_pixels", "parse_postprocess", "pixel_threshold_value",
           "postprocess_config", "split_validation"]

PIPELINE_FILE = "pyimgano-pipeline.json"
PIPELINE_FORMAT = 1


# -- regions --------------------------------------------------------------------------------------
def find_regions(mask: np.ndarray, amap: np.ndarray | None = None) -> list[dict[str, Any]]:
    """The 8-connected regions of a defect mask, largest first: ``{"bbox": [x, y, width,
    height], "area": pixels, "peak": the map's highest value inside (None without a map)}``."""
    from scipy import ndimage

    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return []
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    peaks = ndimage.maximum(amap, labels, index=np.arange(1, n + 1)) if amap is not None else [None] * n
    regions = []
    for k, box in enumerate(ndimage.find_objects(labels)):
        ys, xs = box
        regions.append({
            "bbox": [int(xs.start), int(ys.start), int(xs.stop - xs.start), int(ys.stop - ys.start)],
            "area": int(areas[k]),
            "peak": None if peaks[k] is None else float(peaks[k]),
        })
    regions.sort(key=lambda r: (-r["area"], r["bbox"][1], r["bbox"][0]))
    return regions


@dataclass
class PipelineOutput:
    """What :meth:`Pipeline.predict` returns for N images.

    ``labels`` and ``masks`` are ``None`` only for a plain detector folder saved without a
    threshold; ``maps`` and ``masks`` are ``None`` for a detector without maps.
    """

    scores: np.ndarray
    labels: np.ndarray | None
    maps: list[np.ndarray] | None
    masks: list[np.ndarray] | None
    image_threshold: float | None = None
    pixel_threshold: float | None = None
    postprocess_s: float = field(default=0.0, repr=False)
    #: per image, the conformal p-value of its score among the normal calibration scores
    #: (small: few good parts scored as high; None for a pipeline saved without them)
    p_values: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.scores)

    @cached_property
    def regions(self) -> list[list[dict[str, Any]]]:
        """Per image, the mask's regions (:func:`find_regions`); empty lists without masks."""
        if self.masks is None:
            return [[] for _ in range(len(self.scores))]
        maps = self.maps if self.maps is not None else [None] * len(self.masks)
        return [find_regions(mask, amap) for mask, amap in zip(self.masks, maps)]


# -- the pipeline ---------------------------------------------------------------------------------
class Pipeline(FewShotMixin):
    """A detector + post-processing + an image threshold + a pixel threshold.

    Args:
        detector: a :class:`~pyimgano.Detector`, or a registered name (``"faiss:patchcore"``)
            built with ``params``.
        settings: a :class:`~pyimgano.pipeline.settings.PipelineSettings` (or a dict of it);
            keyword arguments named like its fields (``postprocess``, ``image_threshold``,
            ``pixel_threshold``, ``val_fraction``, ``calibration``) go on top. Each field says
            what it takes and its default; ``"default"`` post-processing and pixel threshold
            adapt to the detector (its declared steps; :data:`DEFAULT_PIXEL_THRESHOLD` with maps,
            none without). ``calibration`` is where the normal calibration scores and maps come
            from when ``fit`` gets no ``val_images`` (:data:`pyimgano.calibration.CALIBRATION_SOURCES`):
            ``auto`` (out-of-fold when the detector offers it, else holdout), ``holdout``,
            ``oof`` or ``kfold[:K]``.
        seed: seeds the validation split and the folds.

    Every argument is checked here, so a bad one fails before anything is fitted.
    """

    def __init__(
        self,
        detector: Any,
        settings: PipelineSettings | dict[str, Any] | None = None,
        *,
        params: dict[str, Any] | None = None,
        seed: int = 0,
        **fields: Any,
    ) -> None:
        if isinstance(detector, str):
            from pyimgano.factories import create_detector

            detector = create_detector(detector, **(params or {}))
        elif params:
            raise InvalidParams("params= goes with a detector name; set a detector object's parameters on it")
        self.detector = detector
        self.traits = detector_traits(detector)
        self.settings = PipelineSettings.of(settings, **fields)
        resolved = self.settings.resolve(self.traits)
        self.postprocess = resolved.postprocess
        self.image_threshold = make_strategy(resolved.image_threshold, "image_threshold")
        self.pixel_threshold = None if resolved.pixel_threshold is None else make_strategy(resolved.pixel_threshold)
        self.val_fraction = resolved.val_fraction
        self.calibration, self.folds = parse_calibration(resolved.calibration)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= SEED_MAX:
            raise InvalidParams(f"seed {seed!r}: must be a whole number from 0 to {SEED_MAX}")
        self.seed = int(seed)
        self.postprocessing: Any = None
        self.image_threshold_: float | None = None
        self.pixel_threshold_: float | None = None
        self.n_train_: int | None = None
        self.n_val_: int | None = None
        self.calibration_: dict[str, Any] = {}
        self.few_shot_: dict[str, Any] | None = None
        self.is_fitted_ = False

    @property
    def calibration_source(self) -> str:
        """``holdout``, ``oof`` or ``kfold``: how ``fit`` without ``val_images`` calibrates."""
        if self.calibration == "auto":
            return "oof" if self.traits.out_of_fold else "holdout"
        return self.calibration

    def expected_calibration_size(self, n_train: int | None, n_val: int | None = None) -> int | None:
        """How many normal calibration scores ``fit`` will have (None when unknown yet)."""
        if n_val is not None:
            return n_val
        if n_train is None:
            return None
        if self.calibration_source != "holdout":
            return n_train
        return max(1, int(math.floor(n_train * self.val_fraction + 0.5))) if self.val_fraction > 0 else 0

    # -- fitting ------------------------------------------------------------------------------
    @property
    def needs_validation(self) -> bool:
        """Whether calibration needs validation images (a fitted statistic or threshold)."""
        from pyimgano.postprocess.chain import PostProcessing
        from pyimgano.thresholds import FixedThreshold

        fitted = [s for s in (self.image_threshold, self.pixel_threshold) if s is not None]
        return PostProcessing.from_config(self.postprocess).needs_fit or any(
            not isinstance(s, FixedThreshold) for s in fitted)

    def check_calibration_inputs(self, labels: Any = None, masks: Any = None) -> None:
        """Strategies that need labelled anomalies (``f1``) get them: else one clear line."""
        for what, strategy in (("image_threshold", self.image_threshold), ("pixel_threshold", self.pixel_threshold)):
            if strategy is None or not strategy.needs_labels:
                continue
            y = None if labels is None else np.asarray(labels).astype(bool)
            if y is None or y.all() or not y.any():
                raise InvalidParams(
                    f"{what} {strategy.spec()!r} needs labelled validation images of both kinds (normal and "
                    "anomalous: val_labels=); with normal validation images only use quantile:Q or fixed:V"
                )
            if what == "pixel_threshold" and masks is None:
                raise InvalidParams(f"{what} {strategy.spec()!r} needs the defect masks of the anomalous "
                                    "validation images (val_masks=)")

    def check_fit(self, n_train: int | None, has_val_images: bool, val_labels: Any = None,
                  val_masks: Any = None) -> None:
        """What ``fit`` checks before reading any image: the validation split (``n_train``
        training images, None if unknown yet) and what the threshold strategies need."""
        if not has_val_images and (val_labels is not None or val_masks is not None):
            raise InvalidParams("val_labels/val_masks describe val_images; give val_images too")
        self.check_calibration_inputs(val_labels, val_masks)
        holdout = self.calibration_source == "holdout"
        if not has_val_images and holdout and self.val_fraction == 0 and self.needs_validation:
            raise InvalidParams(
                f"val_fraction 0 leaves an empty validation split, and image_threshold "
                f"{self.image_threshold.spec()!r}"
                + (f", pixel_threshold {self.pixel_threshold.spec()!r}" if self.pixel_threshold else "")
                + " or the post-processing statistics need one; give val_images, a val_fraction above 0, "
                "or fixed:V thresholds"
            )
        if n_train is not None and not has_val_images and holdout and self.val_fraction > 0:
            split_validation(n_train, self.val_fraction, self.seed, self.traits.min_train_images, self.traits.name)
        if n_train is not None and not has_val_images and self.calibration_source == "kfold":
            kept = n_train - math.ceil(n_train / min(self.folds, n_train))
            if kept < self.traits.min_train_images:
                raise InvalidParams(f"calibration kfold:{self.folds} on {n_train} training image(s) fits "
                                    f"{self.traits.name} on {kept}, which needs at least "
                                    f"{self.traits.min_train_images} (min_train_images); use fewer folds or more images")
        self.check_calibration_size(self.expected_calibration_size(n_train if not has_val_images else None))

    def check_calibration_size(self, n: int | None) -> None:
        """``fpr:ALPHA:strict`` with fewer calibration scores than ALPHA needs: one line."""
        from pyimgano.calibration import min_calibration, small_n_message
        from pyimgano.thresholds import FprThreshold

        strategy = self.image_threshold
        if n is None or not isinstance(strategy, FprThreshold) or strategy.small_n != "strict":
            return
        if n < min_calibration(strategy.alpha):
            raise InvalidParams(f"image_threshold {strategy.spec()!r}: {small_n_message(strategy.alpha, n)} "
                                f"({self.calibration_source} calibration); give more training images, a larger "
                                "rate, or drop :strict to accept a fitted tail")

    def fit(
        self,
        train_images: Any,
        val_images: Any = None,
        *,
        val_labels: Any = None,
        val_masks: Any = None,
        anomalies: Any = None,
        anomaly_masks: Any = None,
        few_shot: Any = None,
        anomaly_names: list[str] | None = None,
    ) -> Pipeline:
        """Fit the detector on ``train_images``, then calibrate on ``val_images`` (default:
        a seeded ``val_fraction`` of the training images, held out from the detector).

        ``val_labels`` / ``val_masks`` label some validation images as anomalous (needed by
        the ``f1`` strategies); statistics and quantiles use the normal ones only.

        ``anomalies`` (a few labelled defective images, with ``anomaly_masks`` where known)
        switch on few-shot mode (docs/few-shot.md): a detector that learns from anomalies is
        trained with them (unless ``few_shot={"train": False}``), then post-processing and
        both thresholds are tuned on the normal validation images and the anomalies
        (:meth:`calibrate_few_shot`; ``few_shot``: :class:`pyimgano.pipeline.fewshot.FewShotSettings`
        or a dict of it; ``anomaly_names``: how the record names them, default their paths).
        """
        from pyimgano.images import load_images

        sized = isinstance(train_images, (list, tuple))
        if anomalies is not None and (val_labels is not None or val_masks is not None):
            raise InvalidParams("give labelled defects as anomalies= (few-shot) or as val_labels=/val_masks=, not both")
        if anomalies is None and anomaly_masks is not None:
            raise InvalidParams("anomaly_masks describe anomalies; give anomalies too")
        refuse_overlaps(train_images, val_images, anomalies)
        if anomalies is not None:
            return self._fit_few_shot(train_images, val_images, anomalies, anomaly_masks, few_shot, anomaly_names)
        self.check_fit(len(train_images) if sized else None, val_images is not None, val_labels, val_masks)
        self.val_indices_: list[int] | None = None  # which training images were held out, if any
        need = self.traits.min_train_images
        source = "validation" if val_images is not None else self.calibration_source
        split = source == "holdout" and self.val_fraction > 0
        train = load_images(train_images)
        if not train:
            raise InvalidParams(f"Pipeline.fit: no training images for {self.traits.name}")
        val: list[np.ndarray] = []
        if val_images is not None:
            val = load_images(val_images)
            if not val:
                raise InvalidParams("val_images is empty: an empty validation split; give at least one image")
            if len(train) < need:
                raise InvalidParams(f"{len(train)} training image(s): {self.traits.name} needs at least {need} "
                                    "(min_train_images)")
        elif split:
            fit_idx, val_idx = split_validation(len(train), self.val_fraction, self.seed, need, self.traits.name)
            train, val = [train[i] for i in fit_idx], [train[i] for i in val_idx]
            self.val_indices_ = val_idx
        elif source in ("oof", "kfold"):
            return self._fit_out_of_fold(train, source)
        self.detector.fit(train)
        self.n_train_ = len(train)
        del train
        self.calibrate(val, val_labels, val_masks, source=source)
        return self

    def _fit_out_of_fold(self, train: list[np.ndarray], source: str) -> Pipeline:
        """Fit on every training image and calibrate on their out-of-fold scores and maps."""
        from pyimgano.calibration import cross_fit_scores

        if len(train) < self.traits.min_train_images:
            raise InvalidParams(f"{len(train)} training image(s): {self.traits.name} needs at least "
                                f"{self.traits.min_train_images} (min_train_images)")
        self.check_calibration_size(len(train))
        if source == "kfold":
            scores, maps = cross_fit_scores(self.detector, train, self.folds, self.seed)
            self.detector.fit(train)
        else:
            scores, maps = self.detector.fit_out_of_fold(train)
        self.n_train_ = len(train)
        del train
        self._calibrate_scored(scores, maps, None, None, source=source)
        return self

    def calibrate(self, images: Any, labels: Any = None, masks: Any = None, *, source: str = "validation"
                  ) -> Pipeline:
        """Fit the post-processing statistics and both thresholds on validation images (the
        detector stays as it is). ``labels`` (0/1) and ``masks`` describe anomalous ones;
        ``source`` is how the record names them."""
        from pyimgano.contracts import validate_labels
        from pyimgano.images import load_images

        self._check_detector_fitted()
        self.check_calibration_inputs(labels, masks)
        arrays = load_images(images)
        y = None
        if labels is not None:
            y = validate_labels(labels, len(arrays), component="validation labels").astype(bool)
        mask_list = None if masks is None else list(masks)
        if mask_list is not None and len(mask_list) != len(arrays):
            raise InvalidParams(f"val_masks: {len(mask_list)} masks for {len(arrays)} validation images")
        scores, maps = (self.detector.score(arrays) if arrays else (np.zeros(0), None))
        return self._calibrate_scored(scores, maps, y, mask_list, source)

    def _check_detector_fitted(self) -> None:
        if not getattr(self.detector, "is_fitted_", True):
            raise NotFittedError(f"{self.traits.name} is not fitted; call fit(train_images) first")

    @property
    def promise_(self) -> Any:
        """The image threshold's :class:`pyimgano.calibration.Promise` (None before calibration)."""
        from pyimgano.calibration import Promise

        data = (self.calibration_ or {}).get("image_promise")
        return None if not data else Promise(**data)

    def _calibrate_scored(self, scores: np.ndarray, maps: Any, y: np.ndarray | None, mask_list: list | None,
                          source: str = "validation") -> Pipeline:
        """:meth:`calibrate` once the validation images are scored."""
        from pyimgano.thresholds import FprThreshold

        n = len(scores)
        if n and maps is None and (self.postprocess or self.pixel_threshold is not None):
            raise InvalidParams(f"{self.traits.name} returned no anomaly maps; post-processing and a pixel "
                                "threshold need them")
        raw: Any = None
        if isinstance(maps, np.ndarray) and maps.ndim == 3:
            raw = maps.astype(np.float32, copy=False)  # one array stays one (post-processed into one more)
        elif maps is not None:
            raw = [np.asarray(m, dtype=np.float32) for m in maps]
        normal_maps = None if raw is None else [m for i, m in enumerate(raw) if y is None or not y[i]]
        self.postprocessing = fit_postprocessing(self.postprocess, normal_maps or [])
        processed = None if raw is None else self.postprocessing(raw)
        if not len(scores) and needs_data(self.image_threshold):
            raise InvalidParams(f"image_threshold {self.image_threshold.spec()!r} needs validation images; got none")
        fitted = self.image_threshold.fit(scores, y) if isinstance(self.image_threshold, FprThreshold) else None
        value = fitted.threshold if fitted is not None else self.image_threshold.compute(scores, y)
        self.image_threshold_ = finite(value, "image threshold")
        self.detector.threshold_ = self.image_threshold_  # the detector's own predict() agrees
        self.pixel_threshold_ = None
        if self.pixel_threshold is not None:
            if processed is None and needs_data(self.pixel_threshold):
                raise InvalidParams(f"pixel_threshold {self.pixel_threshold.spec()!r} needs validation images")
            self.pixel_threshold_ = pixel_threshold_value(self.pixel_threshold, [] if processed is None else processed, y, mask_list)
        self.n_val_ = n
        normal_scores = np.asarray(scores, dtype=np.float64)[~y] if y is not None else np.asarray(scores, np.float64)
        image_promise = promise(self.image_threshold, self.image_threshold_, normal_scores, source,
                                None if fitted is None else fitted.method)
        self.calibration_ = {
            "n_normal": int(n - (int(y.sum()) if y is not None else 0)),
            "n_anomalous": int(y.sum()) if y is not None else 0,
            "source": source,
            "heatmap_range": heatmap_range(
                [m for i, m in enumerate(processed) if y is None or not y[i]] if processed is not None else [],
                self.pixel_threshold_),
            "image_promise": image_promise.to_dict(),
            "notes": [fitted.note] if fitted is not None and fitted.note else [],
            # the normal calibration scores, sorted: p-values (pyimgano.calibration.p_values) and
            # the review page's histogram
            "normal_scores": sorted(float(v) for v in normal_scores),
            "image_size": None if raw is None or not len(raw) else list(raw[0].shape[:2]),
        }
        self.few_shot_ = None
        self.is_fitted_ = True
        return self

    def copy(self) -> Pipeline:
        """A pipeline sharing this one's detector, with calibration of its own (the benchmark
        calibrates one detector zero-shot and few-shot)."""
        other = copy.copy(self)
        other.calibration_ = dict(self.calibration_)
        other.few_shot_ = None if self.few_shot_ is None else dict(self.few_shot_)
        return other

    # -- prediction ----------------------------------------------------------------------------
    def postprocess_maps(self, maps: Any) -> list[np.ndarray]:
        """Post-process raw detector maps (a list of H x W arrays, each its own size)."""
        self._check_fitted()
        return [np.asarray(m, dtype=np.float32) for m in self.postprocessing([np.asarray(m) for m in maps])]

    def predict(self, images: Any) -> PipelineOutput:
        """Scores, labels, post-processed maps, masks (and ``.regions``) of the images."""
        import time

        self._check_fitted()
        scores, maps = self.detector.score(images)
        started = time.perf_counter()
        processed = None if maps is None else self.postprocess_maps(list(maps))
        postprocess_s = time.perf_counter() - started
        labels = None if self.image_threshold_ is None else (scores > self.image_threshold_).astype(np.int64)
        masks = None
        if processed is not None and self.pixel_threshold_ is not None:
            masks = [m > self.pixel_threshold_ for m in processed]
        normal = (self.calibration_ or {}).get("normal_scores")
        return PipelineOutput(scores, labels, processed, masks, self.image_threshold_, self.pixel_threshold_,
                              postprocess_s, None if not normal else p_values(normal, scores))

    def _check_fitted(self) -> None:
        if not self.is_fitted_:
            raise NotFittedError(f"the pipeline of {self.traits.name} is not fitted; call fit(train_images) first")

    # -- persistence --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The content of ``pyimgano-pipeline.json``: every fitted statistic and threshold."""
        from pyimgano import __version__
        from pyimgano.detector import _plugin_version

        self._check_fitted()
        plugin = getattr(self.detector, "plugin", None)
        versions = {"pyimgano": __version__}
        if plugin:
            versions[plugin] = _plugin_version(plugin)
        return {
            "format": PIPELINE_FORMAT,
            "detector": self.traits.name,
            "postprocess": self.postprocessing.to_config(include_state=True),
            "image_threshold": {**self.image_threshold.to_dict(), "value": self.image_threshold_},
            "pixel_threshold": None if self.pixel_threshold is None
            else {**self.pixel_threshold.to_dict(), "value": self.pixel_threshold_},
            "n_train": self.n_train_,
            "n_val": self.n_val_,
            "val_fraction": self.val_fraction,
            "seed": self.seed,
            "calibration_setting": self.calibration if self.calibration != "kfold" else f"kfold:{self.folds}",
            "calibration": self.calibration_,
            **({"few_shot": self.few_shot_} if self.few_shot_ is not None else {}),
            "versions": versions,
        }

    def save(self, directory: str | os.PathLike, *, extra_files: dict[str, str] | None = None) -> Path:
        """Write the pipeline folder atomically (the old folder stays until the new one is whole).

        ``extra_files``: more text files for the folder (``{"training.json": ...}``).
        A path that is a file, or a folder of other files, is refused (:class:`OutputExists`).
        """
        from pyimgano.atomic import replacing_dir
        from pyimgano.detector import check_model_output

        self._check_fitted()
        directory = Path(directory)
        check_model_output(directory)
        content = json.dumps(self.to_dict(), indent=2) + "\n"
        self.detector.threshold_ = self.image_threshold_  # pyimgano-model.json's threshold: the image threshold
        with replacing_dir(directory) as tmp:
            self.detector.save(tmp)
            (tmp / PIPELINE_FILE).write_text(content)
            for name, text in (extra_files or {}).items():
                (tmp / name).write_text(text)
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Pipeline:
        """Load a pipeline folder, or a plain detector folder (see the module docstring)."""
        return load(directory)

    def __repr__(self) -> str:
        pixel = None if self.pixel_threshold is None else self.pixel_threshold.spec()
        return (f"Pipeline({self.detector!r}, postprocess={self.postprocess!r}, "
                f"image_threshold={self.image_threshold.spec()!r}, pixel_threshold={pixel!r}, "
                f"val_fraction={self.val_fraction}, seed={self.seed}, calibration={self.calibration!r})")


def _loadable_calibration(data: dict[str, Any], detector: Any) -> str:
    """The saved calibration setting, or ``auto`` when it asks for what the loaded detector lacks."""
    setting = str(data.get("calibration_setting") or DEFAULT_CALIBRATION)
    if setting == "oof" and not getattr(detector, "supports_out_of_fold", False):
        return DEFAULT_CALIBRATION
    return setting


def read_pipeline_file(path: Path, detector: Any) -> dict[str, Any]:
    """The checked content of ``pyimgano-pipeline.json`` (:class:`~pyimgano.pipeline.record.PipelineFile`)
    of ``detector``'s folder; one :class:`ModelLoadError` line naming the file and field otherwise."""
    from pydantic import ValidationError

    from pyimgano.errors import validation_problems
    from pyimgano.modelfile import MODEL_CONFIG_FILE, read_json_object
    from pyimgano.pipeline.record import PipelineFile

    raw = read_json_object(path, "pipeline file")
    if raw.get("format") != PIPELINE_FORMAT:
        raise ModelLoadError(f"{path}: pipeline format {raw.get('format')!r} is not supported "
                             f"(this pyimgano reads format {PIPELINE_FORMAT})")
    try:
        record = PipelineFile.model_validate(raw)
    except ValidationError as exc:
        raise ModelLoadError(f"{path}: invalid pipeline file: {validation_problems(exc)}") from None
    if record.detector != detector.component:
        raise ModelLoadError(f"{path}: detector {record.detector!r} is not the model's {detector.component!r} "
                             f"({MODEL_CONFIG_FILE}): was it copied from another model?")
    saved = detector.threshold_  # save() writes the image threshold into both files
    if saved is not None and not math.isclose(saved, record.image_threshold.value, rel_tol=1e-12, abs_tol=0.0):
        raise ModelLoadError(f"{path}: image_threshold.value {record.image_threshold.value!r} is not the threshold "
                             f"{saved!r} of {MODEL_CONFIG_FILE}: one of the two files was edited")
    return record.model_dump() | {"calibration": record.calibration.model_dump(exclude_unset=True)}


def load(directory: str | os.PathLike) -> Pipeline:
    """Load a saved pipeline (``pyimgano.load``); a plain detector folder loads as a pipeline
    with no post-processing and its threshold as both image and pixel threshold."""
    from pyimgano.detector import load_detector
    from pyimgano.thresholds import FixedThreshold

    directory = Path(directory)
    detector = load_detector(directory)
    path = directory / PIPELINE_FILE
    if not path.exists():  # a plain detector folder: predicts as it did before pipelines
        threshold = detector.threshold_
        if threshold is not None and not math.isfinite(threshold):
            raise ModelLoadError(f"{directory / 'pyimgano-model.json'}: threshold {threshold} is not a finite number")
        pipe = Pipeline(detector, postprocess=[], pixel_threshold=None, val_fraction=0.0)
        pipe.postprocessing = fit_postprocessing([], [])
        if threshold is not None:
            pipe.image_threshold = FixedThreshold(value=threshold)
            if pipe.traits.pixel_maps:
                pipe.pixel_threshold, pipe.pixel_threshold_ = FixedThreshold(value=threshold), threshold
        pipe.image_threshold_ = threshold
        pipe.calibration_ = {"legacy": True, "heatmap_range": None}
        pipe.is_fitted_ = True
        return pipe
    data = read_pipeline_file(path, detector)
    # the strategy with its fitted value; make_strategy keeps "value" for fixed:V only
    image, pixel = dict(data["image_threshold"]), data["pixel_threshold"]
    image_value = finite(float(image["value"]), "image threshold")
    pixel_value = None
    if pixel is not None:
        pixel = dict(pixel)
        pixel_value = finite(float(pixel["value"]), "pixel threshold")
    steps = data["postprocess"]
    try:
        pipe = Pipeline(detector, postprocess=[{k: v for k, v in s.items() if k != "state"} for s in steps],
                        image_threshold=image, pixel_threshold=pixel, val_fraction=data["val_fraction"],
                        seed=data["seed"], calibration=_loadable_calibration(data, detector))
        from pyimgano.postprocess.chain import PostProcessing

        pipe.postprocessing = PostProcessing.from_config(steps)
    except PyimganoError as exc:
        raise ModelLoadError(f"{path}: {exc}") from None
    if pipe.postprocessing.needs_fit and not all(
            s.get("state") for s, (_, step) in zip(steps, pipe.postprocessing.steps)
            if getattr(step, "needs_fit", False)):
        raise ModelLoadError(f"{path}: a post-processing step that needs statistics has none saved")
    pipe.image_threshold_ = image_value
    pipe.pixel_threshold_ = pixel_value
    pipe.n_train_ = data.get("n_train")
    pipe.n_val_ = data.get("n_val")
    pipe.calibration_ = {key: list(value) if isinstance(value, tuple) else value
                         for key, value in data["calibration"].items()}
    pipe.few_shot_ = data["few_shot"]
    pipe.is_fitted_ = True
    return pipe


# Why each pair of sets must not share an image (pyimgano.overlap): the fit refuses it.
_OVERLAP_HARM = {
    ("training images", "validation images"): "thresholds fitted on images the detector learnt reject more good parts "
                                              "than they promise",
    ("training images", "defect images"): "the detector would learn those defects as normal",
    ("validation images", "defect images"): "one image cannot be both a good and a defective example",
}


def refuse_overlaps(train_images: Any, val_images: Any = None, anomalies: Any = None) -> None:
    """Refuse (:class:`InvalidParams`, one line) training, validation and defect images that
    are identical (by content hash, :mod:`pyimgano.overlap`)."""
    from pyimgano.overlap import find_overlaps

    overlaps = find_overlaps({"training images": train_images, "validation images": val_images,
                              "defect images": anomalies})
    if overlaps:
        problems = "; ".join(f"{o.describe()}: {_OVERLAP_HARM[(o.first, o.second)]}" for o in overlaps)
        raise InvalidParams(f"{problems}; give each set its own images")

