"""Out-of-memory errors that say what ran out of memory and what to change.

A CUDA out-of-memory error inside the pack becomes an ``OutOfMemory``: still a
``torch.OutOfMemoryError`` (callers that handle OOM, ComfyUI's executor included, go on doing so), with
a message that names the step that failed, torch's own numbers (what it tried to allocate, what was
free), and the settings that shrink the need. The original traceback's frames are cleared first: they
hold the tensors of the failed step, and an exception kept for display (ComfyUI keeps it) would keep
that GPU memory in use.

The advice fits what was being allocated: each step gives its own fixes (a loader: fp8 weights,
offloading, a smaller model; the rollout: a shorter window and a smaller video for the KV cache and the
activations, with the current values) and may name the ``Allocation``. When the host's RAM ran out
(torch's CPU allocator failed, whatever device the step was for) the advice is the RAM's: free RAM
first, then the step's fixes without those that free GPU memory only or move work onto the CPU; if
none is left, the allocation's own RAM advice (``RAM_FIXES``). Chunks are counted from 1 in messages
(``chunk_label``), as the progress lines count them; the Python API's chunk indices start at 0.
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable, Sequence
from enum import Enum

import torch

__all__ = [
    "Allocation",
    "OutOfMemory",
    "chunk_label",
    "describe_pipeline_step",
    "explain_oom",
    "explained_oom",
    "gib",
    "is_out_of_memory",
    "tensor_nbytes",
]

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


class Allocation(Enum):
    """What was being allocated when memory ran out; chooses the advice (see the module docstring)."""

    WEIGHTS = "model weights"
    KV_CACHE = "the KV cache"
    ACTIVATIONS = "a pass's activations"
    DECODE = "decoding frames"


FREE_RAM = "more free RAM: close other programs, or let ComfyUI unload models (Free model and node cache)"
RAM_FIXES = {
    Allocation.WEIGHTS: (
        "fp8 weights (an *_fp8_scaled.safetensors file): half the RAM of bf16 while loading",
        "a smaller model of the family (the 1.3B instead of a 14B)",
    ),
    Allocation.KV_CACHE: (
        "a shorter attention window (sampler window_frames / sink_frames; CLI --window / --sink): the KV "
        "cache holds sink + window latent frames",
        "a smaller video (width / height): the KV cache grows with the frame size",
    ),
    Allocation.ACTIVATIONS: (
        "a smaller video (width / height): every pass's activations grow with the frame size",
        "a shorter attention window (sampler window_frames / sink_frames; CLI --window / --sink)",
    ),
    Allocation.DECODE: (
        "the TAEHV decoder (Load TAEHV; CLI --decoder taehv): a few MB instead of the Wan VAE's buffers",
        "fewer latent frames per decode step (VAE Decode Chunk chunk_frames)",
    ),
}
_GPU_ONLY = ("GPU", "CUDA", "on the CPU", "cpu")  # advice that frees GPU memory only or moves work to RAM


def _helps_ram(fix: str) -> bool:
    return not any(word in fix for word in _GPU_ONLY)


def chunk_label(i: int, num_chunks: int | None = None) -> str:
    """Chunk index ``i`` (0-based, the API's) as messages count it: from 1, of ``num_chunks``."""
    return f"{int(i) + 1}/{num_chunks}" if num_chunks else f"{int(i) + 1}"


def explained_oom(
    what: str, device, fixes: Sequence[str], cause: BaseException, allocation: Allocation | None = None
) -> OutOfMemory:
    """The ``OutOfMemory`` for ``cause`` (an OOM) raised while ``what`` (e.g. "generating chunk 3/5");
    ``allocation``: what was being allocated, if the caller knows (the RAM advice depends on it)."""
    if cause.__traceback__ is not None:
        traceback.clear_frames(cause.__traceback__)  # let the failed step's tensors go
        cause.__traceback__ = None
    first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    of = f" ({allocation.value})" if allocation is not None else ""
    if "DefaultCPUAllocator" in first:  # the host's RAM ran out, whatever device the step was for
        lines = [f"Out of RAM (host memory) while {what}{of}.", f"torch: {first}", "To fit, any of:"]
        ram = [f for f in fixes if _helps_ram(f)]
        fixes = [FREE_RAM, *(ram or RAM_FIXES.get(allocation, ()))]
    else:
        lines = [f"Out of memory on {device} while {what}{of}.", f"torch: {first}", "To fit, any of:"]
    lines += [f"  - {fix}" for fix in fixes]
    return OutOfMemory("\n".join(lines))


def explain_oom(describe: Callable[..., tuple], cleanup: Callable | None = None):
    """Decorator: an OOM escaping the function becomes an ``OutOfMemory``. ``describe(*args, **kwargs)``
    (the function's arguments) returns (what was being done, device, fixes) or (what, device, fixes,
    ``Allocation``) for the message (a failing ``describe`` gives generic advice);
    ``cleanup(*args, **kwargs)``, if given, runs next in any case (e.g. free a half-written state)."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception as e:
                if isinstance(e, OutOfMemory) or not is_out_of_memory(e):
                    raise
                allocation = None
                try:  # before the clean-up: the advice quotes the state (window, cache size)
                    what, device, fixes, *kind = describe(*args, **kwargs)
                    allocation = kind[0] if kind else None
                except Exception as d:  # the advice must never hide the OOM nor skip the clean-up
                    what, device, fixes = f"running {fn.__qualname__}", "the device", [FREE_THE_GPU]
                    fixes.append(f"(no detailed advice: {type(d).__name__}: {d})")
                if cleanup is not None:
                    cleanup(*args, **kwargs)
                err = explained_oom(what, device, fixes, e, allocation)
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
        what = f"loading the {kind} {name} ({dtype or 'the file dtype'})"
        return what, device, list(fixes), Allocation.WEIGHTS

    return describe


def describe_pipeline_step(what: str, allocation: Allocation | None = None):
    """``explain_oom`` describe function for a ``StreamingPipeline`` method ``(self, i, ...)``: ``{chunk}``
    in ``what`` becomes chunk ``i`` counted from 1 of the video's chunks ("generating chunk {chunk}" ->
    "generating chunk 2/5"); the fixes are the pipeline's ``oom_fixes()``."""

    def describe(pipe, *args, **kwargs):
        label = what
        if "{chunk}" in what:
            i = args[0] if args else kwargs.get("i")
            try:
                total = pipe.num_chunks
            except Exception:  # noqa: BLE001 -- no video started: no count
                total = None
            label = what.format(chunk=chunk_label(i, total) if isinstance(i, int) else "?")
        return label, pipe.device, pipe.oom_fixes(), allocation

    return describe
