"""The one place where the nodes call ``wan_core`` (imported lazily, inside each call).

Every function takes and returns the typed ``payloads`` objects; the nodes stay declarations.
"""

from __future__ import annotations

import torch

from . import comfy_runtime as rt
from .payloads import LoadedDiT, LoadedVAE, StreamConditioning


def load_dit(path: str, precision: str, attention: str, compile: bool, cuda_graphs: bool) -> LoadedDiT:
    raise NotImplementedError("wan_core.dit is not merged into this branch yet")


def load_vae(path: str, precision: str) -> LoadedVAE:
    raise NotImplementedError("wan_core.vae is not merged into this branch yet")


def load_taehv(path: str, precision: str) -> LoadedVAE:
    raise NotImplementedError("wan_core.vae is not merged into this branch yet")


def encode_prompt_schedule(
    encoder_path: str, schedule: list[tuple[int, str]], negative: str, precision: str
) -> StreamConditioning:
    raise NotImplementedError("wan_core.text is not merged into this branch yet")


def encode_image_condition(
    cond: StreamConditioning, vae: LoadedVAE, image: torch.Tensor, clip_path: str | None
) -> StreamConditioning:
    raise NotImplementedError("wan_core.vae / wan_core.text are not merged into this branch yet")


def sample(dit: LoadedDiT, cond: StreamConditioning, **kwargs) -> torch.Tensor:
    rt.check_interrupt()
    raise NotImplementedError("wan_core.rollout is not merged into this branch yet")


def decode_latent(vae: LoadedVAE, latent: torch.Tensor, chunk_frames: int) -> torch.Tensor:
    raise NotImplementedError("wan_core.vae is not merged into this branch yet")
