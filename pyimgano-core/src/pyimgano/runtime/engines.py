"""Inference engines behind the runtime detector: onnxruntime and OpenVINO, on the CPU.

Each is imported when a graph is opened, never before. An engine runs one float32 batch and
returns the outputs by name; a graph that cannot be opened or run raises one line that names
the file (and the input shape) instead of the engine's multi-line trace.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

from pyimgano.errors import ExportError, ModelLoadError

INSTALL_HINT = "pip install 'pyimgano-core[onnx]'"


class Engine(Protocol):
    name: str
    input_dims: tuple[int | str | None, ...]
    """The graph input's dimensions: an int where fixed, else a name or None."""

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...


def machine_threads() -> int:
    """CPU cores this process may use (its affinity set, not the whole host); the faiss plugin's
    thread settings use it too."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
    return line[:300]


def available(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def open_engine(path: Path, engine: str, input_name: str, num_threads: int | None) -> Engine:
    """An engine on ``path``: ``engine`` is ``onnxruntime``, ``openvino`` or ``auto``."""
    if engine == "auto":
        if path.suffix == ".xml" or not available("onnxruntime"):
            engine = "openvino" if available("openvino") else "onnxruntime"
        else:
            engine = "onnxruntime"
    threads = int(num_threads) if num_threads else machine_threads()
    if engine == "onnxruntime":
        return OnnxRuntimeEngine(path, input_name, threads)
    if engine == "openvino":
        return OpenVinoEngine(path, input_name, threads)
    raise ValueError(f"unknown engine {engine!r}")


class OnnxRuntimeEngine:
    name = "onnxruntime"

    def __init__(self, path: Path, input_name: str, threads: int) -> None:
        if path.suffix != ".onnx":
            raise ModelLoadError(f"{path}: onnxruntime runs ONNX graphs (.onnx); use engine='openvino' for {path.suffix}")
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelLoadError(f"{path}: running an exported model needs onnxruntime: {INSTALL_HINT}") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # no busy-waiting between runs: the images of the next batch are resized in this thread
        # meanwhile, and spinning workers would take its CPU (25% faster on 2 shared cores)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own pybind types
            raise ModelLoadError(f"{path}: onnxruntime cannot load the graph: {_first_line(exc)}") from None
        inputs = {i.name: i for i in self.session.get_inputs()}
        if input_name not in inputs:
            raise ModelLoadError(f"{path}: the graph has no input {input_name!r} (inputs: {', '.join(inputs)})")
        self.path = path
        self.input_name = input_name
        self.input_dims = tuple(d if isinstance(d, int) else None for d in inputs[input_name].shape)
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        try:
            values = self.session.run(None, {self.input_name: batch})
        except Exception as exc:  # noqa: BLE001
            raise ExportError(
                f"{self.path}: onnxruntime failed on a batch of shape {tuple(batch.shape)}: {_first_line(exc)}"
            ) from None
        return dict(zip(self.output_names, values))


class OpenVinoEngine:
    name = "openvino"

    def __init__(self, path: Path, input_name: str, threads: int) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise ModelLoadError(f"{path}: engine 'openvino' needs the openvino package: pip install openvino") from None
        core = ov.Core()
        try:
            model = core.read_model(str(path))
            # f32 inference: bf16/f16 hints would trade the parity with the source detector for speed
            self.compiled = core.compile_model(
                model, "CPU", {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
            )
        except Exception as exc:  # noqa: BLE001
            raise ModelLoadError(f"{path}: OpenVINO cannot load the graph: {_first_line(exc)}") from None
        names = {name for port in self.compiled.inputs for name in port.get_names()}
        if input_name not in names:
            raise ModelLoadError(f"{path}: the graph has no input {input_name!r} (inputs: {', '.join(sorted(names))})")
        port = next(p for p in self.compiled.inputs if input_name in p.get_names())
        self.path = path
        self.input_dims = tuple(
            d.get_length() if d.is_static else None for d in port.get_partial_shape()
        )
        self.outputs = [(port, sorted(port.get_names())) for port in self.compiled.outputs]
        self.request = self.compiled.create_infer_request()

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        try:
            result = self.request.infer({0: batch})
        except Exception as exc:  # noqa: BLE001
            raise ExportError(
                f"{self.path}: OpenVINO failed on a batch of shape {tuple(batch.shape)}: {_first_line(exc)}"
            ) from None
        out: dict[str, np.ndarray] = {}
        for port, names in self.outputs:
            value = np.array(result[port], copy=True)
            for name in names:
                out[name] = value
        return out
