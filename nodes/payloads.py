"""The typed objects that travel between the pack's nodes (the values of its custom socket types).

Plain dataclasses, no ComfyUI imports: a node hands the next one a ``LoadedDiT`` / ``LoadedVAE`` /
``StreamConditioning`` object, never a loose dict of keyword arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch

from .resident_model import ResidentModel
from .warm_rollout import WarmRollout


@dataclass(frozen=True)
class RuntimeOptions:
    """How a model runs: compute dtype, attention backend, the speed flags (``nodes/speed.py``), FP8 math."""

    dtype: torch.dtype
    attention: str = "auto"  # auto | sdpa | sage | flash
    compile: bool = False
    cuda_graphs: bool = False
    fp8_linear: bool = False  # the blocks' Linears run FP8 GEMMs (precision fp8_fast)
    fuse_qkv: bool | None = None  # None: the pipeline's default for the device
    overlap_decode: bool | None = None  # None: the pipeline's default for the device
    speed: str = "auto"  # Load Wan DiT's speed input, as chosen


@dataclass(frozen=True, eq=False)
class LoadedDiT:
    """A Wan DiT loaded by ``Load Wan DiT`` (socket type ``WANSTREAM_DIT``)."""

    model: torch.nn.Module  # wan_core.dit.WanDiT
    path: str
    options: RuntimeOptions
    device: torch.device
    lora_path: str | None = None  # LoRA merged at load (the multi-GPU workers load it the same way)
    lora_strength: float = 1.0
    # the Streaming AR Sampler's pipeline kept between jobs (KV cache + CUDA graphs), see warm_rollout.py
    warm: WarmRollout = field(default_factory=WarmRollout, repr=False)
    # registration with ComfyUI's model management (it may offload the model), see resident_model.py
    resident: ResidentModel | None = field(default=None, repr=False)

    @property
    def config(self) -> Any:
        return getattr(self.model, "config", None)


@dataclass(frozen=True, eq=False)
class LoadedVAE:
    """A full Wan VAE (2.1 / 2.2) or a TAEHV (socket type ``WANSTREAM_VAE``)."""

    model: torch.nn.Module
    path: str
    kind: str  # "wan21" | "wan22" | "taehv"
    latent_channels: int  # 16 (Wan 2.1 latents) | 48 (Wan 2.2 TI2V 5B latents)
    spatial_stride: int  # pixels per latent cell: 8 | 16
    dtype: torch.dtype
    device: torch.device
    resident: ResidentModel | None = field(default=None, repr=False)  # see resident_model.py

    @property
    def is_taehv(self) -> bool:
        return self.kind == "taehv"


@dataclass(frozen=True, eq=False)
class PromptSegment:
    """One prompt of a (possibly switching) prompt schedule; it applies from ``start`` on: a chunk
    index, or a time in the video (``wan_core.rollout.request.Seconds``) that the sampler turns into
    a chunk (it knows the preset's chunk size and fps)."""

    start: Any  # int (chunk) | Seconds
    text: str
    context: torch.Tensor  # [1, L, 4096] UMT5 embedding (unpadded)
    negative_context: torch.Tensor | None = None  # [1, L, 4096] or None (no CFG)

    @property
    def start_chunk(self) -> int:
        if not isinstance(self.start, int):
            raise TypeError(
                f"the switch at {self.start} is not turned into a chunk yet (the sampler does that)"
            )
        return self.start


@dataclass(frozen=True)
class RolloutOptions:
    """The settings of Wan Stream Rollout Options (socket type ``WANSTREAM_ROLLOUT_OPTIONS``); a None
    is the preset's value."""

    window_frames: int | None = None
    sink_frames: int | None = None
    gpus: int = 1
    context_parallel: str = "ulysses"  # read only when gpus > 1


@dataclass(frozen=True, eq=False)
class ImageCondition:
    """The image part of an I2V / TI2V conditioning, made by ``I2V Control Encode``."""

    width: int
    height: int
    image: torch.Tensor  # [1, 3, H, W] in [-1, 1], resized to width x height
    vae: LoadedVAE
    clip_features: torch.Tensor | None = None  # [1, 257, 1280] penultimate CLIP-ViT-H tokens (Wan 2.1 I2V)


@dataclass(frozen=True, eq=False)
class StreamConditioning:
    """What the sampler is conditioned on (socket type ``WANSTREAM_CONDITIONING``)."""

    segments: tuple[PromptSegment, ...]
    image: ImageCondition | None = None
    encoder_path: str = ""
    negative_text: str = ""  # the negative prompt as typed ("": the presets' default, where CFG uses one)

    def __post_init__(self) -> None:
        if not self.segments or self.segments[0].start != 0:
            raise ValueError("a prompt schedule needs a prompt that starts at chunk 0")
        for kind in (int, object):  # chunk starts, then the other starts (times)
            starts = [s.start for s in self.segments if isinstance(s.start, int) == (kind is int)]
            if starts != sorted(set(starts)):
                raise ValueError(f"prompt switch starts must be increasing and unique, got {starts}")

    def with_image(self, image: ImageCondition) -> StreamConditioning:
        return replace(self, image=image)

    def at_chunks(self, chunks) -> StreamConditioning:
        """The schedule with the switches (``segments[1:]``) starting at ``chunks`` (one per switch, in
        order: ``ValidatedRequest.switch_chunks``), sorted by chunk."""
        if len(chunks) != len(self.segments) - 1:
            raise ValueError(f"{len(self.segments) - 1} prompt switches, {len(chunks)} chunks")
        moved = sorted(
            (replace(s, start=c) for s, c in zip(self.segments[1:], chunks)), key=lambda s: s.start
        )
        return replace(self, segments=(self.segments[0], *moved))

    def segment_for_chunk(self, chunk: int) -> PromptSegment:
        current = self.segments[0]
        for seg in self.segments:
            if seg.start_chunk <= chunk:
                current = seg
        return current
