"""Loading CLIP vision weights of every format users have into ``CLIPVisionTower``.

Formats (FACTS 2(g)):
- official Wan ``models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth``: the full XLM-RoBERTa CLIP
  (``visual.*``, ``textual.*``, ``log_scale``); only ``visual.*`` is loaded (fused ``attn.to_qkv``,
  ``mlp.0/2``, ``cls_embedding [1,1,D]``, ``pos_embedding [1,N,D]``, ``head [D,P]``);
- ComfyUI ``clip_vision_h.safetensors`` = transformers ``CLIPVisionModelWithProjection``
  (``vision_model.embeddings.*``, ``vision_model.encoder.layers.{i}.self_attn.{q,k,v,out}_proj``,
  ``pre_layrnorm``, ``visual_projection``), also without the ``vision_model.`` prefix or inside a full
  ``CLIPModel`` (``text_model.*`` ignored);
- open_clip ``visual.transformer.resblocks.{i}.attn.in_proj_weight`` layout (laion ViT-H-14).

Heads are not stored in the weights: from ``num_heads=``, a ``config.json`` beside the file, or the
standard widths (768 -> 12, 1024 / 1280 / 1664 -> 16).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from pathlib import Path

import torch

from ..checkpoint import Checkpoint, CheckpointError, expect_kind, load_into, open_checkpoint
from .clip_vision import CLIPVisionConfig, CLIPVisionTower

__all__ = ["load_clip_vision", "clip_vision_plan", "CLIP_LOADER_NAME", "STANDARD_HEADS"]

CLIP_LOADER_NAME = "I2V Control Encode"
STANDARD_HEADS = {768: 12, 1024: 16, 1280: 16, 1664: 16}

# A plan entry: (file keys, how to turn them into our tensor)
#   "copy" | "cat" (concat dim 0) | "flat" (reshape to -1) | "rows" (drop leading 1) | "t" (transpose)
Plan = dict[str, tuple[tuple[str, ...], str]]

_OFFICIAL_BLOCK = {
    "norm1": "attn_norm",
    "attn.to_qkv": "qkv",
    "attn.proj": "out_proj",
    "norm2": "mlp_norm",
    "mlp.0": "fc1",
    "mlp.2": "fc2",
}
_HF_BLOCK = {
    "layer_norm1": "attn_norm",
    "self_attn.out_proj": "out_proj",
    "layer_norm2": "mlp_norm",
    "mlp.fc1": "fc1",
    "mlp.fc2": "fc2",
}
_OPEN_CLIP_BLOCK = {
    "ln_1": "attn_norm",
    "attn.out_proj": "out_proj",
    "ln_2": "mlp_norm",
    "mlp.c_fc": "fc1",
    "mlp.c_proj": "fc2",
}


def _find(keys: list[str], suffix: str) -> str | None:
    hits = [k for k in keys if k == suffix or k.endswith("." + suffix)]
    return min(hits, key=len) if hits else None


def _blocks(keys: list[str], prefix: str, table: dict[str, str], plan: Plan) -> None:
    pat = re.compile(re.escape(prefix) + r"(\d+)\.(.+)\.(weight|bias)$")
    for k in keys:
        m = pat.match(k)
        if m and m.group(2) in table:
            plan[f"blocks.{m.group(1)}.{table[m.group(2)]}.{m.group(3)}"] = ((k,), "copy")


def clip_vision_plan(keys: list[str]) -> tuple[Plan, str]:
    """``({our_name: (file_keys, op)}, layout)`` for a CLIP checkpoint's keys; layout is
    ``"official"``, ``"transformers"`` or ``"open_clip"``. Text-tower keys are left out."""
    plan: Plan = {}
    if (cls := _find(keys, "embeddings.class_embedding")) is not None:
        p = cls[: -len("embeddings.class_embedding")]
        plan["class_embedding"] = ((cls,), "copy")
        plan["patch_embedding.weight"] = ((p + "embeddings.patch_embedding.weight",), "copy")
        plan["position_embedding"] = ((p + "embeddings.position_embedding.weight",), "copy")
        for ours, theirs in (("pre_norm", "pre_layrnorm"), ("post_norm", "post_layernorm")):
            for w in ("weight", "bias"):
                plan[f"{ours}.{w}"] = ((f"{p}{theirs}.{w}",), "copy")
        _blocks(keys, p + "encoder.layers.", _HF_BLOCK, plan)
        lp = p + "encoder.layers."
        for i in sorted({int(k[len(lp) :].split(".")[0]) for k in keys if k.startswith(lp)}):
            for w in ("weight", "bias"):
                plan[f"blocks.{i}.qkv.{w}"] = (
                    tuple(f"{lp}{i}.self_attn.{n}_proj.{w}" for n in "qkv"),
                    "cat",
                )
        proj = _find(keys, "visual_projection.weight")
        if proj is not None:
            plan["projection.weight"] = ((proj,), "copy")
        return plan, "transformers"
    if (cls := _find(keys, "cls_embedding")) is not None:
        p = cls[: -len("cls_embedding")]
        plan["class_embedding"] = ((cls,), "flat")
        plan["position_embedding"] = ((p + "pos_embedding",), "rows")
        plan["patch_embedding.weight"] = ((p + "patch_embedding.weight",), "copy")
        for n in ("pre_norm", "post_norm"):
            for w in ("weight", "bias"):
                plan[f"{n}.{w}"] = ((f"{p}{n}.{w}",), "copy")
        _blocks(keys, p + "transformer.", _OFFICIAL_BLOCK, plan)
        if p + "head" in keys:
            plan["projection.weight"] = ((p + "head",), "t")
        return plan, "official"
    if (cls := _find(keys, "class_embedding")) is not None:
        p = cls[: -len("class_embedding")]
        plan["class_embedding"] = ((cls,), "copy")
        plan["position_embedding"] = ((p + "positional_embedding",), "copy")
        plan["patch_embedding.weight"] = ((p + "conv1.weight",), "copy")
        for ours, theirs in (("pre_norm", "ln_pre"), ("post_norm", "ln_post")):
            for w in ("weight", "bias"):
                plan[f"{ours}.{w}"] = ((f"{p}{theirs}.{w}",), "copy")
        _blocks(keys, p + "transformer.resblocks.", _OPEN_CLIP_BLOCK, plan)
        rp = p + "transformer.resblocks."
        for k in keys:
            if k.startswith(rp) and k.endswith(("attn.in_proj_weight", "attn.in_proj_bias")):
                i = k[len(rp) :].split(".")[0]
                plan[f"blocks.{i}.qkv.{'weight' if k.endswith('weight') else 'bias'}"] = ((k,), "copy")
        if p + "proj" in keys:
            plan["projection.weight"] = ((p + "proj",), "t")
        return plan, "open_clip"
    raise CheckpointError(
        "no CLIP class embedding found (vision_model.embeddings.class_embedding / visual.cls_embedding)"
    )


def _shape(ck: Checkpoint, keys: tuple[str, ...], op: str) -> tuple[int, ...]:
    shapes = [ck.shape(k) for k in keys]
    s = shapes[0]
    if op == "cat":
        return (sum(x[0] for x in shapes), *s[1:])
    if op == "flat":
        return (math.prod(s),)
    if op == "rows":
        return tuple(s[1:]) if len(s) == 3 else tuple(s)
    if op == "t":
        return tuple(reversed(s))
    return tuple(s)


def _reader(ck: Checkpoint, keys: tuple[str, ...], op: str) -> Callable[[], torch.Tensor]:
    def read() -> torch.Tensor:
        ts = [ck.get(k) for k in keys]
        if op == "cat":
            return torch.cat(ts, 0)
        if op == "flat":
            return ts[0].reshape(-1)
        if op == "rows":
            return ts[0].reshape(ts[0].shape[-2], ts[0].shape[-1])
        if op == "t":
            return ts[0].t().contiguous()
        return ts[0]

    return read


def _num_heads(ck: Checkpoint, dim: int, num_heads: int | None) -> int:
    if num_heads:
        return num_heads
    folder = ck.path if ck.path.is_dir() else ck.path.parent
    for name in ("config.json", "clip_vision_config.json"):
        p = Path(folder) / name
        if p.is_file():
            try:
                cfg = json.loads(p.read_text())
                cfg = cfg.get("vision_config", cfg)
                if cfg.get("hidden_size") == dim and cfg.get("num_attention_heads"):
                    return int(cfg["num_attention_heads"])
            except (OSError, ValueError, AttributeError):
                pass
    if dim in STANDARD_HEADS:
        return STANDARD_HEADS[dim]
    raise CheckpointError(
        f"{ck.path}: CLIP vision width {dim} is not a standard one; pass num_heads= (the file does not store it)."
    )


def clip_vision_config(ck: Checkpoint, plan: Plan, num_heads: int | None = None) -> CLIPVisionConfig:
    shapes = {ours: _shape(ck, keys, op) for ours, (keys, op) in plan.items()}
    dim, _, patch, _ = shapes["patch_embedding.weight"]
    positions = shapes["position_embedding"][0]
    grid = math.isqrt(positions - 1)
    if grid * grid != positions - 1:
        raise CheckpointError(
            f"{ck.path}: {positions} position embeddings is not 1 + a square grid of patches."
        )
    layers = 1 + max(int(k.split(".")[1]) for k in shapes if k.startswith("blocks."))
    return CLIPVisionConfig(
        image_size=grid * patch,
        patch_size=patch,
        dim=dim,
        num_heads=_num_heads(ck, dim, num_heads),
        num_layers=layers,
        mlp_dim=shapes["blocks.0.fc1.weight"][0],
        projection_dim=shapes["projection.weight"][0] if "projection.weight" in shapes else 0,
    )


def load_clip_vision(
    path: str | os.PathLike | Checkpoint,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
    num_heads: int | None = None,
) -> CLIPVisionTower:
    """Load a CLIP vision tower (see module doc). ``dtype`` default: the file's (fp16 for ComfyUI's)."""
    ck = path if isinstance(path, Checkpoint) else open_checkpoint(path)
    expect_kind(ck, "clip_vision", CLIP_LOADER_NAME)
    keys = ck.keys()
    try:
        plan, _layout = clip_vision_plan(keys)
    except CheckpointError as e:
        raise CheckpointError(f"{ck.path}: {e}") from e
    missing = sorted({k for ks, _ in plan.values() for k in ks if k not in ck})
    if missing:
        raise CheckpointError(
            f"{ck.path}: CLIP vision tensors missing: {missing[:5]}{' ...' if len(missing) > 5 else ''}. "
            "The file is incomplete or of an unsupported variant."
        )
    cfg = clip_vision_config(ck, plan, num_heads)
    if dtype is None:
        dtype = ck.dtype(plan["patch_embedding.weight"][0][0])
        dtype = dtype if dtype in (torch.float16, torch.bfloat16, torch.float32) else torch.float16
    with torch.device("meta"):
        model = CLIPVisionTower(cfg)
    readers = {ours: _reader(ck, keys_, op) for ours, (keys_, op) in plan.items()}
    load_into(model, readers, ck.path, dtype=dtype, device=device)
    return model.eval().requires_grad_(False)
