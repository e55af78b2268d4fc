"""GLASS: its input shape is the network input fit fixed (``input_shape_``), and its
optional texture folder is checked before anything is built (anomalib would download DTD
into a missing folder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pyimgano_anomalib import weights as w
from pyimgano_anomalib.adapter import AnomalibDetector
from pyimgano_anomalib.offline import missing_file


class GlassDetector(AnomalibDetector):
    model_name = "glass"

    def _check_files(self) -> None:
        folder = self.config.anomaly_source_path
        if folder is not None and not Path(folder).is_dir():
            raise missing_file("glass", "dtd", folder)

    def _anomalib_kwargs(self, mode: w.Mode) -> dict[str, Any]:
        return {**super()._anomalib_kwargs(mode), "input_shape": self._network_input()}
