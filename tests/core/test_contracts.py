"""Output contracts: every violation names plugin, component, field, expected and actual."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from pyimgano import AnomalyMaps, ContractViolation, DatasetInfo, DatasetSample, ImageScores
from pyimgano.contracts import validate_labels, validate_maps, validate_scores


def test_scores_ok_and_converted_to_float64():
    out = validate_scores(np.array([1, 2, 3], dtype=np.float32), 3)
    assert out.dtype == np.float64 and out.tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    "scores, n, fragment",
    [
        (np.zeros((2, 2)), 4, "of shape (2, 2)"),
        (np.zeros(3), 4, "expected 4 scores"),
        (np.array([0.1, np.nan, 0.3]), 3, "non-finite"),
        (np.array([0.1, np.inf]), 2, "non-finite"),
        (np.array(["a", "b"]), 2, "dtype"),
    ],
)
def test_score_violations(scores, n, fragment):
    with pytest.raises(ContractViolation) as info:
        validate_scores(scores, n, component="faiss:patchcore", plugin="faiss")
    err = info.value
    assert fragment in str(err)
    assert str(err).startswith("faiss:patchcore returned image scores")
    assert err.plugin == "faiss" and err.component == "faiss:patchcore" and err.field == "image scores"
    assert err.expected and err.actual


def test_maps_wrong_shape_message_matches_design():
    with pytest.raises(ContractViolation) as info:
        validate_maps(np.zeros((8, 64, 64), np.float32), [(256, 256)] * 8, component="faiss:patchcore", plugin="faiss")
    assert str(info.value) == (
        "faiss:patchcore returned anomaly maps of shape (8, 64, 64); expected (8, 256, 256)"
    )


def test_maps_variable_sizes_and_dtype():
    maps = [np.zeros((4, 5)), np.ones((6, 7), np.float64)]
    out = validate_maps(maps, [(4, 5), (6, 7)])
    assert isinstance(out, list) and out[1].dtype == np.float32 and out[1].shape == (6, 7)
    same = validate_maps([np.zeros((4, 5))] * 3, [(4, 5)] * 3)
    assert isinstance(same, np.ndarray) and same.shape == (3, 4, 5) and same.dtype == np.float32
    with pytest.raises(ContractViolation, match="map 1 of shape"):
        validate_maps(maps, [(4, 5), (7, 6)])
    with pytest.raises(ContractViolation, match="non-finite"):
        validate_maps(np.full((1, 2, 2), np.nan), [(2, 2)])
    with pytest.raises(ContractViolation, match="2 maps"):
        validate_maps(np.zeros((1, 2, 2)), [(2, 2), (2, 2)])


def test_labels():
    assert validate_labels([0, 1, 1]).tolist() == [0, 1, 1]
    assert validate_labels(np.array([True, False])).tolist() == [1, 0]
    with pytest.raises(ContractViolation, match="values 0 or 1"):
        validate_labels([0, 2])
    with pytest.raises(ContractViolation, match="non-integer"):
        validate_labels([0.5, 1.0])


def test_pydantic_models_wrap_the_same_checks():
    scores = ImageScores(values=[0.5, 1.5], n_images=2)
    assert scores.values.dtype == np.float64
    maps = AnomalyMaps(values=np.zeros((2, 3, 3)), shapes=[(3, 3), (3, 3)])
    assert maps.values.dtype == np.float32
    with pytest.raises((ContractViolation, ValidationError)):
        ImageScores(values=[np.nan], n_images=1)


def test_dataset_sample_and_info(tmp_path):
    sample = DatasetSample(image_path=tmp_path / "a.png", label=1, mask_path=tmp_path / "a_mask.png",
                           defect_type="crack", category="grid")
    assert sample.label == 1
    with pytest.raises(ValidationError):
        DatasetSample(image_path="a.png", label=2, category="grid")
    with pytest.raises(ValidationError, match="must not have a mask"):
        DatasetSample(image_path="a.png", label=0, mask_path="m.png", category="grid")
    info = DatasetInfo(name="mvtec", categories=["grid"], counts={"grid": {"train": {"good": 3}}})
    assert info.counts["grid"]["train"].total == 3
    assert DatasetInfo.model_validate_json(info.model_dump_json()) == info


def test_maps_every_kind_of_non_finite_value_is_refused_and_a_checked_array_is_not_copied():
    """The finiteness check reads min and max (no temporary mask of the whole map): NaN and
    either infinity anywhere are still found; a float32 N x H x W array comes back as itself."""
    for bad in (np.nan, np.inf, -np.inf):
        maps = np.zeros((3, 8, 9), np.float32)
        maps[2, 7, 8] = bad
        with pytest.raises(ContractViolation, match="1 non-finite value"):
            validate_maps(maps, [(8, 9)] * 3)
        with pytest.raises(ContractViolation, match="in map 2"):
            validate_maps(list(maps), [(8, 9)] * 3)
    good = np.random.default_rng(0).random((3, 8, 9), dtype=np.float32)
    assert validate_maps(good, [(8, 9)] * 3) is good
    stacked = validate_maps(list(good.astype(np.float64)), [(8, 9)] * 3)
    assert stacked.dtype == np.float32 and stacked.shape == (3, 8, 9)
    np.testing.assert_array_equal(stacked, good)


def test_large_arrays_come_in_ordinary_pages_and_behave_as_any_array():
    from pyimgano.contracts import PLAIN_PAGES_BYTES, empty_array, empty_maps

    small = empty_array((4, 5), np.float64)
    assert small.shape == (4, 5) and small.dtype == np.float64
    side = int(np.sqrt(PLAIN_PAGES_BYTES / 4)) + 1  # just past the switch
    big = empty_maps(1, side, side)
    assert big.shape == (1, side, side) and big.dtype == np.float32 and big.flags.writeable
    big[0] = 1.5
    big[0, 0, 0] = -2.0
    big[0, -1].sort()
    assert float(big.min()) == -2.0 and float(big.sum(dtype=np.float64)) == 1.5 * side * side - 3.5
    assert np.isclose(np.quantile(big.ravel(), 0.5), 1.5)
