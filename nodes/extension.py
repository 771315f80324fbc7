"""The ``comfy_api.latest`` extension that registers every node of the pack."""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io


class WanStreamExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return []


async def comfy_entrypoint() -> WanStreamExtension:
    return WanStreamExtension()
