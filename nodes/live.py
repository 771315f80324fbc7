"""Live Sampler: an endless autoregressive stream, watched and steered in the node's player while it
generates (new prompt, transition over N chunks, pause / resume, stop; also over HTTP, docs/live.md).
Stop ends the job normally: the latent output is exactly the chunks the player was sent.
"""

from __future__ import annotations

from comfy_api.latest import io

from . import live_job
from .core_bridge import TEXT_ENCODER_DEVICES
from .socket_types import CATEGORY, WanConditioning, WanDiT, WanVAE


def live_preset_names() -> list[str]:
    """The autoregressive presets (the ones that can run without a length)."""
    from wan_core.rollout.presets import PRESETS

    return [name for name, p in PRESETS.items() if p.is_autoregressive]


class WanStreamLiveSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        from wan_core.live import INTERPOLATIONS

        return io.Schema(
            node_id="WanStreamLiveSampler",
            display_name="Live Sampler (Wan Stream)",
            category=CATEGORY,
            description=(
                "Generates an endless video chunk by chunk (rolling KV cache, relative RoPE: memory stays flat) "
                "until you press Stop in the player below (or max_seconds is reached). Type a new prompt in the "
                "player to change the video from the next chunk, optionally blended over N chunks; pause and "
                "resume. Outputs the latent of exactly the chunks shown, for VAE Decode Chunk / Save Video."
            ),
            inputs=[
                WanDiT.Input("dit", tooltip="The Wan DiT from Load Wan DiT (an autoregressive checkpoint)."),
                WanConditioning.Input("conditioning", tooltip="The first prompt, from Encode UMT5 Prompt."),
                WanVAE.Input(
                    "preview_vae", tooltip="TAEHV (or a Wan VAE) that decodes each chunk for the player."
                ),
                io.Int.Input(
                    "width", default=832, min=16, max=4096, step=16, tooltip="Video width (multiple of 16)."
                ),
                io.Int.Input(
                    "height", default=480, min=16, max=4096, step=16, tooltip="Video height (multiple of 16)."
                ),
                io.Combo.Input(
                    "preset",
                    options=live_preset_names(),
                    default="self-forcing-1.3b",
                    tooltip="The autoregressive method of the checkpoint. Prompt changes use its own switch "
                    "(LongLive's KV re-cache for the causal presets); Rolling Forcing cannot switch.",
                ),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True),
                io.Float.Input(
                    "max_seconds",
                    default=0.0,
                    min=0.0,
                    max=86400.0,
                    step=1.0,
                    tooltip="0: run until Stop. Otherwise stop by itself after about this many seconds of video.",
                ),
                io.Combo.Input(
                    "interpolation",
                    options=list(INTERPOLATIONS),
                    default="linear",
                    tooltip="How a transition over N chunks blends the old and the new prompt's UMT5 embeddings.",
                ),
                io.Combo.Input(
                    "text_encoder_device",
                    options=list(TEXT_ENCODER_DEVICES),
                    default="auto",
                    optional=True,
                    tooltip="Where UMT5 encodes prompts typed during the stream (kept loaded for the job; "
                    "cpu for GPUs too small to hold it beside the DiT).",
                ),
            ],
            outputs=[
                io.Latent.Output(display_name="latent", tooltip="Raw Wan latent of the chunks shown."),
                io.Float.Output(display_name="fps", tooltip="The preset's frame rate (for Create Video)."),
            ],
        )

    @classmethod
    def execute(
        cls,
        dit,
        conditioning,
        preview_vae,
        width,
        height,
        preset,
        seed,
        max_seconds,
        interpolation,
        text_encoder_device="auto",
    ) -> io.NodeOutput:
        samples, fps = live_job.run_live(
            dit,
            conditioning,
            preview_vae,
            width=width,
            height=height,
            preset=preset,
            seed=seed,
            max_seconds=max_seconds,
            interpolation=interpolation,
            text_encoder_device=text_encoder_device,
        )
        return io.NodeOutput({"samples": samples}, fps)

    @classmethod
    def fingerprint_inputs(cls, **kwargs):
        return float("nan")  # a live stream is never the cached result of an earlier one
