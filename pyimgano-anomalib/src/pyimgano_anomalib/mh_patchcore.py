"""Multi-head PatchCore: three statistical passes (PCA, whitening covariance, memory bank),
one epoch each, and a pre-processor without anomalib's centre crop.

anomalib resizes to ``image_size`` and crops the central 224 x 224, so its maps cover the
crop only; pyimgano returns maps of the whole image, so the adapter resizes without the
crop (the model is size-agnostic). A budget that cuts one of the passes is an error.
"""

from __future__ import annotations

from typing import Any

from pyimgano_anomalib.adapter import AnomalibDetector


def whole_image_pre_processor(shape: tuple[int, int]) -> Any:
    """anomalib's MH-PatchCore pre-processing minus the centre crop (resize, ImageNet normalisation)."""
    from anomalib.pre_processing import PreProcessor
    from torchvision.transforms.v2 import Compose, InterpolationMode, Normalize, Resize

    return PreProcessor(transform=Compose([
        Resize(tuple(shape), interpolation=InterpolationMode.BILINEAR, antialias=True),
        Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ]))


class MhPatchcoreDetector(AnomalibDetector):
    model_name = "mh_patchcore"

    def _pre_processor(self, cls: type) -> Any:
        return whole_image_pre_processor(self._network_input())

    def _after_training(self, module: Any, datamodule: Any) -> None:
        if not bool(module._is_fitted.item()):
            cfg = self.config
            raise ValueError(
                f"{self.component}: fitting needs three full passes over the training images (PCA, covariance, "
                f"memory bank); the budget stopped it in pass {int(module._fitting_stage.item()) + 1} "
                f"(max_steps={cfg.max_steps}, time_limit_s={cfg.time_limit_s}); remove the limit"
            )
