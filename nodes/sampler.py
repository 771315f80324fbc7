"""Streaming AR Sampler: chunk-by-chunk autoregressive generation with a rolling KV cache.

Thin: the rollout is ``wan_core.rollout.StreamingPipeline``; this node adds ComfyUI's progress bar
(one tick per denoising step), interruption within a step, and the live preview (each finished chunk
decoded with the TAEHV and sent to the browser's player on this node).

Saved workflows: inputs are only appended. ``window_frames``, ``sink_frames``, ``chunks``, ``gpus``
and ``context_parallel`` keep their places and meanings but are hidden in new nodes (their settings
are on Wan Stream Rollout Options, the ``options`` input; the length is ``frames``); the preset
``auto`` is appended to the combo, the default of new nodes; ``fps`` is a second output.
"""

from __future__ import annotations

from comfy_api.latest import io

from . import core_bridge
from .legacy_inputs import legacy
from .rollout_options import WanRolloutOptions
from .socket_types import CATEGORY, WanConditioning, WanDiT, WanVAE


def preset_names() -> list[str]:
    """Preset names of ``wan_core.rollout.presets`` (stable strings, saved in workflows), then
    ``auto`` (the preset of the loaded DiT; ``wan_core.rollout.preset_auto``)."""
    from wan_core.rollout.preset_auto import AUTO_PRESET
    from wan_core.rollout.presets import PRESETS

    return [*PRESETS, AUTO_PRESET]


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
                "it generates (connect a TAEHV to preview_vae). Outputs the raw video LATENT and its fps "
                "(for Create Video). Also runs the base many-step Wan models (whole video in one chunk)."
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
                    tooltip="Number of video frames, 4k+1 (e.g. 81 = 21 latent frames = 5 s at 16 fps); a "
                    "last chunk the frames do not fill is generated shorter (Rolling Forcing: whole chunks only).",
                ),
                io.Combo.Input(
                    "preset",
                    options=preset_names(),
                    default="auto",
                    tooltip="How the checkpoint samples (its published settings): Self-Forcing, CausVid, "
                    "LongLive, Rolling Forcing, Causal Forcing, Krea realtime (few-step AR, chunk by chunk), "
                    "Wan2.2 TI2V 5B, Wan2.2 A14B and base Wan 2.1 (many-step with CFG, one chunk). auto: the "
                    "preset of the loaded DiT, from its file name and layout (an error lists the candidates "
                    "when the file does not say which one).",
                ),
                io.Int.Input(
                    "seed",
                    default=0,
                    min=0,
                    max=0xFFFFFFFFFFFFFFFF,
                    control_after_generate=True,
                    tooltip="Noise seed.",
                ),
                legacy(
                    io.Int.Input(
                        "window_frames",
                        default=-1,
                        min=-1,
                        max=4096,
                        tooltip="Kept for saved workflows (new graphs: Wan Stream Rollout Options). Attention "
                        "window in latent frames, the current chunk included (-1: the preset's).",
                    )
                ),
                legacy(
                    io.Int.Input(
                        "sink_frames",
                        default=-1,
                        min=-1,
                        max=4096,
                        tooltip="Kept for saved workflows (new graphs: Wan Stream Rollout Options). First latent "
                        "frames kept forever as attention sink (-1: the preset's; 0: none).",
                    )
                ),
                legacy(
                    io.Int.Input(
                        "chunks",
                        default=0,
                        min=0,
                        max=100000,
                        tooltip="Kept for saved workflows (new graphs: frames). If above 0: generate this many "
                        "chunks instead of 'frames'.",
                    )
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
                legacy(
                    io.Int.Input(
                        "gpus",
                        optional=True,
                        default=1,
                        min=1,
                        max=16,
                        tooltip="Kept for saved workflows (new graphs: Wan Stream Rollout Options). 1 = one GPU "
                        "in this process; N > 1 = N local worker processes splitting the DiT's tokens.",
                    )
                ),
                legacy(
                    io.Combo.Input(
                        "context_parallel",
                        optional=True,
                        options=["ulysses", "ring"],
                        default="ulysses",
                        tooltip="Kept for saved workflows (new graphs: Wan Stream Rollout Options). How the GPUs "
                        "split attention when gpus > 1.",
                    )
                ),
                WanRolloutOptions.Input(
                    "options",
                    optional=True,
                    tooltip="Optional Wan Stream Rollout Options: attention window / sink, several GPUs. When "
                    "connected, its values are used (this node's hidden widgets of those names are ignored).",
                ),
            ],
            outputs=[
                io.Latent.Output(display_name="latent", tooltip="Raw Wan video latent [1, C, F, H/8, W/8]."),
                io.Float.Output(
                    display_name="fps",
                    tooltip="Frames per second of the preset (16; 24 for Wan2.2 TI2V 5B): "
                    "connect to Create Video's fps.",
                ),
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
        options=None,
    ) -> io.NodeOutput:
        video = core_bridge.sample_video(
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
            options=options,
        )
        return io.NodeOutput({"samples": video.latent}, video.fps)
