"""Thread counts and devices shared by the detectors of this plugin."""

from __future__ import annotations

from pyimgano.runtime.engines import machine_threads  # one definition, the core's


def configure_threads(num_threads: int | None) -> int:
    """Set torch and faiss thread counts (``None``: follow the machine)."""
    import torch

    import faiss

    n = int(num_threads) if num_threads else machine_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    faiss.omp_set_num_threads(n)
    return n


def resolve_device(device: str) -> str:
    """``"auto"`` is CUDA when a GPU is present, else CPU; anything else is checked against the
    machine: a GPU it does not have is a configuration error (:class:`pyimgano.InvalidParams`,
    exit status 2 on the command line), said before any work starts."""
    import torch

    from pyimgano.errors import InvalidParams

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InvalidParams(f"device={device!r}: torch sees no CUDA GPU on this machine; use device='cpu' or 'auto'")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise InvalidParams(f"device={device!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s) "
                                f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    return device


def native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX); else bf16 is emulated and slow."""
    import torch

    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    if probe is not None and probe():
        return True
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    if amx is not None and amx():
        return True
    try:
        with open("/proc/cpuinfo") as handle:
            flags = next((line for line in handle if line.startswith("flags")), "")
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))
