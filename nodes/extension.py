"""The ``comfy_api.latest`` extension that registers every node of the pack."""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from .decode import WanStreamDecodeChunk
from .encode_prompt import WanStreamEncodePrompt
from .i2v_encode import WanStreamI2VControlEncode
from .live import WanStreamLiveSampler
from .live_routes import register_routes
from .loaders import WanStreamLoadDiT, WanStreamLoadTAEHV, WanStreamLoadVAE
from .rollout_options import WanStreamRolloutOptions
from .sampler import WanStreamARSampler

NODES: list[type[io.ComfyNode]] = [
    WanStreamLoadDiT,
    WanStreamLoadVAE,
    WanStreamLoadTAEHV,
    WanStreamEncodePrompt,
    WanStreamI2VControlEncode,
    WanStreamARSampler,
    WanStreamDecodeChunk,
    WanStreamLiveSampler,
    WanStreamRolloutOptions,
]


class WanStreamExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)


async def comfy_entrypoint() -> WanStreamExtension:
    register_routes()  # the live stream's steering API on ComfyUI's server (live_routes.py)
    return WanStreamExtension()
