"""Streaming AR Sampler: chunk-by-chunk autoregressive generation with a rolling KV cache.

Thin: the rollout is ``wan_core.rollout.StreamingPipeline``; this node adds ComfyUI's progress bar
(one tick per denoising step), interruption within a step, and the live preview (each finished chunk
decoded with the TAEHV and sent to the browser's player on this node).
"""

from __future__ import annotations

from comfy_api.latest import io

from . import core_bridge
from .socket_types import CATEGORY, WanConditioning, WanDiT, WanVAE


def preset_names() -> list[str]:
    """Preset names of ``wan_core.rollout.presets`` (stable strings, saved in workflows)."""
    from wan_core.rollout.presets import PRESETS

    return list(PRESETS)


class WanStreamARSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="WanStreamARSampler",
            display_name="Streaming AR Sampler (Wan Stream)",
            category=CATEGORY,
            description=(
                "Generates the video autoregressively, chunk by chunk, with a rolling KV cache (attention "
                "sink + sliding window), so length is not limited by memory. Presets carry each method's "
                "steps, shift, chunk size and guidance. Shows every finished chunk in the player below while "
                "it generates (connect a TAEHV to preview_vae). Outputs the raw video LATENT."
            ),
            inputs=[
                WanDiT.Input("dit", tooltip="The Wan DiT from Load Wan DiT."),
                WanConditioning.Input(
                    "conditioning",
                    tooltip="From Encode UMT5 Prompt (T2V) or I2V Control Encode (I2V / TI2V).",
                ),
                io.Int.Input(
                    "width",
                    default=832,
                    min=16,
                    max=4096,
                    step=16,
                    tooltip="Video width in pixels (a multiple of 16; 32 for TI2V 5B).",
                ),
                io.Int.Input(
                    "height",
                    default=480,
                    min=16,
                    max=4096,
                    step=16,
                    tooltip="Video height in pixels (a multiple of 16; 32 for TI2V 5B).",
                ),
                io.Int.Input(
                    "frames",
                    default=81,
                    min=1,
                    max=100001,
                    step=4,
                    tooltip="Number of video frames, 4k+1 (e.g. 81 = 21 latent frames); the latent frames must "
                    "fill whole chunks of the preset's chunk size.",
                ),
                io.Combo.Input(
                    "preset",
                    options=preset_names(),
                    default="self-forcing-1.3b",
                    tooltip="How the checkpoint samples (its published settings): Self-Forcing, CausVid, "
                    "LongLive, Rolling Forcing, Causal Forcing, Krea realtime (few-step AR, chunk by chunk), "
                    "Wan2.2 TI2V 5B, Wan2.2 A14B and base Wan 2.1 (many-step with CFG, one chunk).",
                ),
                io.Int.Input(
                    "seed",
                    default=0,
                    min=0,
                    max=0xFFFFFFFFFFFFFFFF,
                    control_after_generate=True,
                    tooltip="Noise seed.",
                ),
                io.Int.Input(
                    "window_frames",
                    default=-1,
                    min=-1,
                    max=4096,
                    tooltip="Attention window in latent frames, the current chunk included (-1: the preset's, e.g. 21 "
                    "for Self-Forcing). Memory grows with it, not with the video length.",
                ),
                io.Int.Input(
                    "sink_frames",
                    default=-1,
                    min=-1,
                    max=4096,
                    tooltip="First latent frames kept forever as attention sink (-1: the preset's; 0: none).",
                ),
                io.Int.Input(
                    "chunks",
                    default=0,
                    min=0,
                    max=100000,
                    tooltip="If above 0: generate this many chunks instead of 'frames' (frames follow from the preset's chunk size).",
                ),
                WanVAE.Input(
                    "preview_vae",
                    optional=True,
                    tooltip="Optional TAEHV (or full VAE) that decodes every finished chunk for the live preview.",
                ),
                WanDiT.Input(
                    "dit_low_noise",
                    optional=True,
                    tooltip="Wan2.2 A14B only: the low-noise expert (then 'dit' is the high-noise expert).",
                ),
                io.Int.Input(
                    "gpus",
                    optional=True,
                    default=1,
                    min=1,
                    max=16,
                    tooltip="1 = in-process single GPU (default). N > 1 = N local worker processes, one GPU "
                    "each, splitting the DiT's tokens (context parallelism); they load the DiT from its file "
                    "with the loader's settings and stay up, models loaded, for the next run. Progress then "
                    "advances per chunk.",
                ),
                io.Combo.Input(
                    "context_parallel",
                    optional=True,
                    options=["ulysses", "ring"],
                    default="ulysses",
                    tooltip="How the GPUs split attention when gpus > 1. ulysses: each GPU takes a share of the "
                    "attention heads (gpus must divide the head count: 12 for 1.3B, 24 for 5B, 40 for 14B). "
                    "ring: each GPU takes a share of every frame's tokens (any head count).",
                ),
            ],
            outputs=[
                io.Latent.Output(display_name="latent", tooltip="Raw Wan video latent [1, C, F, H/8, W/8].")
            ],
        )

    @classmethod
    def execute(
        cls,
        dit,
        conditioning,
        width,
        height,
        frames,
        preset,
        seed,
        window_frames,
        sink_frames,
        chunks,
        preview_vae=None,
        dit_low_noise=None,
        gpus=1,
        context_parallel="ulysses",
    ) -> io.NodeOutput:
        samples = core_bridge.sample(
            dit,
            conditioning,
            width=width,
            height=height,
            frames=frames,
            preset=preset,
            seed=seed,
            window_frames=window_frames,
            sink_frames=sink_frames,
            chunks=chunks,
            preview_vae=preview_vae,
            dit_low_noise=dit_low_noise,
            gpus=gpus,
            context_parallel=context_parallel,
        )
        return io.NodeOutput({"samples": samples})
