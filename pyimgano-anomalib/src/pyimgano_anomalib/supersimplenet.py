"""SuperSimpleNet, unsupervised and supervised: ``fit(images, anomalies=..., anomaly_masks=...)``
trains anomalib's model in its supervised mode on the normal images and a few labelled
defective ones (docs/few-shot.md).

anomalib's SuperSimpleNet implements both regimes (``supervised=True``: the classification
head's gradient reaches the segmentation head, gradients are clipped at norm 1, and the
training batches carry real defect masks and labels beside the synthetic feature-noise
anomalies), but its Engine trains on normal images only. Here the training set mixes the
normal images with the defects, each in four orientations, repeated to about as many
items as there are normal images (``training._LabelledImages``). Masks are required:
anomalib's model cannot learn from a defect without one.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from pyimgano.errors import InvalidParams
from pyimgano.modelfile import StateArray
from pyimgano_anomalib import weights as w
from pyimgano_anomalib.adapter import AnomalibDetector


class SupersimplenetDetector(AnomalibDetector):
    model_name = "supersimplenet"
    state_arrays: ClassVar[dict[str, StateArray]] = {
        **AnomalibDetector.state_arrays,
        "supersimplenet_supervised": StateArray("bool", (1,), required=False),  # absent in older saves
    }

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.supervised_ = False

    def _fit(self, images: list[np.ndarray]) -> None:
        self.supervised_ = False
        self._train(images)

    def _fit_with_anomalies(self, images: list[np.ndarray], anomalies: list[np.ndarray],
                            masks: list[np.ndarray] | None) -> None:
        if masks is None:
            raise InvalidParams(f"{self.component}: supervised training needs the defect masks of the anomalies "
                                "(anomaly_masks=); anomalib's SuperSimpleNet cannot learn from a defect without one")
        self.supervised_ = True
        self._train(images, anomalies, masks)
        self.fit_info_.update(supervised=True, n_anomalies=len(anomalies))

    def _anomalib_kwargs(self, mode: w.Mode) -> dict[str, Any]:
        return {**super()._anomalib_kwargs(mode), "supervised": bool(self.supervised_)}

    def _get_state(self) -> dict[str, np.ndarray]:
        return {**super()._get_state(), "supersimplenet_supervised": np.array([bool(self.supervised_)])}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        super()._set_state(state)
        self.supervised_ = bool(state["supersimplenet_supervised"][0]) if "supersimplenet_supervised" in state else False
