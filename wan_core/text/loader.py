"""Loading UMT5 text-encoder weights of every format users have into ``UMT5Encoder``.

Formats (FACTS 2(f)):
- official Wan ``models_t5_umt5-xxl-enc-bf16.pth`` (``token_embedding``, ``blocks.{i}.attn.q`` ...);
- ComfyUI ``umt5_xxl_fp16.safetensors`` / ``umt5_xxl_fp8_e4m3fn_scaled.safetensors`` and the
  transformers layout (``shared.weight``, ``encoder.block.{i}.layer.0.SelfAttention.q`` ...; a sharded
  folder with an ``*.index.json``, a full T5 with a decoder: the decoder is ignored);
- fp8 weights (legacy ``scale_weight`` or ``weight_scale``, or plain fp8 without a scale) stay fp8 in
  ``ScaledFP8Linear``.

The model is built on the meta device from the shapes in the file, then loaded strictly tensor by
tensor (``wan_core.checkpoint.load_into``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

import torch

from ..checkpoint import Checkpoint, CheckpointError, expect_kind, load_into, open_checkpoint
from ..memory import TEXT_LOAD_FIXES, describe_load, explain_oom
from ..quant import is_fp8, split_quant_keys, swap_fp8_linears
from .umt5 import UMT5Config, UMT5Encoder

__all__ = ["load_umt5", "umt5_key_map", "umt5_config_from_shapes", "UMT5_LOADER_NAME"]

UMT5_LOADER_NAME = "Encode UMT5 Prompt"

# per-block renames: official Wan name -> ours, transformers name -> ours
_OFFICIAL_BLOCK = {
    "norm1.weight": "attn_norm.weight",
    "attn.q.weight": "attn.q.weight",
    "attn.k.weight": "attn.k.weight",
    "attn.v.weight": "attn.v.weight",
    "attn.o.weight": "attn.o.weight",
    "pos_embedding.embedding.weight": "attn.relative_bias.weight",
    "norm2.weight": "ffn_norm.weight",
    "ffn.gate.0.weight": "ffn.gate_proj.weight",
    "ffn.fc1.weight": "ffn.up_proj.weight",
    "ffn.fc2.weight": "ffn.down_proj.weight",
}
_HF_BLOCK = {
    "layer.0.layer_norm.weight": "attn_norm.weight",
    "layer.0.SelfAttention.q.weight": "attn.q.weight",
    "layer.0.SelfAttention.k.weight": "attn.k.weight",
    "layer.0.SelfAttention.v.weight": "attn.v.weight",
    "layer.0.SelfAttention.o.weight": "attn.o.weight",
    "layer.0.SelfAttention.relative_attention_bias.weight": "attn.relative_bias.weight",
    "layer.1.layer_norm.weight": "ffn_norm.weight",
    "layer.1.DenseReluDense.wi_0.weight": "ffn.gate_proj.weight",
    "layer.1.DenseReluDense.wi_1.weight": "ffn.up_proj.weight",
    "layer.1.DenseReluDense.wo.weight": "ffn.down_proj.weight",
}
_OFFICIAL_RE = re.compile(r"^blocks\.(\d+)\.(.+)$")
_HF_RE = re.compile(r"^encoder\.block\.(\d+)\.(.+)$")
# keys that are not encoder weights: tokenizer bytes, quantization markers, decoder / LM head
_IGNORED_PREFIXES = ("decoder.", "lm_head.")
_IGNORED_KEYS = ("spiece_model", "scaled_fp8")


def _strip_prefix(keys: list[str]) -> str:
    """A common prefix in front of the encoder names (e.g. ``text_encoders.umt5xxl.transformer.``)."""
    for anchor in ("encoder.final_layer_norm.weight", "token_embedding.weight", "shared.weight"):
        for k in keys:
            if k.endswith(anchor):
                return k[: -len(anchor)]
    return ""


def umt5_key_map(keys: list[str]) -> tuple[dict[str, str], str]:
    """Map checkpoint tensor names to ``UMT5Encoder`` names.

    Returns ``({our_name: file_key}, layout)`` with layout ``"official"`` or ``"transformers"``.
    Scale keys of fp8 layers map to ``<layer>.weight_scale``. Keys that are not encoder weights are
    left out; any other unknown key is kept under its own name so strict loading names it.
    """
    prefix = _strip_prefix(keys)
    names = [k[len(prefix) :] for k in keys if k.startswith(prefix)]
    layout = "transformers" if any(n.startswith("encoder.block.") for n in names) else "official"
    scales, dropped = split_quant_keys(names)
    scale_keys = set(scales.values())
    dropped = set(dropped)
    out: dict[str, str] = {}

    def ours(name: str) -> str:
        if layout == "official":
            m = _OFFICIAL_RE.match(name)
            if m and m.group(2) in _OFFICIAL_BLOCK:
                return f"blocks.{m.group(1)}.{_OFFICIAL_BLOCK[m.group(2)]}"
            return {
                "token_embedding.weight": "token_embedding.weight",
                "norm.weight": "final_norm.weight",
            }.get(name, name)
        m = _HF_RE.match(name)
        if m and m.group(2) in _HF_BLOCK:
            return f"blocks.{m.group(1)}.{_HF_BLOCK[m.group(2)]}"
        return {
            "shared.weight": "token_embedding.weight",
            "encoder.embed_tokens.weight": "token_embedding.weight",
            "encoder.final_layer_norm.weight": "final_norm.weight",
        }.get(name, name)

    has_shared = "shared.weight" in names
    for name in names:
        if name in dropped or name in _IGNORED_KEYS or name.startswith(_IGNORED_PREFIXES):
            continue
        if name == "encoder.embed_tokens.weight" and has_shared:
            continue  # tied copy of shared.weight
        if name in scale_keys:
            layer = name.rsplit(".", 1)[0]
            target = ours(layer + ".weight")
            out[target[: -len("weight")] + "weight_scale"] = prefix + name
            continue
        out[ours(name)] = prefix + name
    return out, layout


def umt5_config_from_shapes(shapes: dict[str, tuple[int, ...]], path: str | os.PathLike = "") -> UMT5Config:
    """Config from mapped (our-name) shapes. Heads and buckets come from the relative-bias tables."""
    try:
        vocab, dim = shapes["token_embedding.weight"]
        buckets, heads = shapes["blocks.0.attn.relative_bias.weight"]
        attn_dim = shapes["blocks.0.attn.q.weight"][0]
        ffn_dim = shapes["blocks.0.ffn.gate_proj.weight"][0]
    except KeyError as e:
        raise CheckpointError(
            f"{path}: UMT5 weight {e} not found (need the token embedding, the per-layer relative "
            "position bias, attention and gated feed-forward weights)."
        ) from e
    layers = 1 + max(int(k.split(".")[1]) for k in shapes if k.startswith("blocks."))
    if layers > 1 and "blocks.1.attn.relative_bias.weight" not in shapes:
        raise CheckpointError(
            f"{path}: only the first layer has a relative position bias: this is a T5 v1.1 encoder "
            "(e.g. the t5xxl of Flux / SD3), not UMT5-XXL. Wan needs umt5-xxl "
            "(umt5_xxl_fp16.safetensors or models_t5_umt5-xxl-enc-bf16.pth)."
        )
    return UMT5Config(
        vocab_size=vocab,
        dim=dim,
        attn_dim=attn_dim,
        ffn_dim=ffn_dim,
        num_heads=heads,
        num_layers=layers,
        num_buckets=buckets,
    )


def _default_dtype(ck: Checkpoint, key_map: dict[str, str]) -> torch.dtype:
    dt = ck.dtype(key_map["final_norm.weight"]) if "final_norm.weight" in key_map else torch.float32
    return dt if dt.is_floating_point and not is_fp8(dt) else torch.bfloat16


@explain_oom(describe_load("UMT5 text encoder", TEXT_LOAD_FIXES))
def load_umt5(
    path: str | os.PathLike | Checkpoint,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
) -> UMT5Encoder:
    """Load a UMT5 encoder from any supported file / sharded folder.

    ``dtype``: compute dtype of the non-fp8 weights (default: the file's, e.g. bf16 for the official
    file, fp16 for ComfyUI's). fp8 Linear weights stay fp8 (``ScaledFP8Linear``) whatever ``dtype``
    is. ``device``: where the weights go ("cpu" for small GPUs).
    """
    ck = path if isinstance(path, Checkpoint) else open_checkpoint(path)
    expect_kind(ck, "umt5", UMT5_LOADER_NAME)
    key_map, _layout = umt5_key_map(ck.keys())
    shapes = {ours: ck.shape(k) for ours, k in key_map.items()}
    cfg = umt5_config_from_shapes(shapes, ck.path)
    dtype = dtype or _default_dtype(ck, key_map)

    fp8_layers = sorted(
        ours[: -len(".weight")]
        for ours, k in key_map.items()
        if ours.endswith(".weight") and is_fp8(ck.dtype(k)) and ours != "token_embedding.weight"
    )
    with torch.device("meta"):
        model = UMT5Encoder(cfg)
    swap_fp8_linears(model, fp8_layers)

    readers: dict[str, Callable[[], torch.Tensor]] = {}
    for ours, k in key_map.items():
        if ours.endswith(".weight_scale"):  # per-tensor scale, stored as [] or [1]
            readers[ours] = lambda k=k: ck.get(k, torch.float32).reshape(())
        else:
            readers[ours] = lambda k=k: ck.get(k)
    for layer in fp8_layers:  # plain fp8 files carry no scale: scale 1
        readers.setdefault(f"{layer}.weight_scale", lambda: torch.ones((), dtype=torch.float32))
    for scale_name in [n for n in readers if n.endswith(".weight_scale")]:
        layer = scale_name[: -len(".weight_scale")]
        if (
            layer not in fp8_layers and f"{layer}.weight" in readers
        ):  # a scaled tensor we do not keep in fp8 (e.g. the embedding): fold in
            weight, scale = readers[f"{layer}.weight"], readers.pop(scale_name)
            readers[f"{layer}.weight"] = lambda w=weight, s=scale: w().float() * s()

    fp8_weights = {f"{layer}.weight" for layer in fp8_layers}

    def keep(name: str, t: torch.Tensor) -> bool:
        return name in fp8_weights or name.endswith(".weight_scale")

    load_into(model, readers, ck.path, dtype=dtype, device=device, keep_dtype=keep)
    # an fp8 embedding table (not a Linear) has been dequantized / upcast to ``dtype`` by now
    return model.eval().requires_grad_(False)
