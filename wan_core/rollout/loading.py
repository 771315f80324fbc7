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

from .decoders import TAEHVDecoder, VAEDecoder
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


class _VAEEncoder:
    """The VAE as the pipeline's image encoder (inputs cast to the VAE dtype, latents out in fp32)."""

    def __init__(self, vae):
        self.vae = vae

    def new_encode_cache(self):
        return self.vae.new_encode_cache()

    @torch.no_grad()
    def encode_chunk(self, frames: torch.Tensor, cache) -> torch.Tensor:
        return self.vae.encode_chunk(frames.to(self.vae.device, self.vae.dtype), cache).float()


def build_pipeline(
    preset: RolloutPreset,
    files: dict[str, Path],
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    vae_dtype: torch.dtype | None = None,
    decoder: str = "vae",
    attention: str = "auto",
    **pipeline_kw,
) -> StreamingPipeline:
    """Load the models of ``files`` (from ``resolve_files``) and return the pipeline.

    ``dtype``: DiT compute dtype (default bf16 on CUDA, fp32 on CPU); ``vae_dtype`` likewise.
    ``pipeline_kw`` go to ``StreamingPipeline`` (cuda_graphs, compile, rope, progress, interrupt, ...).
    """
    from wan_core.dit.loader import load_dit
    from wan_core.vae import load_taehv, load_vae

    device = torch.device(device)
    cuda = device.type == "cuda"
    dtype = dtype or (torch.bfloat16 if cuda else torch.float32)
    vae_dtype = vae_dtype or (torch.bfloat16 if cuda else torch.float32)
    dit_paths = [files["dit"]] + ([files["dit_low_noise"]] if "dit_low_noise" in files else [])
    dit = load_dit(
        dit_paths if len(dit_paths) > 1 else dit_paths[0], dtype=dtype, device=device, attention=attention
    )
    if "lora" in files:
        from .lora import merge_lora

        merge_lora(dit, files["lora"])
    vae = load_vae(files["vae"], dtype=vae_dtype, device=device) if "vae" in files else None
    if decoder == "taehv":
        dec = TAEHVDecoder(load_taehv(files["taehv"], dtype=vae_dtype, device=device))
    elif decoder == "vae":
        dec = VAEDecoder(vae)
    elif decoder == "none":
        dec = None
    else:
        raise ValueError(f"decoder must be 'vae', 'taehv' or 'none', got {decoder!r}")
    clip_fn = None
    if "clip_vision" in files:
        from wan_core.text import clip_preprocess, load_clip_vision

        clip = load_clip_vision(files["clip_vision"], device=device)

        @torch.no_grad()
        def clip_fn(image: torch.Tensor) -> torch.Tensor:  # [B, 3, H, W] in [-1, 1] -> [B, 257, 1280]
            pixels = clip_preprocess(image.float(), mode="squash", size=clip.cfg.image_size)
            return clip.encode(pixels.to(device=device, dtype=next(clip.parameters()).dtype)).float()

    return StreamingPipeline(
        dit,
        preset,
        vae=None if vae is None else _VAEEncoder(vae),
        decoder=dec,
        clip_vision=clip_fn,
        **pipeline_kw,
    )
