"""EfficientAD with a local teacher file and ImageNette folder, or no ImageNet penalty.

anomalib computes the map-normalisation quantiles on its validation split (by default the
test images); the adapter computes them on the training images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pyimgano.torchkit import read_state_dict
from pyimgano_anomalib import weights as w
from pyimgano_anomalib.adapter import AnomalibDetector, anomalib_class
from pyimgano_anomalib.offline import anomalib_cache, missing_file


class EfficientAdDetector(AnomalibDetector):
    model_name = "efficient_ad"

    def _teacher_file(self) -> Path:
        name = f"pretrained_teacher_{self.config.model_size}.pth"
        given = self.config.teacher_weights
        path = Path(given) if given else anomalib_cache() / "efficientad_pretrained_weights" / name
        if not path.is_file():
            raise missing_file("efficient_ad", "teacher", path)
        return path

    def _imagenet_dir(self) -> Path | None:
        cfg = self.config
        if not cfg.imagenet_penalty:
            return None
        if cfg.imagenet_dir is None or not Path(cfg.imagenet_dir).is_dir():
            raise missing_file("efficient_ad", "imagenette", cfg.imagenet_dir)
        return Path(cfg.imagenet_dir)

    def _check_files(self) -> None:
        if self.config.pre_trained:
            self._teacher_file()
        self._imagenet_dir()

    def _anomalib_class(self) -> type:
        detector = self

        class OfflineEfficientAd(anomalib_class("EfficientAd")):  # type: ignore[misc]
            def prepare_pretrained_model(self) -> None:
                if detector.config.pre_trained:
                    self.model.teacher.load_state_dict(read_state_dict(detector._teacher_file()))

            def prepare_imagenette_data(self, image_size: Any) -> None:
                if detector._imagenet_dir() is not None:
                    super().prepare_imagenette_data(image_size)

            def training_step(self, batch: Any, *args: Any, **kwargs: Any) -> Any:
                if detector.config.imagenet_penalty:
                    return super().training_step(batch, *args, **kwargs)
                loss = loss_without_penalty(self.model, batch.image)
                self.log("train_loss", loss.item(), on_epoch=True, logger=False)
                return {"loss": loss}

        OfflineEfficientAd.__name__ = "EfficientAd"
        return OfflineEfficientAd

    def _anomalib_kwargs(self, mode: w.Mode) -> dict[str, Any]:
        return {**super()._anomalib_kwargs(mode), "imagenet_dir": self.config.imagenet_dir or "imagenette-not-given"}

    def _after_training(self, module: Any, datamodule: Any) -> None:
        with torch.no_grad():
            module.eval()
            module.model.quantiles.update(module.map_norm_quantiles(datamodule.val_dataloader()))


def loss_without_penalty(model: Any, images: torch.Tensor) -> torch.Tensor:
    """EfficientAD's training loss (hard student-teacher loss, auto-encoder losses) without
    the ImageNet penalty term."""
    _, distance_st = model.compute_student_teacher_distance(images)
    distance_st = distance_st.flatten()
    d_hard = torch.quantile(distance_st[: 2**24], 0.999)
    loss_hard = distance_st[distance_st >= d_hard].mean()
    augmented = model.choose_random_aug_image(images)
    ae_output = model.ae(augmented, images.shape[-2:])
    with torch.no_grad():
        teacher_output = model.teacher(augmented)
        if model.is_set(model.mean_std):
            teacher_output = (teacher_output - model.mean_std["mean"]) / model.mean_std["std"]
    student_ae = model.student(augmented)[:, model.teacher_out_channels :]
    loss_ae = ((teacher_output - ae_output) ** 2).mean()
    loss_stae = ((ae_output - student_ae) ** 2).mean()
    return loss_hard + loss_ae + loss_stae
