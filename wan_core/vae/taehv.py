"""TAEHV tiny video autoencoder for Wan latents (``taew2_1``, ``taew2_2``, ``taew2_2_super``, LightX2V
``lighttaew2_1`` / ``lighttaew2_2``), with streaming encode / decode and O(1) state per block.

The network (same module indices as madebyollin/taehv ``taehv.py``, so its ``.pth`` / ``.safetensors``
load unchanged) works on single frames with 2-D convs; time enters only through

- ``MemBlock`` / ``SuperMemBlock``: ``f(cat[x_t, x_{t-1}])`` where ``x_{t-1}`` is the block's own input
  one frame earlier (zeros at t = 0) -> state: one frame;
- ``TPool(s)``: a 1x1 conv over ``s`` consecutive frames stacked on channels -> state: < s frames;
- ``TGrow(s)``: a 1x1 conv whose output channels split into ``s`` consecutive frames -> no state.

A chunk of frames is run through each block at once (parallel over the chunk's frames), carrying that
state between chunks, so any split of a video into chunks gives the frames of the whole-video pass.
Decoding drops the first ``t_upscale - 1`` (= 3) output frames, so ``T`` latent frames give
``4 T - 3`` frames, aligned with the Wan VAE ``1 + 4 (T - 1)``; later chunks give ``4 T``.

Usage (latents **normalized**, DiT space, ``[B, C, T, h, w]``; frames ``[B, 3, F, H, W]`` in [-1, 1]):

    tae = load_taehv("taew2_1.safetensors", dtype=torch.float16, device="cuda")
    state = tae.new_decode_state()
    for z_chunk in chunks:
        frames = tae.decode_chunk(z_chunk, state)      # 4T - 3 frames first, then 4T
    video = tae.decode(z)                              # whole
    z = tae.encode(video)                              # F frames -> ceil(F / 4) latent frames
    # streaming encode: z_part = tae.encode_chunk(frames, st); ...; z_rest = tae.encode_flush(st)

``taew2_x`` decode normalized latents as they are; ``lighttaew2_x`` were trained on raw VAE latents:
``TAEHVConfig.raw_latents`` (set from the file name by the loader, or by the caller) makes the module
convert with ``latent_norm`` inside, so callers always pass normalized latents.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .latent_norm import to_normalized, to_raw
from .stream import StreamDecoder

__all__ = [
    "TAEHVConfig",
    "TAEHV_PRESETS",
    "TAEHV",
    "TAEHVState",
    "MemBlock",
    "SuperMemBlock",
    "TPool",
    "TGrow",
]


@dataclass(frozen=True)
class TAEHVConfig:
    latent_channels: int = 16
    patch_size: int = 1  # pixel (un)shuffle around the network; 2 for taew2_2
    variant: str = "base"  # "base" or "super" (bigger ConvNeXt-style decoder, taew2_2_super)
    encoder_width: int = 64
    decoder_widths: tuple[int, int, int, int] = (256, 128, 64, 64)  # super: (512, 256, 128, 64)
    encoder_time_downscale: tuple[bool, bool, bool] = (True, True, False)
    decoder_time_upscale: tuple[bool, bool, bool] = (False, True, True)
    decoder_space_upscale: tuple[bool, bool, bool] = (True, True, True)
    raw_latents: bool = False  # lighttaew2_x: the network consumes / produces raw VAE latents

    def __post_init__(self):
        if self.variant not in ("base", "super"):
            raise ValueError(f"TAEHV variant must be 'base' or 'super', got {self.variant!r}")


TAEHV_PRESETS = {
    "taew2_1": TAEHVConfig(),
    "taew2_2": TAEHVConfig(latent_channels=48, patch_size=2),
    "taew2_2_super": TAEHVConfig(
        latent_channels=48, patch_size=2, variant="super", decoder_widths=(512, 256, 128, 64)
    ),
    "lighttaew2_1": TAEHVConfig(raw_latents=True),
    "lighttaew2_2": TAEHVConfig(latent_channels=48, patch_size=2, raw_latents=True),
}


def _conv(n_in: int, n_out: int, **kw) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kw)


class Clamp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class MemBlock(nn.Module):
    """``relu(conv(cat[x_t, x_{t-1}]) + skip(x_t))``; keys ``conv.{0,2,4}``, ``skip`` if widths differ."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.conv = nn.Sequential(
            _conv(n_in * 2, n_out), nn.ReLU(), _conv(n_out, n_out), nn.ReLU(), _conv(n_out, n_out)
        )
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()

    def forward(self, x: torch.Tensor, past: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(torch.cat([x, past], 1)) + self.skip(x))


class SuperMemBlock(nn.Module):
    """Super-decoder block: depthwise 7x7 over ``cat[x_t, x_{t-1}]`` -> 1x1 (x2) -> ReLU -> 1x1, residual."""

    def __init__(self, n: int):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(n * 2, n * 2, 7, padding=3, groups=n * 2, bias=False),
            nn.Conv2d(n * 2, n * 4, 1),
            nn.ReLU(),
            nn.Conv2d(n * 4, n, 1, bias=False),
        )

    def forward(self, x: torch.Tensor, past: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([x, past], 1)) + x


class TPool(nn.Module):
    """Merge ``stride`` consecutive frames (stacked on channels) with a 1x1 conv."""

    def __init__(self, n: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(n * stride, n, 1, bias=False)


class TGrow(nn.Module):
    """Split every frame into ``stride`` consecutive frames with a 1x1 conv (``n -> n * stride``)."""

    def __init__(self, n: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(n, n * stride, 1, bias=False)


def _encoder(cfg: TAEHVConfig) -> nn.Sequential:
    w, p2 = cfg.encoder_width, cfg.patch_size**2
    layers: list[nn.Module] = [_conv(3 * p2, w), nn.ReLU()]
    for down in cfg.encoder_time_downscale:
        layers += [TPool(w, 2 if down else 1), _conv(w, w, stride=2, bias=False)]
        layers += [MemBlock(w, w) for _ in range(3)]
    layers.append(_conv(w, cfg.latent_channels))
    return nn.Sequential(*layers)


def _decoder(cfg: TAEHVConfig) -> nn.Sequential:
    n, p2 = cfg.decoder_widths, cfg.patch_size**2
    t_up = [2 if u else 1 for u in cfg.decoder_time_upscale]
    s_up = [2 if u else 1 for u in cfg.decoder_space_upscale]
    if cfg.variant == "super":
        layers: list[nn.Module] = [nn.Conv2d(cfg.latent_channels, n[0], 1, bias=False)]
        for i in range(3):
            layers += [SuperMemBlock(n[i]) for _ in range(3)]
            layers += [
                _conv(n[i], n[i + 1] * s_up[i] ** 2),
                nn.ReLU(),
                nn.PixelShuffle(s_up[i]),
                TGrow(n[i + 1], t_up[i]),
            ]
        layers.append(_conv(n[3], 3 * p2))
        return nn.Sequential(*layers)
    layers = [Clamp(), _conv(cfg.latent_channels, n[0]), nn.ReLU()]
    for i in range(3):
        layers += [MemBlock(n[i], n[i]) for _ in range(3)]
        layers += [nn.Upsample(scale_factor=s_up[i]), TGrow(n[i], t_up[i]), _conv(n[i], n[i + 1], bias=False)]
    layers += [nn.ReLU(), _conv(n[3], 3 * p2)]
    return nn.Sequential(*layers)


class TAEHVState:
    """Streaming state of one TAEHV encoder or decoder: per block, the frames it still needs.

    ``memory[i]`` is ``[B, C, H, W]`` (the previous input of MemBlock ``i``) or ``[B, k, C, H, W]``
    (the ``k < stride`` frames TPool ``i`` is waiting for), ``None`` before the first frame.
    ``frames_out`` counts raw outputs (for the start-up trim); ``last_frame`` is the encoder's last
    input frame (repeated to pad the end in ``encode_flush``).
    """

    def __init__(self, num_blocks: int):
        self.memory: list[torch.Tensor | None] = [None] * num_blocks
        self.frames_in = 0
        self.frames_out = 0
        self.last_frame: torch.Tensor | None = None

    def reset(self) -> None:
        self.__init__(len(self.memory))

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.memory if t is not None)

    def store(self, i: int, frame: torch.Tensor) -> None:
        """Keep ``frame`` as block ``i``'s memory, in place when the buffer already has its shape."""
        buf = self.memory[i]
        if buf is not None and buf.shape == frame.shape and buf.dtype == frame.dtype:
            buf.copy_(frame)
        else:
            self.memory[i] = frame.clone()


def _run_blocks(blocks: nn.Sequential, x: torch.Tensor, state: TAEHVState) -> torch.Tensor | None:
    """Run frames ``x`` [B, T, C, H, W] through ``blocks`` with carried state -> [B, T', C', H', W'].

    Returns None when a TPool is still waiting for frames (nothing comes out of this chunk).
    """
    b = x.shape[0]
    for i, blk in enumerate(blocks):
        t = x.shape[1]
        if isinstance(blk, TPool):
            pending = state.memory[i]
            if pending is not None:
                x = torch.cat([pending, x], dim=1)
            n_out = x.shape[1] // blk.stride
            rest = x[:, n_out * blk.stride :]
            state.memory[i] = rest.clone() if rest.shape[1] else None
            if n_out == 0:
                return None
            x = x[:, : n_out * blk.stride]
            c, h, w = x.shape[2:]
            x = blk.conv(x.reshape(b * n_out, blk.stride * c, h, w)).unflatten(0, (b, n_out))
            continue
        if isinstance(blk, (MemBlock, SuperMemBlock)):
            prev = state.memory[i]
            prev = torch.zeros_like(x[:, :1]) if prev is None else prev[:, None].to(x.dtype)
            past = torch.cat([prev, x[:, :-1]], dim=1)  # [B, T, C, H, W]
            state.store(i, x[:, -1])
            x = blk(x.flatten(0, 1), past.flatten(0, 1)).unflatten(0, (b, t))
        elif isinstance(blk, TGrow):
            y = blk.conv(x.flatten(0, 1))  # [B*T, s*C, H, W]
            x = y.reshape(b, t * blk.stride, y.shape[1] // blk.stride, *y.shape[2:])
        else:
            x = blk(x.flatten(0, 1)).unflatten(0, (b, t))
    return x


class TAEHV(nn.Module):
    """Tiny VAE for Wan latents. ``encoder`` / ``decoder`` are ``nn.Sequential`` with the reference indices."""

    name = "TAEHV"
    decoder_kind = "taehv"

    def __init__(self, config: TAEHVConfig | None = None):
        super().__init__()
        self.config = cfg = config or TAEHVConfig()
        self.encoder = _encoder(cfg)
        self.decoder = _decoder(cfg)
        self.t_downscale = 2 ** sum(cfg.encoder_time_downscale)
        self.t_upscale = 2 ** sum(cfg.decoder_time_upscale)
        self.frames_to_trim = self.t_upscale - 1
        self.spatial_scale = 8 * cfg.patch_size  # encoder: 3 stride-2 convs
        self.decoder_spatial_scale = cfg.patch_size * 2 ** sum(cfg.decoder_space_upscale)

    @property
    def latent_channels(self) -> int:
        return self.config.latent_channels

    @property
    def dtype(self) -> torch.dtype:
        return self.decoder[-1].weight.dtype

    @property
    def device(self) -> torch.device:
        return self.decoder[-1].weight.device

    def new_decode_state(self) -> TAEHVState:
        return TAEHVState(len(self.decoder))

    def new_encode_state(self) -> TAEHVState:
        return TAEHVState(len(self.encoder))

    def stream_decoder(
        self,
        latents_per_step: int | None = None,
        clamp: bool = True,
        tile_size: int | tuple[int, int] | None = None,
        tile_overlap: int = 8,
    ):
        """A decode stream holding its own state: ``frames = dec.decode_chunk(z_chunk)``; ``dec.reset()``.

        ``tile_size`` (latent pixels) switches to spatial tiling with ``tile_overlap`` blending.
        """
        if tile_size is not None:
            from .tiling import TiledDecoder

            return TiledDecoder(self, tile_size, tile_overlap, latents_per_step=latents_per_step, clamp=clamp)
        return StreamDecoder(self, latents_per_step=latents_per_step, clamp=clamp)

    # -- decode ---------------------------------------------------------------------------------
    def _check_latents(self, z: torch.Tensor) -> None:
        if z.ndim != 5:
            raise ValueError(f"TAEHV: latents must be [B, C, T, H, W], got shape {tuple(z.shape)}.")
        if z.shape[2] < 1:
            raise ValueError(f"TAEHV: latents have no frames (shape {tuple(z.shape)}).")
        c = self.config.latent_channels
        if z.shape[1] != c:
            raise ValueError(
                f"TAEHV: latents have {z.shape[1]} channels, this TAEHV decodes {c}. Use taew2_1 / "
                "lighttaew2_1 for 16-channel Wan 2.1 latents and taew2_2 / lighttaew2_2 for 48-channel "
                "Wan 2.2 (TI2V 5B) latents."
            )

    @torch.no_grad()
    def decode_chunk(
        self,
        latents: torch.Tensor,
        state: TAEHVState,
        latents_per_step: int | None = None,
        clamp: bool = True,
    ) -> torch.Tensor:
        """Next latent frames ``[B, C, T, h, w]`` (normalized) -> frames ``[B, 3, F, H, W]`` in [-1, 1].

        ``F = 4 T - 3`` for the first chunk of a stream, ``4 T`` afterwards. ``latents_per_step``
        bounds the working memory by that many latent frames per pass (same frames). ``clamp=False``
        skips the final clamp (the reference clamps to [0, 1] before the [-1, 1] mapping).
        """
        self._check_latents(latents)
        step = latents.shape[2] if latents_per_step is None else max(1, int(latents_per_step))
        parts = [
            self._decode_pass(latents[:, :, i : i + step], state, clamp)
            for i in range(0, latents.shape[2], step)
        ]
        return torch.cat(parts, dim=2) if len(parts) > 1 else parts[0]

    def _decode_pass(self, latents: torch.Tensor, state: TAEHVState, clamp: bool) -> torch.Tensor:
        z = to_raw(latents) if self.config.raw_latents else latents
        x = z.to(self.dtype).transpose(1, 2)  # [B, T, C, h, w]
        y = _run_blocks(self.decoder, x, state)  # [B, T', 3 p^2, H, W] (no TPool: never None)
        state.frames_in += latents.shape[2]
        skip = max(0, min(y.shape[1], self.frames_to_trim - state.frames_out))
        state.frames_out += y.shape[1]
        y = y[:, skip:]
        if self.config.patch_size > 1:
            y = F.pixel_shuffle(y.flatten(0, 1), self.config.patch_size).unflatten(
                0, (y.shape[0], y.shape[1])
            )
        if clamp:
            y = y.clamp(0, 1)
        return (y * 2 - 1).transpose(1, 2)

    def decode(
        self, latents: torch.Tensor, clamp: bool = True, latents_per_step: int | None = None
    ) -> torch.Tensor:
        """Whole latent video ``[B, C, T, h, w]`` (normalized) -> ``[B, 3, 4T - 3, H, W]`` in [-1, 1].

        ``latents_per_step`` bounds the working memory by that many latent frames (same result).
        """
        return self.decode_chunk(latents, self.new_decode_state(), latents_per_step, clamp)

    # -- encode ---------------------------------------------------------------------------------
    def _check_frames(self, x: torch.Tensor) -> None:
        s = self.spatial_scale
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"TAEHV: video must be [B, 3, F, H, W] in [-1, 1], got shape {tuple(x.shape)}.")
        h, w = x.shape[3:]
        if h % s or w % s:
            raise ValueError(
                f"TAEHV: frame size {h}x{w} is not a multiple of {s}; resize or crop to {h // s * s}x{w // s * s}."
            )

    def _latents_out(self, z: torch.Tensor) -> torch.Tensor:
        z = z.transpose(1, 2)  # [B, C, T, h, w]
        return to_normalized(z) if self.config.raw_latents else z

    @torch.no_grad()
    def encode_chunk(self, frames: torch.Tensor, state: TAEHVState) -> torch.Tensor:
        """Next frames ``[B, 3, F, H, W]`` in [-1, 1] -> the latent frames completed so far
        ``[B, C, T, H/s, W/s]`` (normalized); every 4 frames complete one latent frame."""
        self._check_frames(frames)
        b, _, f, h, w = frames.shape
        s = self.spatial_scale
        empty = frames.new_zeros(b, self.latent_channels, 0, h // s, w // s)
        if f == 0:
            return empty
        state.last_frame = frames[:, :, -1:].clone()
        state.frames_in += f
        x = ((frames.to(self.dtype) + 1) / 2).transpose(1, 2)  # [B, F, 3, H, W] in [0, 1]
        if self.config.patch_size > 1:
            x = F.pixel_unshuffle(x.flatten(0, 1), self.config.patch_size).unflatten(0, (b, f))
        z = _run_blocks(self.encoder, x, state)  # [B, T, C, h, w]
        if z is None:
            return empty.to(self.dtype)
        state.frames_out += z.shape[1]
        return self._latents_out(z)

    @torch.no_grad()
    def encode_flush(self, state: TAEHVState) -> torch.Tensor:
        """End of stream: pad with the last frame to a multiple of 4 and return the remaining latents."""
        if state.last_frame is None:
            raise ValueError("TAEHV.encode_flush: no frames were encoded in this stream.")
        n_pad = -state.frames_in % self.t_downscale
        return self.encode_chunk(state.last_frame.expand(-1, -1, n_pad, -1, -1), state)

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Whole video ``[B, 3, F, H, W]`` in [-1, 1] -> latents ``[B, C, ceil(F / 4), H/s, W/s]``."""
        self._check_frames(video)
        state = self.new_encode_state()
        return torch.cat([self.encode_chunk(video, state), self.encode_flush(state)], dim=2)
