"""Ceilings of the device measured in the same run as the benchmark: bf16 GEMM rate, FP8
``torch._scaled_mm`` rate, device-to-device copy bandwidth, and SDPA attention rate per backend at the
benchmark's attention shape. Random data everywhere (zeros can run faster than real data)."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from bench.timing import median_ms


def _randn(*shape: int, device, dtype: torch.dtype, gen: torch.Generator) -> torch.Tensor:
    """Random normal data made on ``device`` (no host copy of GiB-sized operands)."""
    return torch.randn(*shape, device=device, dtype=torch.float32, generator=gen).to(dtype)


def matmul_rate(device, dtype: torch.dtype, n: int, iters: int = 20) -> float:
    """FLOP/s of an ``n x n x n`` GEMM loop; three operand sets rotated so the cache holds none of them."""
    gen = torch.Generator(device=device).manual_seed(0)
    sets = [
        (_randn(n, n, device=device, dtype=dtype, gen=gen), _randn(n, n, device=device, dtype=dtype, gen=gen))
        for _ in range(3)
    ]
    out = torch.empty(n, n, device=device, dtype=dtype)
    state = {"i": 0}

    def step():
        a, b = sets[state["i"] % 3]
        state["i"] += 1
        torch.matmul(a, b, out=out)

    ms = median_ms(step, device, warmup=3, iters=iters)
    return 2 * n**3 / (ms * 1e-3)


def fp8_scaled_mm_rate(device, n: int, iters: int = 20, fast_accum: bool = False) -> tuple[float | None, str]:
    """FLOP/s of ``torch._scaled_mm`` on e4m3 operands with bf16 output, or (None, why not)."""
    device = torch.device(device)
    if device.type != "cuda":
        return None, "fp8 scaled_mm needs a CUDA device"
    if not hasattr(torch, "_scaled_mm") or not hasattr(torch, "float8_e4m3fn"):
        return None, "this torch has no torch._scaled_mm / float8_e4m3fn"
    if torch.cuda.get_device_capability(device) < (8, 9):
        return (
            None,
            f"fp8 needs compute capability >= 8.9, this GPU is {torch.cuda.get_device_capability(device)}",
        )
    gen = torch.Generator(device=device).manual_seed(1)
    a = _randn(n, n, device=device, dtype=torch.float8_e4m3fn, gen=gen)
    b = _randn(n, n, device=device, dtype=torch.float8_e4m3fn, gen=gen).t()  # column-major operand
    one = torch.ones((), device=device, dtype=torch.float32)
    try:
        ms = median_ms(
            lambda: torch._scaled_mm(
                a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16, use_fast_accum=fast_accum
            ),
            device,
            warmup=3,
            iters=iters,
        )
    except (RuntimeError, TypeError, ValueError) as e:
        return None, f"torch._scaled_mm failed: {e}"
    return 2 * n**3 / (ms * 1e-3), "ok"


def copy_bandwidth(device, nbytes: int, iters: int = 20) -> float:
    """Bytes/s of a device-to-device copy, counting bytes read plus bytes written."""
    n = nbytes // 2
    src = torch.randn(n, device=device, dtype=torch.float32).to(torch.bfloat16)
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src), device, warmup=3, iters=iters)
    return 2 * src.numel() * src.element_size() / (ms * 1e-3)


def _sdpa_backends():
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # older torch
        return None, {}
    names = {
        "cudnn": getattr(SDPBackend, "CUDNN_ATTENTION", None),
        "flash": SDPBackend.FLASH_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
    }
    return sdpa_kernel, {k: v for k, v in names.items() if v is not None}


def attention_rates(
    device, dtype: torch.dtype, heads: int, head_dim: int, q_len: int, kv_len: int, iters: int = 10
) -> dict[str, float | str]:
    """FLOP/s (4 * q_len * kv_len * heads * head_dim per call) of SDPA, default choice and, on CUDA, each
    backend forced, for two memory layouts: ``bhld`` (contiguous ``[B, heads, L, head_dim]``) and
    ``blhd`` (``[B, L, heads, head_dim]`` transposed, what ``wan_core.attention`` passes). A backend that
    cannot run gets a string saying why."""
    device = torch.device(device)
    gen = torch.Generator(device="cpu").manual_seed(2)
    base = {
        name: torch.randn(1, n, heads, head_dim, generator=gen).to(device, dtype)
        for name, n in (("q", q_len), ("k", kv_len), ("v", kv_len))
    }
    layouts = {
        "blhd": {k: t.transpose(1, 2) for k, t in base.items()},
        "bhld": {k: t.transpose(1, 2).contiguous() for k, t in base.items()},
    }
    flops = 4 * q_len * kv_len * heads * head_dim
    out: dict[str, float | str] = {}

    def rate(ctx, t) -> float | str:
        try:
            with ctx:
                ms = median_ms(
                    lambda: F.scaled_dot_product_attention(t["q"], t["k"], t["v"]),
                    device,
                    warmup=2,
                    iters=iters,
                )
        except RuntimeError as e:
            return f"unavailable: {str(e).splitlines()[0][:120]}"
        return flops / (ms * 1e-3)

    sdpa_kernel, backends = _sdpa_backends() if device.type == "cuda" else (None, {})
    for layout, t in layouts.items():
        out[f"default_{layout}"] = rate(contextlib.nullcontext(), t)
        for name, backend in backends.items():
            out[f"{name}_{layout}"] = rate(sdpa_kernel(backend), t)
    return out


def measure_ceilings(
    device, dtype: torch.dtype, gemm_n: int, copy_bytes: int, attn_shape: tuple[int, int, int, int]
) -> dict:
    """All ceilings in one dict (FLOP/s and bytes/s); ``attn_shape`` = (heads, head_dim, q_len, kv_len)."""
    heads, head_dim, q_len, kv_len = attn_shape
    fp8, fp8_note = fp8_scaled_mm_rate(device, gemm_n)
    fp8_fast, _ = fp8_scaled_mm_rate(device, gemm_n, fast_accum=True)
    attn = attention_rates(device, dtype, heads, head_dim, q_len, kv_len)
    numeric = [v for v in attn.values() if isinstance(v, float)]
    return {
        "matmul_dtype": str(dtype).replace("torch.", ""),
        "matmul_n": gemm_n,
        "matmul_flops": matmul_rate(device, dtype, gemm_n),
        "fp8_scaled_mm_flops": fp8,
        "fp8_scaled_mm_fast_accum_flops": fp8_fast,
        "fp8_note": fp8_note,
        "copy_bandwidth_bytes_per_s": copy_bandwidth(device, copy_bytes),
        "attention_shape": {"heads": heads, "head_dim": head_dim, "q_len": q_len, "kv_len": kv_len},
        "attention_flops_by_backend": attn,
        "attention_flops_best": max(numeric) if numeric else None,
        "attention_flops_model_layout_default": attn.get("default_blhd"),
    }
