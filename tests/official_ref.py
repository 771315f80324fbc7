"""Import the official Wan code (PyPI ``wan22``, installed with ``--no-deps``) as a test reference on CPU.

The official package cannot be imported as is on a CPU-only machine (FACTS.md section 0):
- ``wan/__init__.py`` imports every pipeline (decord, torchvision, ...): we register a bare ``wan``
  package and import ``wan.modules.<name>`` only;
- ``wan/modules/t5.py`` evaluates ``torch.cuda.current_device()`` at import: patched while importing;
- ``wan.modules.attention.flash_attention`` needs CUDA + flash-attn and casts to bf16: replaced by an
  fp32 SDPA version that honours ``k_lens`` (key padding) and ``q_lens`` (zero rows).

Only tests import this module.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

import pytest
import torch
import torch.nn.functional as F


def sdpa_flash_attention(
    q,
    k,
    v,
    q_lens=None,
    k_lens=None,
    dropout_p=0.0,
    softmax_scale=None,
    q_scale=None,
    causal=False,
    window_size=(-1, -1),
    deterministic=False,
    dtype=None,
    version=None,
):
    """Drop-in for the official ``flash_attention``: q/k/v ``[B, L, heads, head_dim]``, no dtype cast."""
    out_dtype = q.dtype
    lq, lk = q.shape[1], k.shape[1]
    if q_scale is not None:
        q = q * q_scale
    mask = None
    if k_lens is not None:
        k_lens = torch.as_tensor(k_lens, device=q.device)
        mask = (torch.arange(lk, device=q.device)[None, :] < k_lens[:, None])[:, None, None, :]  # [B,1,1,Lk]
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2),
        k.transpose(1, 2),
        v.transpose(1, 2),
        attn_mask=mask,
        is_causal=causal,
        scale=softmax_scale,
    ).transpose(1, 2)
    if q_lens is not None:
        q_lens = torch.as_tensor(q_lens, device=q.device)
        keep = (torch.arange(lq, device=q.device)[None, :] < q_lens[:, None])[:, :, None, None]
        out = out * keep
    return out.to(out_dtype)


def _ensure_bare_wan_package() -> None:
    if "wan" in sys.modules and getattr(sys.modules["wan"], "__bare__", False):
        return  # (checked first: find_spec raises on the bare package, whose __spec__ is None)
    spec = importlib.util.find_spec("wan")
    if spec is None:
        pytest.skip("official wan22 package not installed (bash .ci/setup.sh installs it)")
    pkg = types.ModuleType("wan")
    pkg.__path__ = list(spec.submodule_search_locations)
    pkg.__bare__ = True
    sys.modules["wan"] = pkg
    mods = types.ModuleType("wan.modules")
    mods.__path__ = [p + "/modules" for p in pkg.__path__]
    sys.modules["wan.modules"] = mods


def official(name: str) -> types.ModuleType:
    """``official("model")`` -> the ``wan.modules.model`` module, patched for fp32 CPU use."""
    _ensure_bare_wan_package()
    full = f"wan.modules.{name}"
    if full in sys.modules:
        return sys.modules[full]
    attn = importlib.import_module("wan.modules.attention")
    attn.flash_attention = sdpa_flash_attention
    saved = torch.cuda.current_device
    torch.cuda.current_device = lambda: "cpu"
    try:
        mod = importlib.import_module(full)
    finally:
        torch.cuda.current_device = saved
    if hasattr(mod, "flash_attention"):
        mod.flash_attention = sdpa_flash_attention
    return mod


def randomize_(module: torch.nn.Module, seed: int = 0, std: float = 0.05) -> torch.nn.Module:
    """Fill every parameter with seeded noise (official ``init_weights`` zeroes the head)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(module.named_parameters()):
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return module


def max_rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a-b| / max |b| (robust relative error used by every parity test)."""
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))
