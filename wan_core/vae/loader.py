"""Load Wan VAE 2.1 / 2.2 and TAEHV weights from every file layout users have.

- ``load_vae(path)`` -> :class:`WanVAE21` or :class:`WanVAE22`: official ``Wan2.1_VAE.pth`` /
  ``Wan2.2_VAE.pth``, ComfyUI ``wan_2.1_vae.safetensors`` / ``wan2.2_vae.safetensors`` (same keys, an
  optional ``vae.`` / ``first_stage_model.`` prefix is stripped), diffusers ``AutoencoderKLWan``
  (``vae/diffusion_pytorch_model.safetensors``, renamed keys, 2.1 and 2.2). The version comes from the
  keys (nested ``decoder.upsamples.0.upsamples`` / diffusers ``up_blocks.0.upsampler`` = 2.2), the
  widths from the shapes.
- ``load_taehv(path)`` -> :class:`TAEHV`: ``taew2_1`` / ``taew2_2`` / ``taew2_2_super`` and LightX2V
  ``lighttaew2_1`` / ``lighttaew2_2`` (``.pth`` or ``.safetensors``). Latent channels, patch size,
  widths and the Super decoder come from the shapes; ``raw_latents`` defaults to ``"lighttae" in the
  file name``. A TGrow conv stored with more output channels than the model uses (trained with a
  temporal stride the model does not use) keeps its **last** channels, as the reference
  ``patch_tgrow_layers``.

Both read lazily with ``weights_only=True`` (``wan_core.checkpoint``), build the module on the
``meta`` device and load strictly tensor by tensor (``load_into``); a file of another kind (DiT, text
encoder, ...) or a shape mismatch raises ``CheckpointError`` naming the file, what was detected and
what was expected. ``path`` may also be an already opened ``Checkpoint``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from wan_core.checkpoint import Checkpoint, CheckpointError, expect_kind, load_into, open_checkpoint
from wan_core.memory import VAE_LOAD_FIXES, describe_load, explain_oom

from .taehv import TAEHV, TAEHVConfig, TGrow
from .wan21 import WanVAE21, WanVAE21Config
from .wan22 import WanVAE22, WanVAE22Config

__all__ = [
    "load_vae",
    "load_taehv",
    "vae_config_from_shapes",
    "taehv_config_from_shapes",
    "diffusers_vae_key",
]

_VAE_MARKERS = ("decoder.middle.0.residual.0.gamma", "decoder.mid_block.resnets.0.norm1.gamma")
_TAEHV_MARKER = "decoder.22.bias"


def _open(path) -> Checkpoint:
    return path if hasattr(path, "keys") and hasattr(path, "shape") else open_checkpoint(path)


def _prefix(keys, markers) -> str:
    for k in keys:
        for m in markers:
            if k.endswith(m):
                return k[: -len(m)]
    return ""


# ----------------------------------------------------------------------------------------------
# Wan VAE


def diffusers_vae_key(key: str, version: str, num_res_blocks: int = 2) -> str:
    """Our (official) state-dict key -> the diffusers ``AutoencoderKLWan`` key of the same tensor."""
    k = key
    top = {"conv1.": "quant_conv.", "conv2.": "post_quant_conv."}
    for a, b in top.items():
        if k.startswith(a):
            return b + k[len(a) :]
    k = re.sub(r"^(encoder|decoder)\.conv1\.", r"\1.conv_in.", k)
    k = re.sub(r"^(encoder|decoder)\.head\.0\.", r"\1.norm_out.", k)
    k = re.sub(r"^(encoder|decoder)\.head\.2\.", r"\1.conv_out.", k)
    k = re.sub(r"^(encoder|decoder)\.middle\.0\.", r"\1.mid_block.resnets.0.", k)
    k = re.sub(r"^(encoder|decoder)\.middle\.1\.", r"\1.mid_block.attentions.0.", k)
    k = re.sub(r"^(encoder|decoder)\.middle\.2\.", r"\1.mid_block.resnets.1.", k)
    if version == "2.1":
        k = re.sub(r"^encoder\.downsamples\.", "encoder.down_blocks.", k)
        m = re.match(r"^decoder\.upsamples\.(\d+)\.(.*)$", k)
        if m:
            per_level = num_res_blocks + 2  # res blocks + up-sampler
            level, j = divmod(int(m.group(1)), per_level)
            part = f"resnets.{j}" if j < num_res_blocks + 1 else "upsamplers.0"
            k = f"decoder.up_blocks.{level}.{part}.{m.group(2)}"
    else:
        m = re.match(r"^encoder\.downsamples\.(\d+)\.downsamples\.(\d+)\.(.*)$", k)
        if m:
            j = int(m.group(2))
            part = f"resnets.{j}" if j < num_res_blocks else "downsampler"
            k = f"encoder.down_blocks.{m.group(1)}.{part}.{m.group(3)}"
        m = re.match(r"^decoder\.upsamples\.(\d+)\.upsamples\.(\d+)\.(.*)$", k)
        if m:
            j = int(m.group(2))
            part = f"resnets.{j}" if j < num_res_blocks + 1 else "upsampler"
            k = f"decoder.up_blocks.{m.group(1)}.{part}.{m.group(3)}"
    for a, b in (
        (".residual.0.gamma", ".norm1.gamma"),
        (".residual.2.", ".conv1."),
        (".residual.3.gamma", ".norm2.gamma"),
        (".residual.6.", ".conv2."),
        (".shortcut.", ".conv_shortcut."),
    ):
        k = k.replace(a, b)
    return k


def vae_config_from_shapes(
    shapes: dict[str, tuple[int, ...]],
) -> tuple[str, WanVAE21Config | WanVAE22Config, bool]:
    """(version "2.1" | "2.2", config, diffusers naming?) from un-prefixed key -> shape."""
    diffusers = "decoder.mid_block.resnets.0.norm1.gamma" in shapes
    if diffusers:
        is_22 = any(k.startswith("decoder.up_blocks.0.upsampler.") for k in shapes)
        enc_in, dec_out = shapes["encoder.conv_in.weight"], shapes["decoder.conv_out.weight"]
        z = shapes["post_quant_conv.weight"][0]
    else:
        is_22 = any(k.startswith("decoder.upsamples.0.upsamples.") for k in shapes)
        enc_in, dec_out = shapes["encoder.conv1.weight"], shapes["decoder.head.2.weight"]
        z = shapes["conv2.weight"][0]
    if is_22:
        cfg = WanVAE22Config(
            dim=enc_in[0], dec_dim=dec_out[1], z_dim=z, patch_size=int(round((enc_in[1] / 3) ** 0.5))
        )
        return "2.2", cfg, diffusers
    return "2.1", WanVAE21Config(dim=enc_in[0], z_dim=z), diffusers


@explain_oom(describe_load("Wan VAE", VAE_LOAD_FIXES))
def load_vae(
    path: str | os.PathLike | Checkpoint,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
) -> WanVAE21 | WanVAE22:
    """Load a Wan VAE 2.1 or 2.2 file (official / ComfyUI / diffusers naming) -> eval module."""
    ck = _open(path)
    expect_kind(ck, "wan_vae", "Load Wan VAE")
    keys = ck.keys()
    prefix = _prefix(keys, _VAE_MARKERS)
    shapes = {k[len(prefix) :]: tuple(ck.shape(k)) for k in keys if k.startswith(prefix)}
    try:
        version, cfg, diffusers = vae_config_from_shapes(shapes)
    except KeyError as e:
        raise CheckpointError(
            f"Load Wan VAE: {ck.path} looks like a Wan VAE but lacks {e}; the file is incomplete or of an "
            "unsupported variant."
        ) from e
    with torch.device("meta"):
        model = WanVAE22(cfg) if version == "2.2" else WanVAE21(cfg)
    readers = {}
    for name in model.state_dict():
        src = prefix + (diffusers_vae_key(name, version, cfg.num_res_blocks) if diffusers else name)
        if src in ck:
            readers[name] = lambda src=src: ck.get(src)
    extra = set(shapes) - {
        (diffusers_vae_key(n, version, cfg.num_res_blocks) if diffusers else n) for n in model.state_dict()
    }
    for k in sorted(extra):
        readers[k] = lambda: None  # reported as unexpected by load_into
    load_into(model, readers, ck.path, dtype=dtype, device=device)
    return model.eval().requires_grad_(False)


# ----------------------------------------------------------------------------------------------
# TAEHV


def taehv_config_from_shapes(shapes: dict[str, tuple[int, ...]], raw_latents: bool = False) -> TAEHVConfig:
    """TAEHV config (channels, patch, widths, variant) from key -> shape."""
    super_variant = "decoder.1.conv.0.weight" in shapes and shapes["decoder.1.conv.0.weight"][1] == 1
    if super_variant:
        latent = shapes["decoder.0.weight"][1]
        widths = (
            shapes["decoder.0.weight"][0],
            shapes["decoder.7.conv.weight"][1],
            shapes["decoder.14.conv.weight"][1],
            shapes["decoder.21.conv.weight"][1],
        )
    else:
        latent = shapes["decoder.1.weight"][1]
        widths = tuple(shapes[f"decoder.{i}.weight"][0] for i in (1, 8, 14, 20))
    patch = int(round((shapes["encoder.0.weight"][1] / 3) ** 0.5))
    if latent not in (16, 48):
        known = {32: "TAEHV 1.5 (HunyuanVideo 1.5)", 128: "TAELTX (LTX-Video)", 24: "TAEH3"}
        raise ValueError(
            f"TAEHV with {latent} latent channels is {known.get(latent, 'not for Wan')}; Wan needs taew2_1 / "
            "lighttaew2_1 (16 channels) or taew2_2 / lighttaew2_2 (48 channels)."
        )
    return TAEHVConfig(
        latent_channels=latent,
        patch_size=patch,
        variant="super" if super_variant else "base",
        encoder_width=shapes["encoder.0.weight"][0],
        decoder_widths=widths,
        raw_latents=raw_latents,
    )


@explain_oom(describe_load("TAEHV", VAE_LOAD_FIXES))
def load_taehv(
    path: str | os.PathLike | Checkpoint,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
    raw_latents: bool | None = None,
) -> TAEHV:
    """Load a TAEHV for Wan. ``raw_latents=None``: True iff the file name contains ``lighttae``."""
    ck = _open(path)
    expect_kind(ck, "taehv", "Load TAEHV")
    if raw_latents is None:
        raw_latents = "lighttae" in Path(str(ck.path)).name.lower()
    shapes = {k: tuple(ck.shape(k)) for k in ck.keys()}
    try:
        cfg = taehv_config_from_shapes(shapes, raw_latents=raw_latents)
    except KeyError as e:
        raise CheckpointError(
            f"Load TAEHV: {ck.path} lacks {e}; incomplete or unsupported TAEHV file."
        ) from e
    except ValueError as e:
        raise CheckpointError(f"Load TAEHV: {ck.path}: {e}") from e
    with torch.device("meta"):
        model = TAEHV(cfg)
    expected = model.state_dict()
    readers = {k: (lambda k=k: ck.get(k)) for k in ck.keys()}
    for i, layer in enumerate(model.decoder):
        key = f"decoder.{i}.conv.weight"
        if isinstance(layer, TGrow) and key in shapes:
            want = expected[key].shape[0]
            if shapes[key][0] > want:  # trained with a larger temporal stride: keep the last frames' channels
                readers[key] = lambda key=key, want=want: ck.get(key)[-want:]
    load_into(model, readers, ck.path, dtype=dtype, device=device)
    return model.eval().requires_grad_(False)


def load_decoder(
    path: str | os.PathLike | Checkpoint,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
    raw_latents: bool | None = None,
) -> WanVAE21 | WanVAE22 | TAEHV:
    """Either pixel decoder by the file's kind: a Wan VAE (``load_vae``) or a TAEHV (``load_taehv``).

    Both returned modules share the streaming API (``decode_chunk`` / ``decode`` / ``stream_decoder``).
    """
    ck = _open(path)
    if ck.kind == "taehv":
        return load_taehv(ck, dtype=dtype, device=device, raw_latents=raw_latents)
    expect_kind(ck, "wan_vae", "Load Wan VAE / TAEHV")
    return load_vae(ck, dtype=dtype, device=device)
