"""Merging a PEFT LoRA into a loaded DiT (LongLive ships ``lora.pt`` next to ``longlive_base.pt``).

LongLive saves ``peft.get_peft_model_state_dict`` of the causal Wan model, optionally wrapped as
``{"generator_lora": {...}}``: ``<prefix>blocks.{i}.<linear>.lora_A.weight`` ``[r, in]`` and
``...lora_B.weight`` ``[out, r]`` with ``<prefix>`` = ``base_model.model.`` (+ ``model.``). Its
config uses ``alpha == rank`` (scale 1). Merged in float32: ``W += scale * B @ A``.
"""

from __future__ import annotations

import os
import re

import torch

from wan_core.checkpoint import CheckpointError, open_checkpoint
from wan_core.dit.fuse import unfuse_qkv_
from wan_core.fp8_linear import FP8Linear

__all__ = ["load_lora_state", "merge_lora"]

_PREFIXES = ("base_model.model.", "model.", "diffusion_model.")
_WRAPPERS = ("generator_lora", "lora", "state_dict")


def load_lora_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """``{layer: (A, B)}``-ready flat dict ``layer.lora_A.weight`` / ``layer.lora_B.weight`` (prefixes stripped)."""
    ck = open_checkpoint(path, wrappers=_WRAPPERS)  # the checked reader: clear errors, weights_only
    out = {}
    for k in ck.keys():
        if ".lora_" not in k:
            continue
        v = ck.get(k)
        k = re.sub(r"\.lora_(A|B)\.[^.]+\.weight$", r".lora_\1.weight", k)  # drop a PEFT adapter name
        for p in _PREFIXES:
            while k.startswith(p):
                k = k[len(p) :]
        out[k] = v
    if not out:
        raise CheckpointError(f"{path}: no LoRA tensors (keys with '.lora_A' / '.lora_B') found")
    return out


@torch.no_grad()
def merge_lora(model: torch.nn.Module, path: str | os.PathLike, scale: float = 1.0) -> int:
    """Merge the LoRA at ``path`` into ``model``'s Linear weights in place; returns the layers merged.

    Refused (``ValueError``, nothing touched) on a model whose layers already run FP8 math
    (``wan_core.fp8_linear``): merge the LoRA first, then convert."""
    fp8_math = [n for n, m in model.named_modules() if isinstance(m, FP8Linear)]
    if fp8_math:
        raise ValueError(
            f"{path}: cannot merge a LoRA into a DiT whose linear layers already run FP8 math "
            f"({len(fp8_math)} layers, e.g. {fp8_math[0]}): merge LoRAs before enabling fp8 math "
            "(load the DiT, merge the LoRA, then StreamingPipeline(..., fp8_linear=True) / precision fp8_fast)"
        )
    sd = load_lora_state(path)
    if hasattr(model, "blocks") or hasattr(model, "experts"):
        unfuse_qkv_(model)  # LoRAs name q/k/v: back to the official layout first (wan_core.dit.fuse)
    params = dict(model.named_parameters())
    layers = sorted({k.rsplit(".lora_", 1)[0] for k in sd})
    for layer in layers:
        a, b = sd.get(f"{layer}.lora_A.weight"), sd.get(f"{layer}.lora_B.weight")
        if a is None or b is None:
            raise CheckpointError(f"{path}: LoRA layer {layer} lacks lora_A or lora_B")
        w = params.get(f"{layer}.weight")
        if w is None:
            raise CheckpointError(f"{path}: LoRA layer {layer} matches no Linear weight of the DiT")
        if w.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise CheckpointError(
                f"{path}: cannot merge a LoRA into {w.dtype} weights ({layer}); load the DiT in bf16/fp16"
            )
        delta = b.float() @ a.float()
        if delta.shape != w.shape:
            raise CheckpointError(
                f"{path}: LoRA {layer} is {tuple(delta.shape)}, the weight {tuple(w.shape)}"
            )
        w.copy_((w.float() + scale * delta.to(w.device)).to(w.dtype))
    return len(layers)
