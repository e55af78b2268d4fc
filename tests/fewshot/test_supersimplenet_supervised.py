"""anomalib's SuperSimpleNet learns from labelled anomalies through pyimgano (supervised mode)."""

from __future__ import annotations

import numpy as np
import pytest

from pyimgano.errors import InvalidParams


def test_the_spec_declares_the_capability():
    from pyimgano.plugins import get_registry

    spec, _ = get_registry().resolve("detector", "anomalib:supersimplenet")
    assert spec.capabilities.learns_from_anomalies and spec.capabilities.needs_anomaly_masks
    patchcore, _ = get_registry().resolve("detector", "anomalib:patchcore")
    assert not patchcore.capabilities.learns_from_anomalies


def _images(n: int, seed: int, size: int = 128) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.clip(110 + rng.normal(0, 6, (size, size, 3)), 0, 255).astype(np.uint8) for _ in range(n)]


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.anomalib
def test_supervised_training_with_masks_round_trips(tmp_path):
    import pyimgano
    from pyimgano_anomalib.training import _LabelledImages

    train = _images(6, 0)
    defects = _images(2, 1)
    masks = []
    for i, image in enumerate(defects):
        mask = np.zeros(image.shape[:2], bool)
        mask[20 + 30 * i: 44 + 30 * i, 40:64] = True
        image[mask] = 250
        masks.append(mask)
    labelled = _LabelledImages(train, defects, masks, (128, 128))
    assert labelled.n_defective == 8 and len(labelled) == 14  # 2 defects x 4 orientations next to 6 normal images
    item = labelled[len(labelled) - 1]
    assert int(item.gt_label) == 1 and item.gt_mask.shape == (128, 128) and bool(item.gt_mask.any())

    det = pyimgano.create_detector("anomalib:supersimplenet", backbone="efficientnet_lite0", image_size=128,
                                   max_steps=2, batch_size=8)
    with pytest.raises(InvalidParams, match="needs the defect masks"):
        det.fit(train, anomalies=defects)
    det.fit(train, anomalies=defects, anomaly_masks=masks)
    assert det.module_.supervised and det.module_.trainer_arguments["gradient_clip_val"] == 1
    assert det.fit_info_["supervised"] and det.fit_info_["steps"] == 2
    scores, maps = det.score(defects + train[:1])
    det.save(tmp_path / "m")
    again = pyimgano.load_detector(tmp_path / "m")
    assert again.supervised_ and again.module_.supervised
    np.testing.assert_array_equal(again.score(defects + train[:1])[0], scores)
    det.fit(train)  # an unsupervised fit afterwards is unsupervised again
    assert not det.module_.supervised
