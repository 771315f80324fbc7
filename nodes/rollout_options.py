"""Wan Stream Rollout Options: the rarely changed rollout settings, on their own node, for the
sampler's optional ``options`` input (the sampler's own widgets of these names are kept for saved
workflows only; which one wins: ``video_request``)."""

from __future__ import annotations

from comfy_api.latest import io

from .payloads import RolloutOptions
from .socket_types import CATEGORY

WanRolloutOptions = io.Custom("WANSTREAM_ROLLOUT_OPTIONS")  # payloads.RolloutOptions


class WanStreamRolloutOptions(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="WanStreamRolloutOptions",
            display_name="Wan Stream Rollout Options",
            category=CATEGORY,
            description=(
                "Optional settings of the Streaming AR Sampler's rollout: the attention window and sink of "
                "its rolling KV cache, and running it on several GPUs. Connect to the sampler's options input; "
                "without this node the preset's published values are used on one GPU."
            ),
            inputs=[
                io.Int.Input(
                    "window_frames",
                    default=-1,
                    min=-1,
                    max=4096,
                    tooltip="Attention window in latent frames, the current chunk included (-1: the preset's, "
                    "e.g. 21 for Self-Forcing, 9 for LongLive). Memory grows with it, not with the video length.",
                ),
                io.Int.Input(
                    "sink_frames",
                    default=-1,
                    min=-1,
                    max=4096,
                    tooltip="First latent frames kept forever as attention sink (-1: the preset's; 0: none).",
                ),
                io.Int.Input(
                    "gpus",
                    default=1,
                    min=1,
                    max=16,
                    tooltip="1 = in ComfyUI's process on its GPU. N > 1 = N local worker processes, one GPU "
                    "each, splitting the DiT's tokens (context parallelism); they load the DiT from its file "
                    "with the loader's settings and stay up for the next run. Progress then advances per chunk.",
                ),
                io.Combo.Input(
                    "context_parallel",
                    options=["ulysses", "ring"],
                    default="ulysses",
                    tooltip="How the GPUs split attention when gpus > 1. ulysses: a share of the attention "
                    "heads each (gpus must divide the head count: 12 for 1.3B, 24 for 5B, 40 for 14B). ring: a "
                    "share of every frame's tokens (any head count).",
                ),
            ],
            outputs=[
                WanRolloutOptions.Output(display_name="options", tooltip="For the sampler's options input.")
            ],
        )

    @classmethod
    def execute(cls, window_frames, sink_frames, gpus, context_parallel) -> io.NodeOutput:
        return io.NodeOutput(
            RolloutOptions(
                window_frames=None if window_frames == -1 else window_frames,
                sink_frames=None if sink_frames == -1 else sink_frames,
                gpus=gpus,
                context_parallel=context_parallel,
            )
        )
