"""From a preset and a ComfyUI-style models folder to a ready ``StreamingPipeline``.

``resolve_files`` finds (or downloads) every file the preset needs; ``encode_text`` runs UMT5 once for
all prompts and frees it (the 5.7 B encoder is never resident next to the DiT); ``build_pipeline``
loads the DiT (+ LoRA), the VAE / TAEHV decoder, CLIP vision, and wires the pipeline.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import torch

from .model_files import ensure_model_files
from .pipeline import StreamingPipeline
from .presets import RolloutPreset

__all__ = ["resolve_files", "encode_text", "build_pipeline"]


def resolve_files(
    preset: RolloutPreset,
    models_dir: str | os.PathLike,
    decoder: str = "vae",
    download: bool = False,
    log=print,
) -> dict[str, Path]:
    """``{role: path}`` of every file ``preset`` needs with ``decoder``; missing -> download or one clear
    error listing every missing file."""
    specs = preset.files(decoder)
    paths = ensure_model_files(models_dir, specs, download=download, preset=preset.name, log=log)
    return {spec.role: path for spec, path in zip(specs, paths, strict=True)}


@torch.no_grad()
def encode_text(path: str | os.PathLike, prompts: list[str], device="cpu", dtype=None) -> list[torch.Tensor]:
    """UMT5 embeddings ``[L_i, 4096]`` of ``prompts`` (on ``device``), loading and freeing the encoder."""
    from wan_core.text import encode_prompts, load_tokenizer, load_umt5

    enc = load_umt5(path, dtype=dtype, device=device)
    tok = load_tokenizer(path)
    try:
        return [e.float() for e in encode_prompts(enc, tok, prompts)]
    finally:
        del enc
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def build_pipeline(
    preset: RolloutPreset,
    files: dict[str, Path],
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    vae_dtype: torch.dtype | None = None,
    decoder: str = "vae",
    attention: str = "auto",
    weights: str = "auto",
    **pipeline_kw,
) -> StreamingPipeline:
    """Load the models of ``files`` (from ``resolve_files``) and return the pipeline.

    ``dtype``: DiT compute dtype (default bf16 on CUDA, fp32 on CPU); ``vae_dtype`` likewise.
    ``pipeline_kw`` go to ``StreamingPipeline`` (cuda_graphs, compile, rope, progress, interrupt, ...).
    ``weights``: the DiT's weight set ("auto": the preset's official one, ``RolloutPreset.weight_set``,
    where the file holds several).
    """
    from wan_core.dit.loader import load_dit
    from wan_core.vae import EncoderOnDevice, load_taehv, load_vae, rollout_decoder

    device = torch.device(device)
    cuda = device.type == "cuda"
    dtype = dtype or (torch.bfloat16 if cuda else torch.float32)
    vae_dtype = vae_dtype or (torch.bfloat16 if cuda else torch.float32)
    dit_paths = [files["dit"]] + ([files["dit_low_noise"]] if "dit_low_noise" in files else [])
    dit = load_dit(
        dit_paths if len(dit_paths) > 1 else dit_paths[0],
        dtype=dtype,
        device=device,
        attention=attention,
        weights=weights,
        prefer=preset.weight_set,
    )
    if "lora" in files:
        from .lora import merge_lora

        merge_lora(dit, files["lora"])
    vae = load_vae(files["vae"], dtype=vae_dtype, device=device) if "vae" in files else None
    if decoder == "taehv":
        dec = rollout_decoder(load_taehv(files["taehv"], dtype=vae_dtype, device=device))
    elif decoder == "vae":
        dec = rollout_decoder(vae)
    elif decoder == "none":
        dec = None
    else:
        raise ValueError(f"decoder must be 'vae', 'taehv' or 'none', got {decoder!r}")
    clip_fn = None
    if "clip_vision" in files:
        from functools import partial

        from wan_core.clip import encode_image, load_clip_vision

        # image [B, 3, H, W] in [-1, 1] -> clip_fea [B, 257, 1280]
        clip_fn = partial(encode_image, load_clip_vision(files["clip_vision"], device=device))

    return StreamingPipeline(
        dit,
        preset,
        vae=None if vae is None else EncoderOnDevice(vae),
        decoder=dec,
        clip_vision=clip_fn,
        **pipeline_kw,
    )
