"""The backbone on OpenVINO, in process: the same network, about 2.5x faster on a CPU.

On CPUs torch runs EfficientNet-Lite's depthwise convolutions far from the hardware's speed;
OpenVINO's CPU plugin runs the same float32 network about 2.5x faster (``docs/patchcore.md``,
"Where the time goes"). ``engine="auto"`` (the default of the faiss detectors) uses it when the
detector computes on the CPU in float32 and the ``openvino`` package is installed (a dependency
of pyimgano-faiss), and torch otherwise; the features agree with torch's to float32 rounding (about 1e-5 of their scale), so
scores and maps do not change beyond noise.

The network is converted once per (backbone, thread count) in a process (a few seconds:
OpenVINO's PyTorch frontend traces the module, no ONNX file and no ``onnx`` package) and
compiled for the CPU with dynamic batch and spatial axes, in float32.
"""

from __future__ import annotations

import threading
import warnings
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from pyimgano_faiss.errors import BackboneError

_COMPILE = threading.Lock()


@lru_cache(maxsize=1)
def openvino_installed() -> bool:
    """Whether openvino can be imported (asked once per process: every forward pass resolves the engine)."""
    from pyimgano.runtime.engines import available

    return available("openvino")


def resolve_engine(engine: str, device: str, precision: str) -> str:
    """``torch`` or ``openvino`` for a detector's ``engine`` setting, device and precision."""
    if engine == "torch":
        return "torch"
    usable = device == "cpu" and precision == "float32"
    if engine == "openvino":
        if not usable:
            raise BackboneError(f"engine='openvino' runs float32 on the CPU; this detector uses device={device!r}, "
                                f"precision={precision!r} (use engine='auto' or 'torch')")
        if not openvino_installed():
            raise BackboneError("engine='openvino' needs the openvino package: pip install openvino "
                                "(or engine='torch')")
        return "openvino"
    return "openvino" if usable and openvino_installed() else "torch"


class _Stages(nn.Module):
    """The backbone as a graph with one output per chosen stage (what the tracer follows)."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.backbone(images))


class OpenVinoBackbone:
    """A :class:`pyimgano_faiss.backbones.Backbone` compiled by OpenVINO: N x 3 x H x W floats in
    [0, 1] -> the chosen stages' float32 maps (as torch tensors, like the backbone). The compiled
    graph's input is channels-last (N x H x W x 3), which a channels-last batch is without a copy."""

    def __init__(self, backbone: nn.Module, threads: int) -> None:
        import openvino as ov

        try:
            with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
                warnings.simplefilter("ignore")
                # OpenVINO's PyTorch frontend traces the module itself (no ONNX file, no onnx package)
                model = ov.convert_model(_Stages(backbone).eval(), example_input=torch.zeros(1, 3, 64, 64),
                                         input=[ov.PartialShape([-1, 3, -1, -1])])
            # the network takes N x H x W x 3 (OpenVINO reorders inside the compiled graph): the
            # detector's batches are channels-last already, so they go in without a copy
            layout = ov.preprocess.PrePostProcessor(model)
            layout.input().tensor().set_layout(ov.Layout("NHWC"))
            layout.input().model().set_layout(ov.Layout("NCHW"))
            model = layout.build()
            # f32 inference: a bf16/f16 hint would trade the agreement with torch for speed
            self._compiled = ov.Core().compile_model(
                model, "CPU", {"INFERENCE_NUM_THREADS": int(threads), "INFERENCE_PRECISION_HINT": "f32"})
        except Exception as exc:  # noqa: BLE001 - the frontend and the plugin raise many kinds
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise BackboneError(f"backbone {backbone.name!r}: OpenVINO cannot compile it ({first}); "
                                "use engine='torch'") from None
        self._request = self._compiled.create_infer_request()
        self._outputs = list(self._compiled.outputs)  # one per chosen stage, shallow to deep
        self._lock = threading.Lock()  # one infer request: calls from several threads take turns

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        from pyimgano.errors import ExportError

        # N x H x W x 3: a view of a channels-last batch (images_to_tensor's), a copy of any other
        batch = np.ascontiguousarray(x.detach().cpu().permute(0, 2, 3, 1).numpy(), dtype=np.float32)
        with self._lock:
            try:
                result = self._request.infer({0: batch})
            except Exception as exc:  # noqa: BLE001
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise ExportError(f"OpenVINO failed on a batch of shape {tuple(x.shape)}: {first}") from None
            return [torch.from_numpy(np.array(result[port], copy=True)) for port in self._outputs]


@lru_cache(maxsize=4)
def _compiled(backbone: nn.Module, threads: int) -> OpenVinoBackbone:
    return OpenVinoBackbone(backbone, threads)


def openvino_backbone(backbone: nn.Module, threads: int) -> OpenVinoBackbone:
    """The compiled backbone, built once per (backbone, threads) in this process."""
    with _COMPILE:
        return _compiled(backbone, int(threads))
