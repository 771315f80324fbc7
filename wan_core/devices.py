"""Which torch device a device name means, refused with a clear message before anything loads.

Accepted: ``auto`` (the first CUDA GPU if torch sees one, else the CPU), ``cpu``, ``cuda``,
``cuda:N``. torch itself accepts more names (``mps``, ``xpu``, ...) but this package's kernels and
CUDA-graph paths are written for CUDA and the CPU only. An unavailable GPU is refused here: torch
would otherwise fail only at the first tensor moved there, after models were read from disk.
"""

from __future__ import annotations

import os

import torch

__all__ = ["resolve_device"]

_NAMES = "auto, cpu, cuda or cuda:N"


def _cuda_devices() -> str:
    n = torch.cuda.device_count()
    return "cuda:0" if n == 1 else f"cuda:0 .. cuda:{n - 1}"


def _no_cuda_reason() -> str:
    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is built without CUDA"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return f"torch sees no CUDA GPU (CUDA_VISIBLE_DEVICES={visible!r})"
    return "torch sees no CUDA GPU (no NVIDIA driver, or no GPU)"


def resolve_device(name: str, option: str = "--device") -> torch.device:
    """The ``torch.device`` for ``name`` (see the module docstring); ``ValueError`` naming ``option``
    (the interface's word for it), the value, why, and what would work on this machine."""
    text = str(name).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    here = f"this machine has {_cuda_devices()} and cpu" if torch.cuda.is_available() else "this machine: cpu"
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise ValueError(f"{option} {name!r} is not a device name: use {_NAMES} ({here})") from None
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise ValueError(f"{option} {name!r}: {dev.type} devices are not supported; use {_NAMES} ({here})")
    if not torch.cuda.is_available():
        raise ValueError(f"{option} {name!r}: {_no_cuda_reason()}; use {option} cpu")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"{option} {name!r}: there is no such GPU, {here}")
    return dev
