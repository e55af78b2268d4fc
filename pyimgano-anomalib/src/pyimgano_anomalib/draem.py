"""DRAEM: anomalies are simulated from DTD textures (``dtd_dir``) or, with
``textures=False``, from Perlin noise alone (anomalib then gets an empty texture folder)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from pyimgano_anomalib import weights as w
from pyimgano_anomalib.adapter import AnomalibDetector
from pyimgano_anomalib.offline import missing_file


class DraemDetector(AnomalibDetector):
    model_name = "draem"

    def _check_files(self) -> None:
        cfg = self.config
        if cfg.textures and (cfg.dtd_dir is None or not Path(cfg.dtd_dir).is_dir()):
            raise missing_file("draem", "dtd", cfg.dtd_dir)

    def _build(self, mode: w.Mode) -> Any:
        cfg = self.config
        if cfg.textures and cfg.dtd_dir is not None and Path(cfg.dtd_dir).is_dir():
            self._texture_dir = cfg.dtd_dir
            return super()._build(mode)
        with tempfile.TemporaryDirectory(prefix="pyimgano-no-textures-") as empty:
            self._texture_dir = empty  # read while the module is built, never after
            return super()._build(mode)

    def _anomalib_kwargs(self, mode: w.Mode) -> dict[str, Any]:
        cfg = self.config
        return {**super()._anomalib_kwargs(mode), "dtd_dir": self._texture_dir, "beta": (cfg.beta_min, cfg.beta_max)}
