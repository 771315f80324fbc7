"""The one attention entry point of wan_core.

``attention(q, k, v, backend, mask=None)`` takes q/k/v ``[B, L, heads, head_dim]`` and returns
``[B, Lq, heads, head_dim]``. Backends:

- ``"sdpa"``: ``torch.nn.functional.scaled_dot_product_attention`` (CPU and GPU, the default);
- ``"sage"``: SageAttention (``pip install sageattention``; CUDA, fp16/bf16, 8-bit quantized QK);
- ``"flash"``: FlashAttention 3 (``flash_attn_interface``) or FlashAttention 2 (``flash_attn``), CUDA.

The backend is chosen once at load time with ``resolve_backend(name, device)``; the hot path only
dispatches on the resolved string. Sage and flash take no arbitrary mask: a call with ``mask`` always
runs SDPA (the streaming KV cache never needs one, see ``wan_core.dit.kv_cache``).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import re

import torch
import torch.nn.functional as F

__all__ = ["BACKENDS", "attention", "resolve_backend", "available_backends"]

BACKENDS = ("sdpa", "sage", "flash")

_INSTALL_HINT = {
    "sage": "pip install sageattention (needs a CUDA GPU)",
    "flash": "pip install flash-attn (FlashAttention 2) or build flash_attn_interface (FlashAttention 3)",
}

_flash_fn = None  # resolved lazily: FA3 first, then FA2
_sage_fn = None


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _major_version(dist: str) -> int | None:
    """Major version of the installed distribution ``dist`` (``None`` when unknown)."""
    try:
        m = re.match(r"\s*(\d+)", importlib.metadata.version(dist))
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return None
    return int(m.group(1)) if m else None


def available_backends(device: str | torch.device = "cuda") -> list[str]:
    """Backends usable on ``device`` in this environment (sdpa always)."""
    out = ["sdpa"]
    if torch.device(device).type != "cuda" or not torch.cuda.is_available():
        return out
    if _has("sageattention"):
        out.append("sage")
    if _has("flash_attn_interface") or _has("flash_attn"):
        out.append("flash")
    return out


def resolve_backend(name: str = "auto", device: str | torch.device = "cuda") -> str:
    """Pick the attention backend once, at load time.

    ``"auto"`` -> FlashAttention 3 when installed, else SageAttention >= 2, else SDPA (SDPA on CPU).
    SageAttention 1.x is never picked automatically: on an H100 the PyPI 1.0.6 ran at 318 TFLOP/s
    against 534 for SDPA's cuDNN kernel, with 1.3 % error (issue #2 measurement), so it would be a
    slowdown; name ``"sage"`` explicitly to use it anyway. FlashAttention 2 is not picked either
    (SDPA already ships flash-2-class kernels).
    An explicitly named backend that is not installed, or not usable on ``device`` (sage/flash need
    CUDA), raises ``ValueError`` naming the missing package.
    """
    name = (name or "auto").lower()
    dev = torch.device(device)
    avail = available_backends(dev)
    if name == "auto":
        if "flash" in avail and _has("flash_attn_interface"):
            return "flash"
        if "sage" in avail and (_major_version("sageattention") or 0) >= 2:
            return "sage"
        return "sdpa"
    if name not in BACKENDS:
        raise ValueError(f"unknown attention backend '{name}'; choose one of {('auto', *BACKENDS)}")
    if name == "sdpa":
        return name
    if dev.type != "cuda" or not torch.cuda.is_available():
        raise ValueError(
            f"attention backend '{name}' needs a CUDA GPU (device is {dev}); use 'sdpa' or 'auto'."
        )
    if name not in avail:
        raise ValueError(
            f"attention backend '{name}' is not installed: {_INSTALL_HINT[name]}, or use 'sdpa'."
        )
    return name


def _load_flash():
    global _flash_fn
    if _flash_fn is None:
        if _has("flash_attn_interface"):
            fn = importlib.import_module("flash_attn_interface").flash_attn_func
        else:
            fn = importlib.import_module("flash_attn").flash_attn_func
        _flash_fn = fn
    return _flash_fn


def _load_sage():
    global _sage_fn
    if _sage_fn is None:
        _sage_fn = importlib.import_module("sageattention").sageattn
    return _sage_fn


def attention(
    q: torch.Tensor,  # [B, Lq, heads, head_dim]
    k: torch.Tensor,  # [B, Lk, heads, head_dim]
    v: torch.Tensor,  # [B, Lk, heads, head_dim]
    backend: str = "sdpa",
    mask: torch.Tensor | None = None,  # bool, broadcastable to [B, heads, Lq, Lk]; True = attend
) -> torch.Tensor:  # [B, Lq, heads, head_dim]
    if backend == "sdpa" or mask is not None:
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask
        )
        return out.transpose(1, 2)
    dtype = q.dtype
    if dtype not in (torch.float16, torch.bfloat16):
        q, k, v = (t.to(torch.bfloat16) for t in (q, k, v))
    if backend == "flash":
        out = _load_flash()(q, k, v)
        if isinstance(out, tuple):  # some FA3 builds return (out, softmax_lse)
            out = out[0]
    elif backend == "sage":
        out = _load_sage()(q, k, v, tensor_layout="NHD", is_causal=False)
    else:
        raise ValueError(f"unknown attention backend '{backend}' (resolve it with resolve_backend first)")
    return out.to(dtype)
