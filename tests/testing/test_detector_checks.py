"""The detector checks: a conforming detector passes, each broken one is caught by name."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pytest
from broken_detectors import BROKEN, Float64Maps, GoodDetector, NaNScores, Unseeded, WrongMapShape
from pydantic import BaseModel, ConfigDict, Field

from pyimgano import Detector
from pyimgano.testing import (
    CheckFailed,
    check_detector,
    check_names,
    detector_target,
    make_check_images,
    parametrize_with_checks,
)
from pyimgano.testing.detectors import _auroc, check_map_shape_and_dtype


def _by_check(results):
    return {r.check: r for r in results}


def test_conforming_detector_passes_every_check():
    results = check_detector(GoodDetector)
    assert [r.check for r in results] == check_names()
    status = {r.check: r.status for r in results}
    assert status.pop("check_params_match_spec") == "not applicable"  # only for registered detectors
    assert status.pop("check_out_of_fold") == "not applicable"  # only where capabilities.out_of_fold
    assert set(status.values()) == {"passed"}, [r for r in results if r.status != "passed"]


@pytest.mark.parametrize("what", sorted(BROKEN))
def test_broken_detector_is_caught_by_the_right_check(what):
    factory, check = BROKEN[what]
    capabilities = {"save_load": False} if factory is Float64Maps else None
    results = _by_check(check_detector(factory, capabilities=capabilities))
    assert results[check].status == "failed", (what, results[check])
    assert results[check].message.startswith(f"{check}: "), results[check].message


def test_failure_messages_say_what_is_wrong():
    msgs = {check: _by_check(check_detector(factory))[check].message for factory, check in
            (BROKEN["wrong map shape"], BROKEN["NaN scores"], BROKEN["inverted scores"],
             BROKEN["non-deterministic with a seed"], BROKEN["save/load mismatch"])}
    assert "(8, 32, 32)" in msgs["check_map_shape_and_dtype"] and "(8, 64, 64)" in msgs["check_map_shape_and_dtype"]
    assert "non-finite" in msgs["check_scores_finite_one_per_image"]
    assert "AUROC 0.00" in msgs["check_defect_scores_higher"]
    assert "different scores" in msgs["check_deterministic_with_seed"]
    assert "after save/load" in msgs["check_save_load_round_trip"]


def test_a_broken_detector_fails_only_where_it_is_broken():
    results = check_detector(NaNScores)
    failed = {r.check for r in results if r.failed}
    # every check that scores the NaN image fails; fitting, saving and the empty-set check do not
    assert "check_fit_returns_self" not in failed and "check_empty_training_set_rejected" not in failed
    assert "check_scores_finite_one_per_image" in failed


def test_known_failures_are_reported_with_their_reason_not_skipped():
    results = _by_check(check_detector(WrongMapShape, known_failures={
        "check_map_shape_and_dtype": "maps are at 32x32, fixed in 2.0",
        "check_use_before_fit_raises": "declared but not failing",
    }))
    known = results["check_map_shape_and_dtype"]
    assert known.status == "known failure" and not known.failed
    assert "fixed in 2.0" in known.message and "(8, 64, 64)" in known.message
    fixed = results["check_use_before_fit_raises"]
    assert fixed.status == "fixed" and "remove the declaration" in fixed.message


def test_unknown_known_failure_name_is_an_error():
    with pytest.raises(ValueError, match="check_does_not_exist"):
        check_detector(GoodDetector, known_failures={"check_does_not_exist": "typo"})


def test_capabilities_decide_which_checks_apply():
    results = _by_check(check_detector(Unseeded, capabilities={"deterministic": False, "pixel_maps": False}))
    for check in ("check_deterministic_with_seed", "check_map_shape_and_dtype", "check_maps_locate_defect"):
        assert results[check].status == "not applicable"
        assert "capabilities." in results[check].message
    assert all(r.status in ("passed", "not applicable") for r in results.values())


def test_min_train_images_is_enforced_by_the_empty_set_check():
    results = _by_check(check_detector(GoodDetector, capabilities={"min_train_images": 3}))
    failed = results["check_empty_training_set_rejected"]
    assert failed.status == "failed" and "2 training images" in failed.message


def test_checks_are_plain_functions_raising_check_failed():
    target = detector_target(WrongMapShape)
    with pytest.raises(CheckFailed, match=r"^check_map_shape_and_dtype: .*\(8, 64, 64\)") as info:
        check_map_shape_and_dtype(target)
    assert isinstance(info.value, AssertionError) and info.value.check == "check_map_shape_and_dtype"


def test_selected_checks_only():
    results = check_detector(GoodDetector, checks=["check_fit_returns_self", "check_unseen_image_size"])
    assert [r.check for r in results] == ["check_fit_returns_self", "check_unseen_image_size"]


def test_the_kit_is_fast_and_its_images_have_an_obvious_defect():
    images = make_check_images()
    assert images.train[0].shape == (64, 64, 3) and images.train[0].dtype == np.uint8
    for img, mask in zip(images.test_defect, images.test_masks):
        assert mask.sum() > 20 and (img[mask] == 255).all()
    assert _auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.2])) == pytest.approx(0.875)


def test_parametrize_with_checks_ids_and_marks():
    mark = parametrize_with_checks(
        [detector_target(GoodDetector, capabilities={"deterministic": False})],
        known_failures={"check_unseen_image_size": "reason here"},
    )
    params = mark.args[1]
    ids = [p.id for p in params]
    assert ids == [f"GoodDetector-{name}" for name in check_names()]
    marks = {p.id.split("-", 1)[1]: [m.name for m in p.marks] for p in params}
    assert marks.pop("check_params_match_spec") == ["skip"]
    assert marks["check_deterministic_with_seed"] == ["skip"]
    assert marks["check_unseen_image_size"] == ["xfail"]
    assert marks["check_fit_returns_self"] == []


@parametrize_with_checks([GoodDetector, detector_target(GoodDetector, params={"size": 16})])
def test_kit_through_pytest(component, check):
    check(component)


class _FitRaises(GoodDetector):
    def _fit(self, images):
        raise OSError("weights file x.pth is missing; pass weights=FILE")


def test_a_failing_fit_fails_every_check_that_needs_it_once_in_full():
    results = check_detector(_FitRaises)
    first = _by_check(results)["check_fit_returns_self"]
    assert first.failed and "OSError: weights file x.pth is missing" in first.message
    later = _by_check(results)["check_save_load_round_trip"]
    assert later.failed and "in full under the first check run" in later.message
    assert _by_check(results)["check_empty_training_set_rejected"].status == "passed"



class _Mixed(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = "x"
    size: int = Field(32, ge=8, le=32)
    mode: str | None = None
    kind: Literal["a", "b"] = "a"
    smooth: bool = True


def test_set_params_check_picks_a_parameter_from_the_params_model():
    from pyimgano.testing.detectors import _other_value

    assert _other_value(_Mixed, {}) == ("smooth", False)  # flags first
    assert _other_value(_Mixed, {"smooth": False}) == ("smooth", True)

    class Choices(BaseModel):
        size: int = Field(32, ge=8, le=32)
        kind: Literal["a", "b"] = "a"

    assert _other_value(Choices, {}) == ("kind", "b")  # then choices

    class Bounded(BaseModel):
        name: str = "x"
        size: int = Field(32, ge=8, le=32)

    assert _other_value(Bounded, {}) == ("size", 31)  # then numbers; le=32 rules out 33


def test_set_params_check_is_not_applicable_without_a_params_model_or_a_changeable_parameter():
    class Text(BaseModel):
        model_config = ConfigDict(extra="forbid")
        name: str = "x"
        mode: str | None = None

    class OnlyText(GoodDetector):
        params_model = Text

    results = _by_check(check_detector(lambda: Detector(size=32), checks=["check_set_params_round_trip"]))
    assert results["check_set_params_round_trip"].status == "not applicable"
    assert "no params model" in results["check_set_params_round_trip"].message
    results = _by_check(check_detector(OnlyText, checks=["check_set_params_round_trip"]))
    assert results["check_set_params_round_trip"].status == "not applicable"
    assert "no parameter of Text" in results["check_set_params_round_trip"].message


class LeaveOneOutMean(GoodDetector):
    """Out-of-fold: each training image against the mean of the others (exact leave-one-out)."""

    supports_out_of_fold = True

    def _fit_out_of_fold(self, images):
        grey = np.array([_gray_of(img, self.size) for img in images])
        self.mean_ = grey.mean(axis=0)
        out = []
        for i in range(len(images)):
            others = (grey.sum(axis=0) - grey[i]) / (len(images) - 1)
            out.append(np.abs(grey[i] - others))
        return np.array([h.max() for h in out]), [_upsample_of(h, *img.shape[:2]) for h, img in zip(out, images)]


class OutOfFoldFitsSomethingElse(LeaveOneOutMean):
    def _fit_out_of_fold(self, images):
        scores, maps = super()._fit_out_of_fold(images)
        self.mean_ = self.mean_ + 0.5  # not what fit() would have learnt
        return scores, maps


def _gray_of(img, size):
    from broken_detectors import _gray

    return _gray(img, size)


def _upsample_of(h, height, width):
    from broken_detectors import _upsample

    return _upsample(h, height, width)


def test_out_of_fold_is_checked_only_where_declared_and_catches_a_different_fit():
    declared = {"out_of_fold": True}
    assert _by_check(check_detector(GoodDetector))["check_out_of_fold"].status == "not applicable"
    assert _by_check(check_detector(LeaveOneOutMean, capabilities=declared))["check_out_of_fold"].status == "passed"
    failed = _by_check(check_detector(OutOfFoldFitsSomethingElse, capabilities=declared))["check_out_of_fold"]
    assert failed.status == "failed" and "differently from one fitted with fit()" in failed.message
    lying = _by_check(check_detector(GoodDetector, capabilities=declared))["check_out_of_fold"]
    assert lying.status == "failed" and "does not implement _fit_out_of_fold" in lying.message
