"""pyimgano.calibration: conformal rank, the Clopper-Pearson bound, p-values, fpr:ALPHA."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest

from pyimgano import InvalidParams
from pyimgano.calibration import (
    clopper_pearson_upper,
    conformal_rank,
    cross_fit_scores,
    fold_indices,
    fpr_threshold,
    min_calibration,
    p_values,
    parse_calibration,
    promise,
)
from pyimgano.thresholds import FprThreshold, make_strategy


@pytest.mark.parametrize("n, alpha, rank", [(19, 0.05, 19), (99, 0.01, 99), (100, 0.05, 96), (25, 0.1, 24),
                                            (18, 0.05, None), (98, 0.01, None)])
def test_the_conformal_rank_is_ceil_n_plus_one_times_one_minus_alpha(n, alpha, rank):
    assert conformal_rank(n, alpha) == rank
    assert (conformal_rank(n, alpha) is None) == (n < min_calibration(alpha))


def test_min_calibration_is_the_first_n_with_a_rank():
    for alpha in (0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.003):
        m = min_calibration(alpha)
        assert conformal_rank(m, alpha) is not None and conformal_rank(m - 1, alpha) is None


def test_the_conformal_threshold_keeps_its_rate_over_many_draws():
    # exchangeable normal scores: the share of new good scores above the threshold is <= alpha on average
    rng = np.random.default_rng(0)
    alpha, n = 0.1, 30
    rates = []
    for _ in range(400):
        cal, new = rng.normal(size=n), rng.normal(size=2000)
        rates.append(float(np.mean(new > fpr_threshold(cal, alpha).threshold)))
    assert np.mean(rates) <= alpha + 0.01
    assert np.mean(rates) > alpha - 0.04  # and not far below: the rank is tight


def test_clopper_pearson_agrees_with_scipy_binomtest_one_sided():
    for exceed, n in [(0, 25), (1, 25), (3, 100), (10, 120)]:
        ref = binomtest(exceed, n, alternative="less").proportion_ci(0.95, method="exact").high
        assert clopper_pearson_upper(exceed, n) == pytest.approx(ref, rel=1e-9)
    assert clopper_pearson_upper(0, 25) == pytest.approx(1 - 0.05 ** (1 / 25))
    assert clopper_pearson_upper(5, 5) == 1.0 and clopper_pearson_upper(0, 0) is None


def test_p_values_count_calibration_scores_at_or_above():
    cal = [1.0, 2.0, 3.0, 3.0]
    np.testing.assert_allclose(p_values(cal, [0.0, 2.0, 3.0, 3.5]), [5 / 5, 4 / 5, 3 / 5, 1 / 5])


def test_too_few_scores_fall_back_to_a_fitted_tail_and_say_so_or_refuse():
    scores = np.linspace(1.0, 2.0, 10)
    fit = fpr_threshold(scores, 0.01)
    assert fit.method == "tail" and fit.threshold >= scores.max()
    assert fit.note.startswith("fpr:0.01 needs at least 99 normal calibration scores for a conformal threshold; "
                               "10 are available") and "\n" not in fit.note
    # u + b ln(p / alpha): median 1.5, mean excess over it, 5 of 10 above
    above = scores[scores > 1.5]
    assert fit.threshold == pytest.approx(1.5 + np.mean(above - 1.5) * math.log(0.5 / 0.01))
    with pytest.raises(InvalidParams, match="fpr:0.01 needs at least 99"):
        fpr_threshold(scores, 0.01, "strict")
    exact = fpr_threshold(np.arange(100.0), 0.05)
    assert (exact.method, exact.rank, exact.threshold) == ("conformal", 96, 95.0)


@pytest.mark.parametrize("spec, message", [
    ("fpr:0", "alpha: Input should be greater than 0"),
    ("fpr:1", "alpha: Input should be less than 1"),
    ("fpr:1.5", "alpha: Input should be less than 1"),
    ("fpr:", "fpr needs a target rate"),
    ("fpr:abc", "'abc' is not a number"),
    ("fpr:0.01:loose", "'loose' is not a rule"),
])
def test_bad_fpr_specs_are_one_line_errors(spec, message):
    with pytest.raises(InvalidParams, match=message) as info:
        make_strategy(spec, "image_threshold")
    assert "\n" not in str(info.value)


def test_fpr_specs_round_trip():
    assert make_strategy("fpr:0.01") == FprThreshold(alpha=0.01)
    assert make_strategy("fpr:0.05:strict").spec() == "fpr:0.05:strict"
    assert make_strategy(make_strategy("fpr:0.02").to_dict()) == FprThreshold(alpha=0.02)


def test_the_promise_counts_scores_above_the_threshold():
    p = promise(make_strategy("fpr:0.05"), 95.0, np.arange(100.0), "oof", "conformal")
    assert (p.target, p.n, p.exceed, p.source) == (0.05, 100, 4, "oof")
    assert p.upper == pytest.approx(clopper_pearson_upper(4, 100))
    assert promise(make_strategy("quantile:0.99"), 0.0, [1.0], "holdout").target == pytest.approx(0.01)
    assert promise(make_strategy("fixed:1"), 0.0, [1.0], "holdout").target is None


@pytest.mark.parametrize("value, expected", [("auto", ("auto", 5)), ("oof", ("oof", 5)), ("KFold:3", ("kfold", 3)),
                                             ("holdout", ("holdout", 5))])
def test_calibration_settings_parse(value, expected):
    assert parse_calibration(value) == expected


@pytest.mark.parametrize("value", ["loo", "kfold:1", "kfold:x", "oof:2", 3])
def test_bad_calibration_settings_are_one_line_errors(value):
    with pytest.raises(InvalidParams, match="calibration"):
        parse_calibration(value)


class _Mean:
    """A detector scoring an image by its distance to the mean training image (no registry)."""

    def __init__(self, **params):
        self.params = params

    def get_params(self):
        return dict(self.params)

    def fit(self, images):
        self.mean_ = np.mean([np.asarray(i, float) for i in images], axis=0)
        return self

    def score(self, images):
        d = [np.abs(np.asarray(i, float) - self.mean_).mean(-1) for i in images]
        return np.array([m.max() for m in d]), [m.astype(np.float32) for m in d]


def test_cross_fitting_scores_each_fold_with_a_detector_that_never_saw_it():
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, (6, 6, 3)).astype(np.uint8) for _ in range(10)]
    scores, maps = cross_fit_scores(_Mean(), images, folds=5, seed=3)
    for part in fold_indices(10, 5, 3):
        rest = [images[i] for i in range(10) if i not in part]
        expected, _ = _Mean().fit(rest).score([images[i] for i in part])
        np.testing.assert_allclose(scores[part], expected)
    assert len(maps) == 10 and all(m.shape == (6, 6) for m in maps)
    assert sorted(np.concatenate(fold_indices(10, 5, 3)).tolist()) == list(range(10))
