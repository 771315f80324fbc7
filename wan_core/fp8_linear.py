"""FP8 linear *math* for the transformer blocks: e4m3 weights x e4m3 activations on the tensor cores.

``ScaledFP8Linear`` (``wan_core.quant``) only *stores* weights in fp8 and dequantises them to bf16 on
every call. ``FP8Linear`` multiplies in fp8 with ``torch._scaled_mm``:

- weight: e4m3 ``[out, in]`` with one fp32 scale per output channel, ``weight_scale [1, out]``
  (``W ~= weight * weight_scale.T``); quantised once at conversion;
- activation: quantised per token on every call (amax over the features -> scale = amax / 448,
  clamped away from 0 so that an all-zero row stays 0), ``x ~= xq * x_scale`` with ``x_scale [M, 1]``;
- ``y = (xq @ weight.T) * x_scale * weight_scale`` in one ``_scaled_mm`` call (fp32 accumulation,
  bf16 output: what the rowwise kernels of sm89 / sm90 write), then cast to the activation dtype and
  the bias added (an elementwise op that ``torch.compile`` fuses into its consumer).

Where rowwise scales are not supported (the probe says so), ``mode="tensorwise"``: one activation scale
per call and the per-channel weight scale applied to the output.

``fp8_linears_(dit)`` swaps the Linears *inside the transformer blocks* in place: self-attention q/k/v
(or the fused ``qkv_proj`` of ``wan_core.dit.fuse``) and o, cross-attention q and o, FFN up and down.
Cross-attention k/v (and k_img/v_img) stay as they are: they run once per prompt on 512 text tokens,
so FP8 would only add error to every chunk's cross-attention without saving time. Embeddings, time MLP
and head stay as they are too. Layers whose in/out features are not multiples of 16 (``_scaled_mm``'s
constraint) stay unconverted and are counted in the report.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
from torch import nn

from .dit.model import dit_experts
from .quant import ScaledFP8Linear

__all__ = [
    "E4M3_MAX",
    "FP8Linear",
    "FP8LinearReport",
    "BLOCK_LINEARS",
    "CPU_EMULATION_ENV",
    "check_fp8_support",
    "fp8_linears_",
    "has_fp8_math",
    "quantize_rows",
]

E4M3 = getattr(torch, "float8_e4m3fn", None)
E4M3_MAX = 448.0
_AMAX_FLOOR = 1e-12  # scale floor: an all-zero row quantises to zeros instead of 0/0
_MODES = ("rowwise", "tensorwise")

# Linears of one WanBlock that FP8Linear replaces (module paths relative to the block). Either
# self_attn.q/k/v (plain) or self_attn.qkv_proj (fused) exists.
BLOCK_LINEARS = (
    "self_attn.q",
    "self_attn.k",
    "self_attn.v",
    "self_attn.qkv_proj",
    "self_attn.o",
    "cross_attn.q",
    "cross_attn.o",
    "ffn.0",
    "ffn.2",
)


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x [M, K]`` -> (e4m3 ``[M, K]``, fp32 scale ``[M, 1]``) with ``x ~= q * scale`` per row."""
    scale = x.abs().amax(dim=-1, keepdim=True).float().clamp_min(_AMAX_FLOOR) / E4M3_MAX
    return (x.float() / scale).clamp(-E4M3_MAX, E4M3_MAX).to(E4M3), scale


def quantize_tensor(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` -> (e4m3 like ``x``, fp32 scalar scale) with one scale for the whole tensor."""
    scale = x.abs().amax().float().clamp_min(_AMAX_FLOOR) / E4M3_MAX
    return (x.float() / scale).clamp(-E4M3_MAX, E4M3_MAX).to(E4M3), scale


class FP8Linear(nn.Module):
    """``x [..., in] -> [..., out]`` with an e4m3 GEMM; see the module docstring.

    ``weight`` e4m3 ``[out, in]``; ``weight_scale`` fp32 ``[1, out]``; ``bias`` ``[out]`` (any float
    dtype, cast to the activation dtype) or None. ``mode``: "rowwise" (per-token activation scales in
    the GEMM) or "tensorwise" (one activation scale per call). ``fast_accum``: ``_scaled_mm``'s faster,
    less exact accumulation (CUDA; off by default).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device=None,
        mode: str = "rowwise",
        fast_accum: bool = False,
    ):
        super().__init__()
        if mode not in _MODES:
            raise ValueError(f"FP8Linear mode must be one of {_MODES}, got {mode!r}")
        if in_features % 16 or out_features % 16:
            raise ValueError(
                f"FP8Linear needs in and out features that are multiples of 16 (torch._scaled_mm), "
                f"got {in_features} -> {out_features}"
            )
        self.in_features, self.out_features = in_features, out_features
        self.mode, self.fast_accum = mode, bool(fast_accum)
        self.weight = nn.Parameter(
            torch.zeros(out_features, in_features, device=device, dtype=E4M3), requires_grad=False
        )
        self.weight_scale = nn.Parameter(
            torch.ones(1, out_features, device=device, dtype=torch.float32), requires_grad=False
        )
        self.bias = (
            nn.Parameter(torch.zeros(out_features, device=device), requires_grad=False) if bias else None
        )

    def dequantized_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:  # [out, in]
        return (self.weight.float() * self.weight_scale.t()).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [..., in] -> [..., out]
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)  # [M, K]
        w_t = self.weight.t()  # [K, N] column-major, as _scaled_mm wants its second operand
        if self.mode == "rowwise":
            xq, xs = quantize_rows(x2)  # [M, K] e4m3, [M, 1] fp32
            y = torch._scaled_mm(
                xq.contiguous(),
                w_t,
                scale_a=xs,
                scale_b=self.weight_scale,
                out_dtype=torch.bfloat16,
                use_fast_accum=self.fast_accum,
            )  # [M, N]
            y = y.to(x.dtype)
        else:
            xq, xs = quantize_tensor(x2)  # [M, K] e4m3, [] fp32
            y = torch._scaled_mm(
                xq.contiguous(),
                w_t,
                scale_a=xs,
                scale_b=torch.ones_like(xs),
                out_dtype=torch.bfloat16,
                use_fast_accum=self.fast_accum,
            )
            y = (y.float() * self.weight_scale).to(x.dtype)
        if self.bias is not None:
            y = y + self.bias.to(x.dtype)
        return y.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, e4m3 x e4m3 ({self.mode} scales)"

    # -- conversion ----------------------------------------------------------------------------------
    @classmethod
    @torch.no_grad()
    def from_linear(cls, layer: nn.Module, mode: str = "rowwise", fast_accum: bool = False) -> FP8Linear:
        """From an ``nn.Linear`` (16/32-bit weight: quantised per output channel here) or a
        ``ScaledFP8Linear`` (e4m3 weight bits reused as they are, its per-tensor scale repeated per
        channel: no second rounding; e5m2 weights are requantised to e4m3)."""
        w = layer.weight
        new = cls(
            layer.in_features,
            layer.out_features,
            bias=layer.bias is not None,
            device="meta",
            mode=mode,
            fast_accum=fast_accum,
        )
        if isinstance(layer, ScaledFP8Linear) and w.dtype == E4M3:
            q = w.detach()  # same storage: the file's fp8 bits
            scale = (
                layer.weight_scale.detach().float().reshape(1, 1).expand(1, layer.out_features).contiguous()
            )
        else:
            full = (
                layer.dequantized_weight(torch.float32) if isinstance(layer, ScaledFP8Linear) else w.float()
            )
            q, s = quantize_rows(full)  # [out, in], [out, 1]
            scale = s.t().contiguous()
        new.weight = nn.Parameter(q, requires_grad=False)
        new.weight_scale = nn.Parameter(scale, requires_grad=False)
        if layer.bias is not None:
            new.bias = nn.Parameter(layer.bias.detach(), requires_grad=False)
        return new


# ---------------------------------------------------------------------------------------------------
# hardware / torch check


_SUPPORTED: dict[str, str] = {}  # device -> mode that passed the probe
_FALLBACK_HINT = (
    "use precision bf16 / fp16 (or fp8: 8-bit weights with bf16 math), i.e. turn fp8 linear math off"
)
# A CPU has no FP8 matrix units: torch (>= 2.10) runs e4m3 ``_scaled_mm`` there by converting to wider
# types, slower than bf16 and less exact, so FP8 math on the CPU is refused. Set to 1 to run those
# emulated kernels anyway (the CPU tests of this module do: they check the math, not the speed).
CPU_EMULATION_ENV = "WAN_STREAM_FP8_CPU_EMULATION"


def check_fp8_support(device: torch.device | str) -> str:
    """Probe FP8 GEMMs on ``device`` once (a tiny ``_scaled_mm`` checked against fp32); returns the
    scaling mode to use ("rowwise", else "tensorwise"). Raises ``ValueError`` naming the device and the
    fix when this GPU or this torch cannot do FP8 matmuls."""
    device = torch.device(device)
    if device.type == "cpu" and os.environ.get(CPU_EMULATION_ENV) != "1":
        raise ValueError(
            "FP8 linear math needs a GPU with FP8 tensor cores (RTX 40xx / Ada, H100 / Hopper or newer); "
            "on the CPU torch would only emulate the e4m3 matmuls (slower than bf16 and less exact): "
            f"{_FALLBACK_HINT} (CLI: drop --fp8-linear)."
        )
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    key = str(device)
    if key in _SUPPORTED:
        return _SUPPORTED[key]
    if E4M3 is None or not hasattr(torch, "_scaled_mm"):
        raise ValueError(
            f"FP8 linear math needs torch.float8_e4m3fn and torch._scaled_mm; torch {torch.__version__} "
            f"has not got them. Upgrade torch (>= 2.5), or {_FALLBACK_HINT}."
        )
    what = str(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        cap = torch.cuda.get_device_capability(device)
        what = f"{name} ({device}, compute capability {cap[0]}.{cap[1]})"
        if tuple(cap) < (8, 9):
            raise ValueError(
                f"FP8 linear math needs an NVIDIA GPU with FP8 tensor cores (compute capability >= 8.9: "
                f"RTX 40xx / Ada, H100 / Hopper or newer); this is {what}: {_FALLBACK_HINT}."
            )
    elif device.type == "meta":
        raise ValueError("FP8 linear math: the model is on the meta device; load its weights first")
    errors = []
    for mode in _MODES:
        try:
            if _probe(device, mode):
                _SUPPORTED[key] = mode
                return mode
            errors.append(f"{mode}: wrong result")
        except Exception as e:  # noqa: BLE001 -- any failure of the kernel means "not supported here"
            errors.append(f"{mode}: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}")
    raise ValueError(
        f"FP8 linear math (torch._scaled_mm, e4m3) does not work on {what} with torch {torch.__version__} "
        f"({'; '.join(errors)}): {_FALLBACK_HINT}."
    )


@torch.no_grad()
def _probe(device: torch.device, mode: str) -> bool:
    gen = torch.Generator().manual_seed(0)  # own generator: the probe leaves torch's global RNG alone
    x = torch.randn(32, 64, generator=gen).to(device, torch.bfloat16)
    lin = nn.Linear(64, 32, bias=True, device="meta")
    lin.weight = nn.Parameter((torch.randn(32, 64, generator=gen) / 8).to(device, torch.bfloat16))
    lin.bias = nn.Parameter(torch.randn(32, generator=gen).to(device, torch.bfloat16))
    ref = nn.functional.linear(x.float(), lin.weight.float(), lin.bias.float())
    y = FP8Linear.from_linear(lin, mode=mode)(x).float()
    err = float((y - ref).norm() / ref.norm())  # a host sync here is fine: conversion, not a forward
    return err < 0.1


# ---------------------------------------------------------------------------------------------------
# swapping the blocks' linears


@dataclass
class FP8LinearReport:
    """What ``fp8_linears_`` did. Names are module paths from the DiT (``blocks.3.ffn.0``; with two
    experts prefixed ``expert0.`` / ``expert1.``)."""

    mode: str = "rowwise"
    converted: list[str] = field(default_factory=list)  # now FP8Linear (quantised here)
    reused_fp8: list[str] = field(default_factory=list)  # now FP8Linear, the file's e4m3 bits kept
    already: list[str] = field(default_factory=list)  # were FP8Linear before this call
    kept: dict[str, str] = field(default_factory=dict)  # left as they are -> why

    @property
    def fp8_layers(self) -> int:
        return len(self.converted) + len(self.reused_fp8) + len(self.already)

    def summary(self) -> str:
        s = (
            f"FP8 linear math ({self.mode} scales): {self.fp8_layers} block linears "
            f"({len(self.converted)} quantised, {len(self.reused_fp8)} from fp8 weights, "
            f"{len(self.already)} already)"
        )
        if self.kept:
            s += f"; {len(self.kept)} kept in 16-bit (e.g. {next(iter(self.kept.items()))})"
        return s


def has_fp8_math(model: nn.Module) -> bool:
    """Whether any layer of ``model`` is an ``FP8Linear``."""
    return any(isinstance(m, FP8Linear) for m in model.modules())


@torch.no_grad()
def fp8_linears_(model: nn.Module, fast_accum: bool = False) -> FP8LinearReport:
    """Replace the Linears inside the transformer blocks of a ``WanDiT`` (or both experts of a
    ``DualExpertDiT``) by ``FP8Linear``, in place (see ``BLOCK_LINEARS``). Probes the device first
    (``check_fp8_support``: ``ValueError`` where FP8 GEMMs are not available). Apply after
    ``fuse_qkv_`` and before ``compile_blocks``; calling it again converts nothing new."""
    prefix = "expert{}." if hasattr(model, "experts") else ""  # report names of a DualExpertDiT
    experts = [(prefix.format(i), m) for i, m in enumerate(dit_experts(model))]
    first = next(experts[0][1].blocks.parameters())
    report = FP8LinearReport(mode=check_fp8_support(first.device))
    for prefix, m in experts:
        for bi, blk in enumerate(m.blocks):
            for rel in BLOCK_LINEARS:
                try:
                    layer = blk.get_submodule(rel)
                except AttributeError:
                    continue  # q/k/v when fused, qkv_proj when not
                name = f"{prefix}blocks.{bi}.{rel}"
                if isinstance(layer, FP8Linear):
                    report.already.append(name)
                    continue
                if not isinstance(layer, (nn.Linear, ScaledFP8Linear)):
                    report.kept[name] = f"a {type(layer).__name__}, not a Linear"
                    continue
                if layer.in_features % 16 or layer.out_features % 16:
                    report.kept[name] = (
                        f"{layer.in_features} -> {layer.out_features} features, not multiples of 16"
                    )
                    continue
                reused = isinstance(layer, ScaledFP8Linear) and layer.weight.dtype == E4M3
                new = FP8Linear.from_linear(layer, mode=report.mode, fast_accum=fast_accum)
                parent, _, leaf = rel.rpartition(".")
                setattr(blk.get_submodule(parent) if parent else blk, leaf, new)
                (report.reused_fp8 if reused else report.converted).append(name)
    return report
