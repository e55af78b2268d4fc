"""faiss:patchcore's context view: a coarse second view with its own memory bank (docs/patchcore.md)."""

from __future__ import annotations

import numpy as np
import pytest

from pyimgano.errors import InvalidParams

OFFLINE = {"backbone": "efficientnet_lite0", "progress": False}


def _images(n: int, side: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    xx = np.arange(side)[None, :, None]
    return [np.clip(120 + 40 * np.sin(xx / 6.0) + rng.normal(0, 8, (side, side, 3)), 0, 255).astype(np.uint8)
            for _ in range(n)]


def test_auto_adds_a_context_view_to_large_inputs_only():
    import pyimgano

    large = pyimgano.create_detector("faiss:patchcore", **OFFLINE, image_size=384, coreset_ratio=0.2)
    large.fit(_images(3, 400))
    assert large.context_ == 2 and large.context_bank_ is not None
    assert large.context_grid_ == (24, 24) and large.grid_ == (48, 48)
    (m0, q0), (m1, q1) = large.view_scales_
    assert q0 > m0 > 0 and q1 > m1 > 0
    small = pyimgano.create_detector("faiss:patchcore", **OFFLINE, image_size=128, coreset_ratio=0.2)
    small.fit(_images(3, 128))
    assert small.context_ is None and small.context_bank_ is None


def test_without_a_context_view_results_are_those_of_one_view(small_category):
    """context='auto' on small inputs must change nothing: same bank, scores and maps as context=None."""
    import pyimgano

    train, test = small_category[0], small_category[1][:4]
    auto = pyimgano.create_detector("faiss:patchcore", **OFFLINE, image_size=96, coreset_ratio=0.2).fit(train)
    none = pyimgano.create_detector("faiss:patchcore", **OFFLINE, image_size=96, coreset_ratio=0.2,
                                    context=None).fit(train)
    np.testing.assert_array_equal(auto.memory_bank_, none.memory_bank_)
    (sa, ma), (sn, mn) = auto.score(test), none.score(test)
    np.testing.assert_array_equal(sa, sn)
    np.testing.assert_array_equal(ma, mn)


def test_a_context_model_saves_and_loads_with_the_same_outputs(tmp_path, small_category):
    import pyimgano

    train, test = small_category[0], small_category[1][:4]
    det = pyimgano.create_detector("faiss:patchcore", **OFFLINE, image_size=96, coreset_ratio=0.2, context=2)
    det.fit(train)
    scores, maps = det.score(test)
    loaded = pyimgano.load_detector(det.save(tmp_path / "m"))
    assert loaded.context_ == 2
    s2, m2 = loaded.score(test)
    np.testing.assert_allclose(s2, scores, rtol=1e-6)
    np.testing.assert_allclose(m2, maps, atol=1e-5)
    # maps are in units of the views' normal scale: defects stand out of it, good images stay near it
    labels = small_category[2][:4]
    if labels.any() and (~labels.astype(bool)).any():
        assert scores[labels == 1].max() > scores[labels == 0].min()


def _parts_scenes() -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Three parts in a row: six training scenes, then four good test scenes and four that lack
    the middle part (training images, test images, test masks)."""
    rng = np.random.default_rng(1)

    def scene(missing: bool) -> tuple[np.ndarray, np.ndarray]:
        img = np.clip(rng.normal(150, 6, (400, 400, 3)), 0, 255)
        mask = np.zeros((400, 400), bool)
        for i, x in enumerate((60, 180, 300)):
            if missing and i == 1:
                mask[180:220, x:x + 40] = True
            else:
                img[180:220, x:x + 40] = 40
        return img.astype(np.uint8), mask

    train = [scene(False)[0] for _ in range(6)]
    pairs = [scene(False) for _ in range(4)] + [scene(True) for _ in range(4)]
    return train, [p[0] for p in pairs], [p[1] for p in pairs]


def test_the_context_view_finds_a_missing_part():
    """A test scene lacks the middle part. Where it was, every stride-8 patch looks like
    background found elsewhere; the context view sees the row with a gap."""
    import pyimgano
    from pyimgano.metrics.pixel import pixel_auroc

    train, images, masks = _parts_scenes()
    results = {}
    for context in (None, "auto"):
        det = pyimgano.create_detector("faiss:patchcore", **OFFLINE, image_size=384, coreset_ratio=0.2, context=context)
        results[context] = pixel_auroc(masks, list(det.fit(train).predict_anomaly_map(images)))
    assert results["auto"] > 0.98 and results["auto"] > results[None] + 0.05, results


@pytest.mark.slow
def test_the_context_view_finds_the_boards_structural_defects():
    """synthetic_parts: a part missing, misplaced, turned or extra looks normal to stride-8
    patches of a large input; the default (with its context view) finds what detail alone misses
    (pixel AUROC 0.82 against 0.61 at this size; docs/patchcore.md has the protocol's figures)."""
    import pyimgano
    from pyimgano.metrics.pixel import pixel_auroc

    ds = pyimgano.load_dataset("synthetic_parts", category="board", image_size=384, n_train=12, n_test_good=4,
                               n_test_defect=8, in_memory=True)
    train = [ds.load(s)[0] for s in ds.train]
    images, masks = zip(*(ds.load(s) for s in ds.test))
    results = {}
    for context in (None, "auto"):
        det = pyimgano.create_detector("faiss:patchcore", **OFFLINE, context=context).fit(train)
        assert det.input_size_ == 384
        results[context] = pixel_auroc(list(masks), list(det.predict_anomaly_map(list(images))))
    assert results["auto"] > results[None] + 0.15 and results["auto"] > 0.75, results


def test_past_its_normal_range_the_context_view_counts_less_only_the_margin():
    """Within its normal range the context view is discounted by context_weight; a missing part,
    far out of that range, counts in full less context_margin (the weight alone would scale it down)."""
    import pyimgano

    train, images, masks = _parts_scenes()
    det = pyimgano.create_detector("faiss:patchcore", **OFFLINE, image_size=384, coreset_ratio=0.2)
    assert det.context_weight == 0.6 and det.context_margin == 0.4  # the documented defaults
    scores, maps = det.fit(train).score(images)
    weight_only, weight_maps = det.set_params(context_margin=None).score(images)
    assert (maps >= weight_maps - 1e-6).all()  # the margin term only ever adds to the weighted one
    missing = slice(4, 8)
    assert (scores[missing] > weight_only[missing] + 0.5).all(), (scores, weight_only)
    gap = np.stack(masks[missing])
    assert maps[missing][gap].mean() > weight_maps[missing][gap].mean() + 0.5
    # a context far out of range counts as the scaled map less the margin: weight 1 less 0.4
    equal = det.set_params(context_weight=1.0, context_margin=None).score(images)[0]
    np.testing.assert_allclose(scores[missing], np.maximum(equal[missing] - 0.4, weight_only[missing]), rtol=1e-5)


def test_context_with_tiles_is_one_clear_error():
    import pyimgano

    with pytest.raises(InvalidParams, match="context=2.*tile_size"):
        pyimgano.create_detector("faiss:patchcore", **OFFLINE, context=2, tile_size=256)
    det = pyimgano.create_detector("faiss:patchcore", **OFFLINE, image_size="original", tile_size=128)
    assert det.context == "auto"  # auto with tiles: no context view (decided at fit)


def test_leave_one_image_out_distances_skip_the_images_own_rows():
    import pyimgano
    from pyimgano_faiss.search import build_index

    rng = np.random.default_rng(0)
    det = pyimgano.create_detector("faiss:patchcore", **OFFLINE)
    bank = rng.normal(size=(200, 8)).astype(np.float32)
    det.memory_bank_, det.bank_image_ = bank, np.repeat(np.arange(4), 50)
    rows = bank[:50] + 0.01 * rng.normal(size=(50, 8)).astype(np.float32)  # image 0's own rows, nearly
    want = np.sqrt(((rows[:, None, :] - bank[50:][None]) ** 2).sum(-1)).min(1)
    for kind in ("flat", "ivf"):
        det._index = build_index(bank, kind)
        got, idx = det._leave_out_distances(rows, [0])
        assert (det.bank_image_[idx] != 0).all()
        assert got.max() == pytest.approx(want.max(), rel=1e-4)  # image scores exact either way
        if kind == "flat":
            np.testing.assert_allclose(got[0], want, rtol=1e-4)
    # a single training image: there is no other image, so its own rows are used
    det.memory_bank_, det.bank_image_, det._index = bank[:50], np.zeros(50, int), build_index(bank[:50], "flat")
    alone, _ = det._leave_out_distances(rows, [0])
    assert alone.max() < 0.1


def test_a_coreset_chunk_holds_the_same_training_inputs_in_both_views(monkeypatch):
    """The context view's chunks are as many inputs as the detail view's (its picks per chunk, and
    the greedy's cost, would otherwise grow with its higher coreset ratio)."""
    import pyimgano
    from pyimgano_faiss.patchcore import PatchCore

    calls = []
    original = PatchCore._coreset

    def spy(self, n, ratio, dim, chunk):
        calls.append((n, chunk))
        return original(self, n, ratio, dim, chunk)

    monkeypatch.setattr(PatchCore, "_coreset", spy)
    det = pyimgano.create_detector("faiss:patchcore", **OFFLINE, image_size=384, coreset_ratio=0.2,
                                   coreset_chunk=2 * 48 * 48)  # two training inputs of the detail view
    det.fit(_images(5, 384))
    (n_detail, chunk_detail), (n_context, chunk_context) = calls
    assert (n_detail, chunk_detail) == (5 * 48 * 48, 2 * 48 * 48)
    assert (n_context, chunk_context) == (5 * 24 * 24, 2 * 24 * 24)
    assert det.coreset_chunks_ == 3
