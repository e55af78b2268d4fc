"""FRE: anomalib takes the auto-encoder's input size (``input_dim``) as a number, which
depends on the backbone layer, the network input (height, width) and the pooling; the adapter computes it."""

from __future__ import annotations

from typing import Any

from pyimgano.errors import InvalidParams
from pyimgano_anomalib import weights as w
from pyimgano_anomalib.adapter import AnomalibDetector


class FreDetector(AnomalibDetector):
    model_name = "fre"

    def _anomalib_kwargs(self, mode: w.Mode) -> dict[str, Any]:
        import timm

        cfg = self.config
        kwargs = super()._anomalib_kwargs(mode)
        layer = kwargs.setdefault("layer", "layer3")
        probe = timm.create_model(kwargs["backbone"], pretrained=False, features_only=True)
        info = {i["module"]: i for i in probe.feature_info.info}
        if layer not in info:
            raise InvalidParams(f"{self.component}: backbone {cfg.backbone!r} has no layer {layer!r}; layers: {sorted(info)}")
        height, width = (side // info[layer]["reduction"] // cfg.pooling_kernel_size for side in self._network_input())
        kwargs["input_dim"] = int(info[layer]["num_chs"] * height * width)
        return kwargs
