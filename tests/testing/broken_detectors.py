"""Detectors for testing the kit: one that conforms, and ones broken in one way each."""

from __future__ import annotations

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from pyimgano import Detector, StateArray
from pyimgano.preprocess import resize_image, resize_map


def _gray(img: np.ndarray, size: int) -> np.ndarray:
    grey = np.asarray(Image.fromarray(img).convert("L"))
    return resize_image(grey, size).astype(np.float32) / 255


def _upsample(heatmap: np.ndarray, height: int, width: int) -> np.ndarray:
    return resize_map(heatmap, (height, width))


class GoodParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    size: int = Field(32, ge=8, le=256, description="side of the grey image compared with the mean")
    squared: bool = Field(False, description="square the differences (a parameter the state does not depend on)")


class GoodDetector(Detector):
    """Absolute difference from the mean training image (grey, at a fixed size)."""

    params_model = GoodParams
    state_arrays = {"mean": StateArray("float", ("size", "size"))}

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self.mean_: np.ndarray | None = None

    def _fit(self, images):
        self.mean_ = np.mean([_gray(img, self.size) for img in images], axis=0)

    def _heatmap(self, img):
        diff = np.abs(_gray(img, self.size) - self.mean_)
        return diff * diff if self.squared else diff

    def _score(self, images):
        heatmaps = [self._heatmap(img) for img in images]
        scores = np.array([h.max() for h in heatmaps], dtype=np.float64)
        return scores, [_upsample(h, *img.shape[:2]) for h, img in zip(heatmaps, images)]

    def _get_state(self):
        return {"mean": self.mean_}

    def _set_state(self, state):
        self.mean_ = state["mean"]


class WrongMapShape(GoodDetector):
    """Returns maps at its internal resolution, not the input's."""

    def _score(self, images):
        heatmaps = [self._heatmap(img) for img in images]
        return np.array([h.max() for h in heatmaps]), np.stack(heatmaps)


class NaNScores(GoodDetector):
    def _score(self, images):
        scores, maps = super()._score(images)
        scores[0] = np.nan
        return scores, maps


class InvertedScores(GoodDetector):
    """Lower score = more anomalous (and maps likewise)."""

    def _score(self, images):
        scores, maps = super()._score(images)
        return -scores, [-m for m in maps]


class Unseeded(GoodDetector):
    """Adds noise from a generator that ignores every seed."""

    state_arrays = {**GoodDetector.state_arrays, "offset": StateArray("float")}

    def _fit(self, images):
        super()._fit(images)
        self.offset_ = float(np.random.default_rng().uniform(0, 1))

    def _score(self, images):
        scores, maps = super()._score(images)
        return scores + self.offset_, maps

    def _get_state(self):
        return {"mean": self.mean_, "offset": np.float64(self.offset_)}

    def _set_state(self, state):
        self.mean_, self.offset_ = state["mean"], float(state["offset"])


class ForgetsOnSave(GoodDetector):
    """Saves a state that does not reproduce its scores."""

    def _get_state(self):
        return {"mean": self.mean_ * 0.5}


class MisdeclaredState(GoodDetector):
    """Declares a colour mean, saves a grey one: save refuses the state."""

    state_arrays = {"mean": StateArray("float", ("size", "size", 3))}


class AcceptsEmptyTraining(GoodDetector):
    """Skips the base class's empty-set check and fits on nothing."""

    def fit(self, images, *args, **kwargs):
        self.mean_ = np.zeros((self.size, self.size), dtype=np.float32)
        self.is_fitted_ = True
        return self


class FitReturnsNone(GoodDetector):
    def fit(self, images, *args, **kwargs):
        super().fit(images, *args, **kwargs)
        return None


class RGBOnly(GoodDetector):
    """Crashes on anything but 3-channel input (bypasses the base class's conversion)."""

    def decision_function(self, images):
        for img in images:
            if np.asarray(img).ndim != 3 or np.asarray(img).shape[2] != 3:
                raise TypeError("expected RGB")
        return super().decision_function(images)


class FixedSizeOnly(GoodDetector):
    """Returns maps at the training size whatever the input size."""

    def _score(self, images):
        scores, _ = super()._score(images)
        return scores, [_upsample(self._heatmap(img), 64, 64) for img in images]


class PredictIgnoresThreshold(GoodDetector):
    def predict(self, images):
        return np.ones(len(self.decision_function(images)), dtype=np.int64)


class ScoresBeforeFit(GoodDetector):
    """Skips the fitted check: an unfitted detector scores against an all-zero mean."""

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self.mean_ = np.zeros((self.size, self.size), dtype=np.float32)

    def _check_fitted(self):
        pass


class StaleParams(GoodDetector):
    """get_params returns a copy taken at construction, so set_params is lost on save."""

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self._given = super().get_params()

    def get_params(self, deep=True):
        return dict(self._given)


class Float64Maps:
    """Duck-typed (no pyimgano.Detector): returns float64 maps, which the contract forbids."""

    def __init__(self, size: int = 32):
        self.inner = GoodDetector(size=size)
        self.threshold_ = None

    def fit(self, images):
        self.inner.fit(images)
        return self

    def decision_function(self, images):
        return self.inner.decision_function(images)

    def predict_anomaly_map(self, images):
        return self.inner.predict_anomaly_map(images).astype(np.float64)

    def predict(self, images):
        return (self.decision_function(images) > self.threshold_).astype(int)


# check that catches each broken detector
BROKEN = {
    "wrong map shape": (WrongMapShape, "check_map_shape_and_dtype"),
    "NaN scores": (NaNScores, "check_scores_finite_one_per_image"),
    "inverted scores": (InvertedScores, "check_defect_scores_higher"),
    "non-deterministic with a seed": (Unseeded, "check_deterministic_with_seed"),
    "save/load mismatch": (ForgetsOnSave, "check_save_load_round_trip"),
    "accepts an empty training set": (AcceptsEmptyTraining, "check_empty_training_set_rejected"),
    "fit returns None": (FitReturnsNone, "check_fit_returns_self"),
    "crashes on grayscale": (RGBOnly, "check_grayscale_and_rgba_input"),
    "maps at a fixed size": (FixedSizeOnly, "check_unseen_image_size"),
    "predict ignores threshold_": (PredictIgnoresThreshold, "check_predict_agrees_with_threshold"),
    "scores before fit": (ScoresBeforeFit, "check_use_before_fit_raises"),
    "set_params lost on save": (StaleParams, "check_set_params_round_trip"),
    "float64 maps": (Float64Maps, "check_map_shape_and_dtype"),
    "state unlike its declaration": (MisdeclaredState, "check_save_load_round_trip"),
}
