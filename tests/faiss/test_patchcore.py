"""faiss:patchcore and faiss:knn: contracts, determinism, save/load, finding defects offline."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import pyimgano
from pyimgano import InvalidParams
from pyimgano.metrics import image_auroc, pixel_auroc
from pyimgano.testing import check_detector
from pyimgano_faiss.search import auto_index_kind, is_exact

SMALL = {"backbone": "efficientnet_lite0", "image_size": 64, "progress": False}


def test_registration_module_imports_neither_torch_nor_faiss():
    code = (
        "import sys, pyimgano_faiss.plugin as p; specs = p.pyimgano_register_detectors(); "
        "print(sorted(s.name for s in specs), 'torch' in sys.modules, 'faiss' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['knn', 'patchcore'] False False"


def test_params_are_validated_before_anything_heavy():
    with pytest.raises(InvalidParams, match="coreset_ratio"):
        pyimgano.create_detector("faiss:patchcore", coreset_ratio=0)
    with pytest.raises(InvalidParams, match="index"):
        pyimgano.create_detector("faiss:patchcore", index="annoy")
    with pytest.raises(InvalidParams, match="layers"):
        pyimgano.create_detector("faiss:knn", layers=[])


@pytest.mark.parametrize("name", ["faiss:patchcore", "faiss:knn"])
def test_conformance_kit(name):
    failed = [r for r in check_detector(name) if r.status == "failed"]
    assert not failed, "; ".join(r.message for r in failed)


def test_finds_defects_on_a_synthetic_category(fitted_patchcore, small_category):
    _, test, labels, masks = small_category
    scores, maps = fitted_patchcore.score(test)
    assert scores.shape == (len(test),) and maps.shape == (len(test), 96, 96) and maps.dtype == np.float32
    assert image_auroc(labels, scores) >= 0.9
    assert pixel_auroc(masks, maps) >= 0.85


def test_maps_come_back_at_each_input_size(fitted_patchcore, small_category):
    img = small_category[1][5]
    maps = fitted_patchcore.predict_anomaly_map([img, img[:80, :60], np.ascontiguousarray(img[:, :, 0])])
    assert [m.shape for m in maps] == [(96, 96), (80, 60), (96, 96)]


def test_save_load_gives_identical_scores_and_maps(fitted_patchcore, small_category, tmp_path):
    test = small_category[1]
    scores, maps = fitted_patchcore.score(test)
    fitted_patchcore.save(tmp_path / "model")
    assert not list((tmp_path / "model").glob("*.pkl"))
    loaded = pyimgano.load_detector(tmp_path / "model")
    scores2, maps2 = loaded.score(test)
    np.testing.assert_array_equal(scores, scores2)
    np.testing.assert_array_equal(maps, maps2)
    # the default index="auto" searches this small bank exactly; a flat index is not saved twice
    assert fitted_patchcore.index == "auto" and is_exact(fitted_patchcore._index)
    with np.load(tmp_path / "model" / "state.npz") as state:
        assert "faiss_index" not in state.files


def test_auto_index_weighs_bank_rows_by_the_patches_of_one_input():
    assert auto_index_kind(3_276, 1_024) == "flat"  # synthetic set at 256 px: 32 x 32 patches
    assert auto_index_kind(48_672, 52 * 78) == "ivf"  # VisA at 416 x 624: 52 x 78 patches
    assert auto_index_kind(1_000) == "flat" and auto_index_kind(60_000) == "ivf"  # bank rows alone


@pytest.mark.parametrize("index", ["ivf", "hnsw"])
def test_approximate_indexes_round_trip(small_category, tmp_path, index):
    train, test = small_category[0][:4], small_category[1][:3]
    det = pyimgano.create_detector("faiss:patchcore", **SMALL, coreset_ratio=0.5, index=index).fit(train)
    scores = det.decision_function(test)
    det.save(tmp_path / index)
    np.testing.assert_array_equal(pyimgano.load_detector(tmp_path / index).decision_function(test), scores)


def test_parameters_set_after_fit_are_used_saved_and_loaded(small_category, tmp_path):
    train, test = small_category[0][:4], small_category[1][:3]
    det = pyimgano.create_detector("faiss:patchcore", **SMALL, coreset_ratio=0.5).fit(train)
    smoothed = det.predict_anomaly_map(test)
    det.sigma = 0
    sharp = det.predict_anomaly_map(test)
    assert not np.allclose(smoothed, sharp)
    det.save(tmp_path / "sigma")
    loaded = pyimgano.load_detector(tmp_path / "sigma")
    assert loaded.sigma == 0.0 and loaded.get_params() == det.get_params()
    np.testing.assert_array_equal(loaded.predict_anomaly_map(test), sharp)
    # a new index kind rebuilds the fitted detector's search index, and is saved with it
    assert det.set_params(index="hnsw") is det
    scores = det.decision_function(test)
    det.save(tmp_path / "hnsw")
    with np.load(tmp_path / "hnsw" / "state.npz") as state:
        assert "faiss_index" in state.files
    np.testing.assert_array_equal(pyimgano.load_detector(tmp_path / "hnsw").decision_function(test), scores)
    with pytest.raises(InvalidParams, match="sigma"):
        det.sigma = -1
    assert det.sigma == 0.0


def test_same_seed_same_bank_in_memory_or_spilled_other_seed_other_bank(small_category):
    train = small_category[0][:4]
    banks = [
        pyimgano.create_detector("faiss:patchcore", **SMALL, coreset_ratio=0.1, seed=seed, max_embedding_mb=mb)
        .fit(train)
        .memory_bank_
        for seed, mb in ((0, 2048), (0, 0.01), (1, 2048))
    ]
    np.testing.assert_array_equal(banks[0], banks[1])  # the second run spilled its features to disk
    assert not np.array_equal(banks[0], banks[2])


def test_chunked_coreset_bounds_the_stream_and_still_finds_defects(small_category):
    train, test, labels, masks = small_category
    det = pyimgano.create_detector(
        "faiss:patchcore", backbone="efficientnet_lite0", image_size=96, coreset_ratio=0.2, progress=False,
        coreset_chunk=300,  # 10 images x 12 x 12 patches = 1,440 rows: five chunks
    ).fit(train)
    assert det.coreset_chunks_ == 5 and det.memory_bank_.shape[0] == int(1440 * 0.2)
    scores, maps = det.score(test)
    assert image_auroc(labels, scores) >= 0.9 and pixel_auroc(masks, maps) >= 0.85
    again = pyimgano.create_detector("faiss:patchcore", backbone="efficientnet_lite0", image_size=96,
                                     coreset_ratio=0.2, progress=False, coreset_chunk=300).fit(train)
    np.testing.assert_array_equal(again.memory_bank_, det.memory_bank_)


def test_target_dim_reweighting_and_coreset_size(small_category):
    train, test = small_category[0][:4], small_category[1][:4]
    det = pyimgano.create_detector(
        "faiss:patchcore", **SMALL, coreset_ratio=0.25, target_dim=64, reweight=True
    ).fit(train)
    assert det.memory_bank_.shape == (int(4 * 8 * 8 * 0.25), 64)
    scores, maps = det.score(test)
    assert np.isfinite(scores).all() and maps.shape == (4, 96, 96)  # maps at each input size
    plain = det.memory_bank_.copy()
    det.reweight = False
    assert (scores <= det.decision_function(test) + 1e-6).all()  # weights are in [0, 1]
    np.testing.assert_array_equal(plain, det.memory_bank_)


def test_knn_scores_images_and_declares_no_maps(small_category):
    train, test, labels, _ = small_category
    det = pyimgano.create_detector("faiss:knn", **{**SMALL, "image_size": 96}).fit(train)
    scores = det.decision_function(test)
    assert scores.shape == (len(test),)
    assert image_auroc(labels, scores) > 0.5
    with pytest.raises(NotImplementedError):
        det.predict_anomaly_map(test[:1])


def test_approximate_index_gives_exact_image_scores(small_category):
    train, test = small_category[0], small_category[1]
    det = pyimgano.create_detector("faiss:patchcore", **{**SMALL, "image_size": 96}, coreset_ratio=0.5).fit(train)
    exact_scores, exact_maps = det.score(test)
    det.set_params(index="ivf", nprobe=1)  # one list of ~24: many patches miss their nearest bank patch
    rows = det._rows(det._embed(det.forward(_tensor(det, test))))
    raw = det._nearest(rows, 1)[0][:, 0].reshape(len(test), -1).max(1)
    assert (raw > exact_scores + 1e-3).any()  # the approximate index alone overestimates some image scores
    scores, maps = det.score(test)
    # each image's largest patch distance is re-searched exactly: image scores are flat search's
    np.testing.assert_allclose(scores, exact_scores, rtol=1e-5)
    assert (maps >= exact_maps - 1e-3).all() and not np.allclose(maps, exact_maps)


def _tensor(det, images):
    from pyimgano_faiss.backbones import images_to_tensor

    return images_to_tensor([det.geometry.apply_to_image(img.astype(np.float32)) for img in images])


def test_out_of_fold_scores_equal_scoring_against_the_bank_without_the_images_own_rows(small_category,
                                                                                       fitted_patchcore):
    import copy

    import pyimgano

    train = small_category[0]
    det = pyimgano.create_detector("faiss:patchcore", backbone="efficientnet_lite0", image_size=96,
                                   coreset_ratio=0.2, progress=False)
    scores, maps = det.fit_out_of_fold(train)
    np.testing.assert_array_equal(det.memory_bank_, fitted_patchcore.memory_bank_)  # the same fit as fit()
    assert det.bank_image_.shape == (len(det.memory_bank_),) and set(det.bank_image_) == set(range(len(train)))
    in_fold, _ = det.score(train)
    assert (scores > in_fold).all()  # its own patches are no longer there to match it
    for i in (0, 7):
        other = copy.copy(det)  # shares the backbone; gets a bank and an index of its own
        other.memory_bank_ = det.memory_bank_[det.bank_image_ != i]
        other._build_search()
        alone, alone_maps = other.score([train[i]])
        assert scores[i] == pytest.approx(alone[0], rel=1e-4)
        np.testing.assert_allclose(maps[i], alone_maps[0], rtol=1e-4, atol=1e-4)
    with pytest.raises(pyimgano.InvalidParams, match="at least 2 training images"):
        det.fit_out_of_fold(train[:1])


def test_the_pipeline_calibrates_patchcore_out_of_fold_by_default(small_category):
    import pyimgano

    train, test, labels, _ = small_category
    pipe = pyimgano.Pipeline("faiss:patchcore", params={"backbone": "efficientnet_lite0", "image_size": 96,
                                                        "coreset_ratio": 0.2, "progress": False},
                             image_threshold="fpr:0.1")
    pipe.fit(train)
    assert pipe.calibration_source == "oof" and pipe.calibration_["source"] == "oof"
    assert (pipe.n_train_, pipe.n_val_, pipe.promise_.n, pipe.promise_.method) == (10, 10, 10, "conformal")
    out = pipe.predict(test)
    assert out.p_values.shape == (len(test),) and out.p_values[labels == 1].mean() < out.p_values[labels == 0].mean()


def test_out_of_fold_scores_are_exact_with_an_approximate_index_too(small_category):
    import copy

    import pyimgano

    train = small_category[0]
    det = pyimgano.create_detector("faiss:patchcore", backbone="efficientnet_lite0", image_size=96,
                                   coreset_ratio=0.2, index="ivf", nprobe=1, progress=False)
    scores, maps = det.fit_out_of_fold(train)
    assert np.isfinite(scores).all() and all(np.isfinite(m).all() for m in maps)
    exact = copy.copy(det)
    exact.set_params(index="flat")  # rebuilds the search over the same bank
    for i in range(len(train)):
        alone = copy.copy(exact)
        alone.memory_bank_ = det.memory_bank_[det.bank_image_ != i]
        alone._build_search()
        assert scores[i] == pytest.approx(alone.score([train[i]])[0][0], rel=1e-4)


def test_out_of_fold_search_with_an_approximate_index_equals_an_excluding_search(small_category, monkeypatch):
    """The leave-out search keeps the nearest of a few neighbours not from the image itself, and
    searches again with the image's rows excluded where all of them are its own: the distances are
    those of the excluding search alone, however many patches need the second search."""
    import pyimgano
    import pyimgano_faiss.patchcore as patchcore

    train = small_category[0]
    det = pyimgano.create_detector("faiss:patchcore", backbone="efficientnet_lite0", image_size=96,
                                   coreset_ratio=0.2, index="ivf", nprobe=2, progress=False)
    results = {}
    for neighbours in (1, 4, 10_000):  # most patches searched again, few, none
        monkeypatch.setattr(patchcore, "LEAVE_OUT_NEIGHBOURS", neighbours)
        results[neighbours] = det.fit_out_of_fold(train)
    for neighbours in (4, 10_000):
        np.testing.assert_array_equal(results[neighbours][0], results[1][0])
        np.testing.assert_array_equal(np.asarray(results[neighbours][1]), np.asarray(results[1][1]))
