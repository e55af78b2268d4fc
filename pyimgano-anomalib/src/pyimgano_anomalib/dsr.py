"""DSR: anomalib's pretrained discrete latent model comes from ``vq_weights`` (or
anomalib's cache folder), never from a download."""

from __future__ import annotations

from pathlib import Path

from pyimgano_anomalib.adapter import AnomalibDetector, anomalib_class
from pyimgano_anomalib.offline import anomalib_cache, missing_file

VQ_FILE = "vq_model_pretrained_128_4096.pckl"


class DsrDetector(AnomalibDetector):
    model_name = "dsr"

    def _vq_weights_file(self) -> Path:
        path = Path(self.config.vq_weights) if self.config.vq_weights else anomalib_cache() / "dsr" / VQ_FILE
        if not path.is_file():
            raise missing_file("dsr", "vq", path)
        return path

    def _check_files(self) -> None:
        if self.config.pre_trained:
            self._vq_weights_file()

    def _anomalib_class(self) -> type:
        detector = self

        class OfflineDsr(anomalib_class("Dsr")):  # type: ignore[misc]
            def prepare_pretrained_model(self) -> Path:
                return detector._vq_weights_file()

            def on_train_start(self) -> None:
                if detector.config.pre_trained:
                    super().on_train_start()  # checks the pre-processor, loads the discrete model

        OfflineDsr.__name__ = "Dsr"
        return OfflineDsr
