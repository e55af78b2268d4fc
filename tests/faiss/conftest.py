"""Small offline fixtures for the faiss plugin's tests (EfficientNet-Lite0, tiny images)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def small_category():
    """A tiny synthetic category in memory: (train images, test images, labels, masks)."""
    import pyimgano

    ds = pyimgano.load_dataset(
        "synthetic", category="brick", image_size=96, n_train=10, n_test_good=4, n_test_defect=8, in_memory=True
    )
    train = [ds.load(s)[0] for s in ds.train]
    pairs = [ds.load(s) for s in ds.test]
    labels = np.array([s.label for s in ds.test])
    return train, [img for img, _ in pairs], labels, np.stack([m for _, m in pairs])


@pytest.fixture(scope="session")
def fitted_patchcore(small_category):
    import pyimgano

    train = small_category[0]
    det = pyimgano.create_detector(
        "faiss:patchcore", backbone="efficientnet_lite0", image_size=96, coreset_ratio=0.2, progress=False
    )
    return det.fit(train)
