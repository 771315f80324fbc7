"""``prepare_dit``: LoRA merge -> fuse q/k/v -> FP8 linears -> fuse again -> compile, in place.

Why this order: a LoRA names the official q/k/v Linears and needs 16-bit weights (``merge_lora``
refuses FP8 math); FP8 conversion runs on whatever layout it finds (per-output-channel scales stack
exactly, so fusing before or after gives the same layers), and blocks that ``fuse_qkv_`` left unfused
(fp8 "scaled" files with unequal per-tensor scales) can be fused once they are ``FP8Linear``;
``torch.compile`` traces the final modules, so it comes last.

Idempotent: every step looks at the model first (a merged LoRA is remembered on the module, fused
blocks and FP8 layers are skipped, compiled blocks are not compiled again), so a DiT loaded once and
prepared by each pipeline built for it (one per ComfyUI job) is prepared once. Steps are only added,
never undone: ``fuse_qkv=False`` on an already fused DiT leaves it fused. A DiT whose compile failed
(``graphs.uncompile_blocks``, the pipeline's fallback) stays eager: it is not compiled again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from wan_core.dit.fuse import fuse_qkv_
from wan_core.dit.model import dit_experts
from wan_core.fp8_linear import FP8LinearReport, fp8_linears_

__all__ = ["PrepareReport", "prepare_dit", "is_compiled"]


@dataclass
class PrepareReport:
    lora_layers: int = 0  # LoRA layers merged by this call
    fused: tuple[int, int] = (0, 0)  # (blocks fused by this call, blocks left unfused)
    fp8: FP8LinearReport | None = None  # what fp8_linears_ found / converted (fp8_linear=True)
    compiled_blocks: int = 0  # blocks compiled by this call


def is_compiled(dit: torch.nn.Module) -> bool:
    return any(blk._compiled_call_impl is not None for m in dit_experts(dit) for blk in m.blocks)


@torch.no_grad()
def prepare_dit(
    dit: torch.nn.Module,
    *,
    lora: str | os.PathLike | None = None,
    lora_strength: float = 1.0,
    fuse_qkv: bool = False,
    fp8_linear: bool = False,
    compile: bool = False,
    compile_mode: str | None = None,
) -> PrepareReport:
    """Prepare ``dit`` (a ``WanDiT`` or ``DualExpertDiT``) in place; returns what this call did."""
    from wan_core.rollout.graphs import compile_blocks, compile_failed
    from wan_core.rollout.lora import merge_lora

    report = PrepareReport()
    if lora is not None:
        key = (os.fspath(lora), float(lora_strength))
        merged = getattr(dit, "_merged_loras", ())
        if key not in merged:
            report.lora_layers = merge_lora(dit, lora, scale=lora_strength)
            dit._merged_loras = (*merged, key)
    if fuse_qkv:
        report.fused = fuse_qkv_(dit)  # one d -> 3d GEMM per self-attention (wan_core.dit.fuse)
    if fp8_linear:
        report.fp8 = fp8_linears_(dit)
        if fuse_qkv:
            fused, left = fuse_qkv_(dit)  # blocks left unfused for unequal per-tensor scales stack now
            report.fused = (report.fused[0] + fused, left)
    if compile and not is_compiled(dit) and not compile_failed(dit):  # a failed compile stays eager
        report.compiled_blocks = compile_blocks(dit, mode=compile_mode)
    return report
