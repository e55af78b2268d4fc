"""The synthetic_parts board: structural defects, exact masks, the synthetic set's cache behaviour."""

from __future__ import annotations

import json

import numpy as np
import pytest

import pyimgano
from pyimgano import InvalidParams
from pyimgano_datasets.parts import LAYOUT, PARTS_KINDS, PartsConfig, PartsDataset, render_part_sample
from pyimgano_datasets.synthetic import MANIFEST, SyntheticDataset

SMALL = dict(image_size=160, n_train=3, n_test_good=2, n_test_defect=4)


@pytest.mark.parametrize("kind", PARTS_KINDS)
def test_masks_are_exactly_the_changed_pixels(kind):
    config = PartsConfig(image_size=192)
    for index in range(3):
        image, mask, clean = render_part_sample(config, "test", index, kind, with_clean=True)
        assert mask.dtype == bool and mask.shape == image.shape[:2]
        changed = np.any(image != clean, axis=2)
        assert not changed[~mask].any(), "pixels outside the mask were modified"
        assert changed[mask].mean() > 0.5, "most mask pixels must differ from the clean image"
        assert 20 < mask.sum() < 0.1 * mask.size, f"{kind}: a mask of {mask.sum()} pixels is not one or two parts"


def test_a_defect_changes_the_arrangement_of_ordinary_parts():
    """Every part stays an ordinary part: one fewer (missing), one more (extra), or the same
    part elsewhere (misplaced, most of its size away) or turned by 90 degrees (rotated)."""
    from pyimgano_datasets.parts import _defect, _fits, _scene

    size = 256
    for index in range(4):
        _, parts = _scene(size, np.random.default_rng(index))
        rng = np.random.default_rng(100 + index)
        fewer, (gone,) = _defect("missing", parts, size, rng, 1.0)
        assert len(fewer) == len(parts) - 1 and gone in parts and gone not in fewer
        more, (added,) = _defect("extra", parts, size, rng, 1.0)
        assert more[:-1] == parts and added is more[-1] and added.kind in ("cap", "res") and _fits(added, parts, size)
        moved_parts, (old, new) = _defect("misplaced", parts, size, rng, 1.0)
        assert sorted(p.kind for p in moved_parts) == sorted(p.kind for p in parts)
        assert (new.kind, new.angle, new.h, new.w) == (old.kind, old.angle, old.h, old.w)
        assert np.hypot(new.cy - old.cy, new.cx - old.cx) >= 0.6 * 2 * old.extent() - 1e-6
        turned_parts, (old, new) = _defect("rotated", parts, size, rng, 1.0)
        assert (new.cy, new.cx, new.kind) == (old.cy, old.cx, old.kind) and old.kind != "cap"
        assert abs(abs(new.angle - old.angle) - np.pi / 2) < 1e-9 and len(turned_parts) == len(parts)


def test_good_images_are_the_same_assembly_placed_a_little_differently():
    from pyimgano_datasets.parts import _scene

    size = 512
    scenes = [_scene(size, np.random.default_rng(i))[1] for i in range(4)]
    for parts in scenes:
        for part, (kind, y, x, _, _) in zip(parts, LAYOUT):
            assert part.kind == kind and np.hypot(part.cy - y * size, part.cx - x * size) < 0.03 * size
    assert scenes[0][0].cy != scenes[1][0].cy  # each image is placed anew
    config = PartsConfig(image_size=128)
    again = render_part_sample(config, "train", 2)[0]
    assert np.array_equal(again, render_part_sample(config, "train", 2)[0])  # deterministic
    assert not np.array_equal(again, render_part_sample(PartsConfig(image_size=128, seed=1), "train", 2)[0])


def test_the_layout_leaves_room_for_every_part_and_an_extra_one():
    from pyimgano_datasets.parts import GAP, Part, _fits

    size = 512
    parts = [Part(kind, y * size, x * size, h * size, w * size, 0.0, 1.0, i) for i, (kind, y, x, h, w) in enumerate(LAYOUT)]
    for part in parts:
        assert _fits(part, [o for o in parts if o is not part], size), part
    assert GAP > 0


def test_the_data_set_loads_from_disk_and_memory_alike(tmp_path):
    disk = pyimgano.load_dataset("synthetic_parts", category="board", cache_dir=tmp_path / "cache", **SMALL)
    memory = pyimgano.load_dataset("synthetic_parts", category="board", in_memory=True, **SMALL)
    assert disk.categories == ["board"] and disk.info.has_masks
    assert [s.defect_type for s in disk.test] == ["good", "good", "extra", "misplaced", "missing", "rotated"]
    for a, b in zip(disk.test, memory.test):
        (img_a, mask_a), (img_b, mask_b) = disk.load(a), memory.load(b)
        assert img_a.shape == (160, 160, 3) and np.array_equal(img_a, img_b) and np.array_equal(mask_a, mask_b)
    # its own manifest (and, without cache_dir, its own cache folder): never taken for the textures
    manifests = list((tmp_path / "cache").glob(f"*/board/{MANIFEST}"))
    assert len(manifests) == 1 and json.loads(manifests[0].read_text())["generator"] == "parts"
    assert PartsDataset.cache_folder != SyntheticDataset.cache_folder


def test_the_documented_defaults_and_one_clear_error_per_bad_option():
    from pyimgano_datasets.plugin import PartsParams

    params, config = PartsParams(), PartsConfig()
    for name in ("seed", "image_size", "n_train", "n_test_good", "n_test_defect", "severity"):
        assert getattr(params, name) == getattr(config, name), name  # the plugin's defaults are the generator's
    assert tuple(params.defect_kinds) == config.defect_kinds == PARTS_KINDS
    ds = pyimgano.load_dataset("synthetic_parts", in_memory=True)
    counts = ds.info.counts["board"]
    assert (counts["train"].good, counts["test"].good, counts["test"].defect) == (40, 12, 16)
    with pytest.raises(InvalidParams, match="defect_kinds"):
        pyimgano.load_dataset("synthetic_parts", defect_kinds=["scratch"])
    with pytest.raises(InvalidParams, match="image_size"):
        pyimgano.load_dataset("synthetic_parts", image_size=64)


def test_pixels_match_the_generator_version():
    """Cached sets are keyed by PARTS_VERSION: a change to the pixels must bump it (and this
    fingerprint: mean grey level and mask area per kind)."""
    from pyimgano_datasets.parts import PARTS_VERSION

    config = PartsConfig(image_size=256)
    fingerprint = {}
    for kind in PARTS_KINDS:
        image, mask = render_part_sample(config, "test", 0, kind)
        fingerprint[kind] = (round(float(image.mean())), int(mask.sum()))
    assert PARTS_VERSION == 2
    expected = {"missing": (90, 217), "misplaced": (84, 1101), "rotated": (92, 334), "extra": (92, 211)}
    for kind, (mean, area) in expected.items():
        got_mean, got_area = fingerprint[kind]
        assert abs(got_mean - mean) <= 1 and abs(got_area - area) <= 2, (kind, fingerprint[kind])
