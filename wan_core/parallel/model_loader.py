"""What a context-parallel worker loads for the ComfyUI sampler: the ``RolloutSpec.load`` hook.

``PipelineFromFiles`` is a small frozen (hashable, picklable) description of the models the ComfyUI
process already loaded: each DiT file with the precision / attention / LoRA its loader used, the
Wan VAE file (image conditioning only) and the preset overrides. Each worker calls it once and keeps
the pipeline between jobs (``rollout_job`` reloads only when the description changes). The workers
never decode (the ComfyUI process previews the returned latents itself) and load no text encoder
or CLIP vision model: the spec carries the embeddings and the CLIP features.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["DiTFile", "PipelineFromFiles"]


@dataclass(frozen=True)
class DiTFile:
    """One DiT file and how to load it (``dtype``: a ``torch`` dtype name, e.g. ``"bfloat16"``)."""

    path: str
    dtype: str = "float32"
    attention: str = "auto"
    lora_path: str | None = None
    lora_strength: float = 1.0
    fp8_linear: bool = False  # FP8 math in the blocks' Linears (after the LoRA merge), as Load Wan DiT did

    def load(self, device: torch.device) -> torch.nn.Module:
        from ..accel import prepare_dit
        from ..dit.loader import load_dit

        model = load_dit(self.path, dtype=getattr(torch, self.dtype), device=device, attention=self.attention)
        # LoRA merge -> FP8 math (the pipeline built on it fuses q/k/v and compiles: prepare_dit's order)
        prepare_dit(model, lora=self.lora_path, lora_strength=self.lora_strength, fp8_linear=self.fp8_linear)
        return model


@dataclass(frozen=True)
class PipelineFromFiles:
    """``load(ctx, spec) -> StreamingPipeline`` for ``RolloutSpec.load`` (see the module docstring).

    ``low_noise``: the Wan2.2 A14B low-noise expert (``dit`` is then the high-noise one).
    ``preset_overrides``: ``((name, value), ...)`` applied with ``RolloutPreset.with_overrides``.
    """

    dit: DiTFile
    low_noise: DiTFile | None = None
    vae_path: str | None = None
    vae_dtype: str = "float32"
    preset_overrides: tuple = ()
    cuda_graphs: bool = False
    compile: bool = False

    def __call__(self, ctx, spec):
        from ..rollout.pipeline import StreamingPipeline
        from ..rollout.presets import get_preset

        preset = get_preset(spec.preset)
        if self.preset_overrides:
            preset = preset.with_overrides(**dict(self.preset_overrides))
        model = self.dit.load(ctx.device)
        if self.low_noise is not None:
            from ..dit import DualExpertDiT

            model = DualExpertDiT(model, self.low_noise.load(ctx.device), preset.boundary)
        vae = None
        if self.vae_path is not None:
            from ..vae.loader import load_vae
            from ..vae.stream import EncoderOnDevice

            vae = EncoderOnDevice(
                load_vae(self.vae_path, dtype=getattr(torch, self.vae_dtype), device=ctx.device)
            )
        return StreamingPipeline(model, preset, vae=vae, cuda_graphs=self.cuda_graphs, compile=self.compile)
