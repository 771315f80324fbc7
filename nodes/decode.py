"""VAE Decode Chunk: LATENT -> IMAGE frames, streaming chunk by chunk with the causal cache."""

from __future__ import annotations

from comfy_api.latest import io

from . import core_bridge
from .socket_types import CATEGORY, WanVAE


class WanStreamDecodeChunk(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="WanStreamDecodeChunk",
            display_name="VAE Decode Chunk (Stream)",
            category=CATEGORY,
            description=(
                "Decodes a Wan video latent to frames a few latent frames at a time, carrying the decoder's "
                "causal cache between pieces, so memory stays flat for any length. Works with the full Wan "
                "VAE and with a TAEHV."
            ),
            inputs=[
                WanVAE.Input("vae", tooltip="Full Wan VAE (best quality) or TAEHV (fast)."),
                io.Latent.Input("samples", tooltip="The raw video latent from the Streaming AR Sampler."),
                io.Int.Input(
                    "chunk_frames",
                    default=3,
                    min=1,
                    max=1024,
                    tooltip="Latent frames decoded per step (memory grows with it, speed a little too).",
                ),
            ],
            outputs=[io.Image.Output(display_name="images", tooltip="Frames [F, H, W, 3] in 0..1.")],
        )

    @classmethod
    def execute(cls, vae, samples, chunk_frames) -> io.NodeOutput:
        return io.NodeOutput(core_bridge.decode_latent(vae, samples["samples"], chunk_frames=chunk_frames))
