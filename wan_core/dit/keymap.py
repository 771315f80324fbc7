"""Key naming of every Wan DiT checkpoint format, mapped onto the official names (= ``WanDiT``'s).

Formats (FACTS 2):
- ``official``: bare ``WanModel`` state-dict keys (``blocks.0.self_attn.q.weight``);
- ``comfyui``: the same under ``model.diffusion_model.`` (ComfyUI repackaged / saved checkpoints);
- ``wrapper``: the same under ``model.`` (Self-Forcing / CausVid ``WanDiffusionWrapper`` training dicts,
  Krea realtime 14B safetensors, some ComfyUI exports);
- ``diffusers``: ``WanTransformer3DModel`` names (``blocks.0.attn1.to_q.weight``; diffusers'
  ``norm2`` is the official cross-attention ``norm3``), optionally prefixed as above.
Quantization suffixes (``.scale_weight``, ``.weight_scale``, ...) ride along: only the module path is
renamed.
"""

from __future__ import annotations

import re

__all__ = ["PREFIXES", "strip_prefix", "is_diffusers", "diffusers_to_official", "official_to_diffusers"]

# prefix -> format name; tried longest first
PREFIXES = {
    "model.diffusion_model.": "comfyui",
    "diffusion_model.": "comfyui",
    "model.model.": "wrapper",
    "model.": "wrapper",
    "net.": "wrapper",
}

_TOP = [
    ("time_embedding.0", "condition_embedder.time_embedder.linear_1"),
    ("time_embedding.2", "condition_embedder.time_embedder.linear_2"),
    ("text_embedding.0", "condition_embedder.text_embedder.linear_1"),
    ("text_embedding.2", "condition_embedder.text_embedder.linear_2"),
    ("time_projection.1", "condition_embedder.time_proj"),
    ("img_emb.proj.0", "condition_embedder.image_embedder.norm1"),
    ("img_emb.proj.1", "condition_embedder.image_embedder.ff.net.0.proj"),
    ("img_emb.proj.3", "condition_embedder.image_embedder.ff.net.2"),
    ("img_emb.proj.4", "condition_embedder.image_embedder.norm2"),
    ("img_emb.emb_pos", "condition_embedder.image_embedder.pos_embed"),
    ("head.modulation", "scale_shift_table"),
    ("head.head", "proj_out"),
    ("patch_embedding", "patch_embedding"),
]
_BLOCK = [
    ("modulation", "scale_shift_table"),
    ("norm3", "norm2"),
    ("ffn.0", "ffn.net.0.proj"),
    ("ffn.2", "ffn.net.2"),
]
for _off, _dif in (("self_attn", "attn1"), ("cross_attn", "attn2")):
    _BLOCK += [
        (f"{_off}.q", f"{_dif}.to_q"),
        (f"{_off}.k", f"{_dif}.to_k"),
        (f"{_off}.v", f"{_dif}.to_v"),
        (f"{_off}.o", f"{_dif}.to_out.0"),
        (f"{_off}.norm_q", f"{_dif}.norm_q"),
        (f"{_off}.norm_k", f"{_dif}.norm_k"),
    ]
_BLOCK += [
    ("cross_attn.k_img", "attn2.add_k_proj"),
    ("cross_attn.v_img", "attn2.add_v_proj"),
    ("cross_attn.norm_k_img", "attn2.norm_added_k"),
]

_BLOCK_RE = re.compile(r"^(blocks\.\d+\.)(.*)$")


def _rename(key: str, pairs: list[tuple[str, str]], reverse: bool) -> str | None:
    for off, dif in pairs:
        src, dst = (dif, off) if reverse else (off, dif)
        if key == src or key.startswith(src + "."):
            return dst + key[len(src) :]
    return None


def _convert(key: str, reverse: bool) -> str | None:
    m = _BLOCK_RE.match(key)
    if m:
        rest = _rename(m.group(2), _BLOCK, reverse)
        return None if rest is None else m.group(1) + rest
    return _rename(key, _TOP, reverse)


def diffusers_to_official(key: str) -> str | None:
    """Official name of a diffusers ``WanTransformer3DModel`` key (None when it has none)."""
    return _convert(key, reverse=True)


def official_to_diffusers(key: str) -> str | None:
    return _convert(key, reverse=False)


# other models bundled in a ComfyUI all-in-one checkpoint next to ``model.diffusion_model.``
BUNDLED_PREFIXES = (
    "first_stage_model.",
    "vae.",
    "text_encoders.",
    "cond_stage_model.",
    "clip_vision.",
    "conditioner.",
)


def strip_prefix(keys: list[str]) -> tuple[str, str]:
    """The wrapper prefix of the DiT keys -> (prefix, format name); ("", "official") when bare.

    Taken from the key holding the patch embedding (present in every format), else the prefix most
    keys carry."""
    for k in keys:
        if k.endswith("patch_embedding.weight"):
            prefix = k[: -len("patch_embedding.weight")]
            if prefix in PREFIXES:
                return prefix, PREFIXES[prefix]
            if prefix == "":
                return "", "official"
    n = max(len(keys), 1)
    for prefix in sorted(PREFIXES, key=len, reverse=True):
        hits = sum(k.startswith(prefix) for k in keys)
        if hits * 2 > n:
            return prefix, PREFIXES[prefix]
    return "", "official"


def is_diffusers(keys: list[str]) -> bool:
    return any(k.startswith("condition_embedder.") or ".attn1.to_q." in k for k in keys)


# -- weight sets of training checkpoints -----------------------------------------------------------------
# Training checkpoints of the causal families hold several weight sets side by side: ``generator`` (the
# trained weights), ``generator_ema`` (their EMA) and ``critic`` (the DMD fake score, not a generator).
# Which set the official inference loads differs per family (see ``RolloutPreset.weight_set``).
WEIGHT_SETS = ("generator", "generator_ema")
WEIGHT_CHOICES = ("auto", *WEIGHT_SETS)
# other wrappers around a single state dict (not a choice: a file holds at most one of them)
_SINGLE_WRAPPERS = ("state_dict", "model_state_dict", "module", "model", "ema")


def weight_set_wrappers(weights: str, prefer: str = "generator_ema") -> tuple[str, ...]:
    """Wrapper keys to look inside a training dict, in order of preference, for a weight-set choice.

    ``"auto"``: the ``prefer``red set when the file has it, else the other one; an explicit set alone (the
    loader refuses a file that holds weight sets but not the requested one); then the single-state-dict
    wrappers."""
    if weights not in WEIGHT_CHOICES:
        raise ValueError(f"weight set must be one of {list(WEIGHT_CHOICES)}, got {weights!r}")
    if prefer not in WEIGHT_SETS:
        raise ValueError(f"preferred weight set must be one of {list(WEIGHT_SETS)}, got {prefer!r}")
    if weights == "auto":
        return (prefer, *(w for w in WEIGHT_SETS if w != prefer), *_SINGLE_WRAPPERS)
    return (weights, *_SINGLE_WRAPPERS)
