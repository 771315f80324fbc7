"""Streaming pixel decoders for the benchmark, with random weights: the Wan VAE (2.1, or 2.2 for the
TI2V 5B) and TAEHV (taew2_1 / taew2_2). Each is a ``ChunkDecoder``: ``reset()`` per video, then
``dec(latents_chunk)`` -> frames, carrying the causal state between chunks."""

from __future__ import annotations

import importlib

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.random_weights import build_random


def _need(module: str, what: str):
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ValueError(
            f"the {what} decoder needs {module}, which this checkout does not have ({e}); "
            "merge the vae branch or use --decoder none"
        ) from e


class VAEDecoder:
    def __init__(self, latent_channels: int, device, dtype: torch.dtype, tiny: bool):
        vae = _need("wan_core.vae", "Wan VAE")
        if latent_channels == 48:
            wan22 = _need("wan_core.vae.wan22", "Wan VAE 2.2")
            cfg_cls, model_cls = wan22.WanVAE22Config, wan22.WanVAE22
            cfg = cfg_cls(dim=8, dec_dim=16) if tiny else cfg_cls()
        else:
            cfg_cls, model_cls = vae.WanVAE21Config, vae.WanVAE21
            cfg = cfg_cls(dim=8) if tiny else cfg_cls()
        self.factory = lambda: model_cls(cfg)
        self.model = build_random(self.factory, device, dtype, seed=11)
        self.name = f"{self.model.name} ({'tiny' if tiny else 'full size'})"
        self.cache = self.model.new_decode_state()

    def reset(self) -> None:
        self.cache = self.model.new_decode_state()

    def new_state(self, model):
        return model.new_decode_state()

    def count_flops(self, latent_shape, dtype) -> list[float]:
        return count_decode_flops(self.factory, self.new_state, latent_shape, dtype)

    @torch.no_grad()
    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        return self.model.decode_chunk(latents, self.cache)


class TAEHVDecoder:
    def __init__(self, latent_channels: int, device, dtype: torch.dtype, tiny: bool):
        taehv = _need("wan_core.vae.taehv", "TAEHV")
        cfg = taehv.TAEHV_PRESETS["taew2_2" if latent_channels == 48 else "taew2_1"]
        if tiny:
            cfg = type(cfg)(**{**cfg.__dict__, "encoder_width": 8, "decoder_widths": (16, 16, 8, 8)})
        self.factory = lambda: taehv.TAEHV(cfg)
        self.model = build_random(self.factory, device, dtype, seed=12)
        self.name = (
            f"TAEHV {'taew2_2' if latent_channels == 48 else 'taew2_1'} ({'tiny' if tiny else 'full size'})"
        )
        self.state = self.model.new_decode_state()

    def reset(self) -> None:
        self.state = self.model.new_decode_state()

    def new_state(self, model):
        return model.new_decode_state()

    def count_flops(self, latent_shape, dtype) -> list[float]:
        return count_decode_flops(self.factory, self.new_state, latent_shape, dtype)

    @torch.no_grad()
    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        return self.model.decode_chunk(latents, self.state)


def count_decode_flops(factory, new_state, latent_shape, dtype, chunks: int = 2) -> list[float]:
    """FLOPs (torch's FLOP counter: convolutions, matmuls, attention) of decoding the first ``chunks``
    chunks of ``latent_shape`` in a stream, on the meta device (no memory, no compute)."""
    with torch.device("meta"):
        model = factory().to(dtype)
        state = new_state(model)
        out = []
        for _ in range(chunks):
            z = torch.empty(latent_shape, dtype=dtype)
            with FlopCounterMode(display=False) as counter, torch.no_grad():
                model.decode_chunk(z, state)
            out.append(float(counter.get_total_flops()))
    return out


DECODERS = {"taehv": TAEHVDecoder, "vae": VAEDecoder}


def make_decoders(which: str, latent_channels: int, device, dtype: torch.dtype, tiny: bool) -> dict:
    """``which``: "taehv" | "vae" | "both" | "none"."""
    names = {"both": ["taehv", "vae"], "none": []}.get(which, [which])
    for n in names:
        if n not in DECODERS:
            raise ValueError(f"unknown decoder {n!r}: use taehv, vae, both or none")
    return {n: DECODERS[n](latent_channels, device, dtype, tiny) for n in names}
