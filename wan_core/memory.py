"""Out-of-memory errors that say what ran out of memory and what to change.

A CUDA out-of-memory error inside the pack becomes an ``OutOfMemory``: still a
``torch.OutOfMemoryError`` (callers that handle OOM, ComfyUI's executor included, go on doing so), with
a message that names the step that failed, torch's own numbers (what it tried to allocate, what was
free), and the settings that shrink the need. The original traceback's frames are cleared first: they
hold the tensors of the failed step, and an exception kept for display (ComfyUI keeps it) would keep
that GPU memory in use.
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable, Sequence

import torch

__all__ = ["OutOfMemory", "is_out_of_memory", "explained_oom", "explain_oom", "gib", "tensor_nbytes"]

# allocation failures that surface as plain RuntimeErrors (cuBLAS / cuDNN workspaces, NCCL buffers), and
# the CPU allocator's (a model or cache too large for the RAM)
_OOM_MARKERS = (
    "out of memory",
    "DefaultCPUAllocator: not enough memory",
    "DefaultCPUAllocator: can't allocate memory",
    "CUBLAS_STATUS_ALLOC_FAILED",
    "CUDNN_STATUS_ALLOC_FAILED",
    "cudaErrorMemoryAllocation",
)


class OutOfMemory(torch.OutOfMemoryError):
    """A device out-of-memory error with the pack's explanation and fixes."""


def is_out_of_memory(e: BaseException) -> bool:
    if isinstance(e, torch.OutOfMemoryError):
        return True
    return isinstance(e, RuntimeError) and any(m.lower() in str(e).lower() for m in _OOM_MARKERS)


def tensor_nbytes(tensors) -> int:
    """Bytes of these tensors (``None`` entries skipped)."""
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.2f} GiB"


def explained_oom(what: str, device, fixes: Sequence[str], cause: BaseException) -> OutOfMemory:
    """The ``OutOfMemory`` for ``cause`` (an OOM) raised while ``what`` (e.g. "generating chunk 3")."""
    if cause.__traceback__ is not None:
        traceback.clear_frames(cause.__traceback__)  # let the failed step's tensors go
        cause.__traceback__ = None
    first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    if "DefaultCPUAllocator" in first:  # the host's RAM ran out, whatever device the step was for
        lines = [f"Out of RAM (host memory) while {what}.", f"torch: {first}", "To fit, any of:"]
        fixes = [
            "more free RAM: close other programs, or let ComfyUI unload models (Free model and node cache)"
        ]
        fixes.append("fp8 weights (an *_fp8_scaled.safetensors file): half the RAM of bf16 while loading")
    else:
        lines = [f"Out of memory on {device} while {what}.", f"torch: {first}", "To fit, any of:"]
    lines += [f"  - {fix}" for fix in fixes]
    return OutOfMemory("\n".join(lines))


def explain_oom(describe: Callable[..., tuple[str, object, Sequence[str]]], cleanup: Callable | None = None):
    """Decorator: an OOM escaping the function becomes an ``OutOfMemory``. ``describe(*args, **kwargs)``
    (the function's arguments) returns (what was being done, device, fixes) for the message (a failing
    ``describe`` gives generic advice); ``cleanup(*args, **kwargs)``, if given, runs next in any case
    (e.g. free a half-written state)."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception as e:
                if isinstance(e, OutOfMemory) or not is_out_of_memory(e):
                    raise
                try:  # before the clean-up: the advice quotes the state (window, cache size)
                    what, device, fixes = describe(*args, **kwargs)
                except Exception as d:  # the advice must never hide the OOM nor skip the clean-up
                    what, device, fixes = f"running {fn.__qualname__}", "the device", [FREE_THE_GPU]
                    fixes.append(f"(no detailed advice: {type(d).__name__}: {d})")
                if cleanup is not None:
                    cleanup(*args, **kwargs)
                err = explained_oom(what, device, fixes, e)
            _empty_cache()
            raise err  # outside the except block: no chained context holding the failed frames

        return wrapper

    return decorate


def _empty_cache() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


FREE_THE_GPU = "fewer other models or programs on this GPU (ComfyUI: Free model and node cache)"
DIT_LOAD_FIXES = (
    "fp8 weights: an *_fp8_scaled.safetensors file (Load Wan DiT precision fp8) need half the memory of bf16",
    FREE_THE_GPU,
    "the text encoder on the CPU (Encode UMT5 Prompt device cpu; CLI --text-encoder-device cpu)",
    "a smaller model of the family (the 1.3B instead of a 14B)",
)
VAE_LOAD_FIXES = (FREE_THE_GPU, "the TAEHV decoder (Load TAEHV; CLI --decoder taehv): a few MB")
TEXT_LOAD_FIXES = (
    "the text encoder on the CPU: Encode UMT5 Prompt device cpu (CLI --text-encoder-device cpu) uses ~11 GB "
    "of RAM instead of GPU memory",
    "the fp8 file umt5_xxl_fp8_e4m3fn_scaled.safetensors (half the memory of bf16)",
    FREE_THE_GPU,
)


def describe_load(kind: str, fixes: Sequence[str]):
    """``explain_oom`` describe function for a loader ``(path, dtype=None, device="cpu", ...)``."""

    def describe(path, dtype=None, device="cpu", *args, **kwargs):
        name = getattr(path, "path", path)  # a Checkpoint, a path, or a list of paths
        return f"loading the {kind} {name} ({dtype or 'the file dtype'})", device, list(fixes)

    return describe
