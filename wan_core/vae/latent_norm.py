"""The one place that converts Wan latents between raw VAE space and normalized DiT space.

- **raw**: the VAE encoder's mean ``mu`` (what diffusers ``AutoencoderKLWan`` and ComfyUI VAEs return,
  and what ComfyUI ``LATENT`` tensors hold).
- **normalized**: ``(mu - mean) / std`` per channel: what the DiT consumes and produces, what the
  official ``WanVAE_.encode(x, scale=[mean, 1/std])`` returns, and what ``taew2_1`` / ``taew2_2``
  decode. Everything inside ``wan_core`` passes normalized latents.

Constants (data, not code): Wan 2.1 (16 channels) from the official ``wan/modules/vae2_1.py``
``Wan2_1_VAE.__init__`` (same in ComfyUI ``latent_formats.Wan21`` and diffusers ``AutoencoderKLWan``
defaults); Wan 2.2 (48 channels) from the official ``wan/modules/vae2_2.py`` ``Wan2_2_VAE.__init__``
(PyPI ``wan22`` 2.2.11; same in ComfyUI ``latent_formats.Wan22``). The tests check them against the
installed official code.
"""

from __future__ import annotations

import torch

__all__ = [
    "WAN21_MEAN",
    "WAN21_STD",
    "WAN22_MEAN",
    "WAN22_STD",
    "latent_stats",
    "to_normalized",
    "to_raw",
]

# fmt: off
WAN21_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)
WAN21_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)
WAN22_MEAN = (
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557,
    -0.1382, 0.0542, 0.2813, 0.0891, 0.1570, -0.0098, 0.0375, -0.1825,
    -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230,
    -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520, 0.3748,
    0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
)
WAN22_STD = (
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013,
    0.8158, 1.0344, 0.5894, 1.0901, 0.6885, 0.6165, 0.8454, 0.4978,
    0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093,
    0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887,
    0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
)
# fmt: on

_STATS = {16: (WAN21_MEAN, WAN21_STD), 48: (WAN22_MEAN, WAN22_STD)}


def latent_stats(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) of the Wan VAE with ``channels`` latent channels (16 = Wan 2.1, 48 = Wan 2.2)."""
    if channels not in _STATS:
        raise ValueError(
            f"no Wan latent statistics for {channels} channels: Wan 2.1 latents have 16 channels "
            "(Wan2.1 / Wan2.2 A14B models), Wan 2.2 latents 48 (TI2V 5B)."
        )
    return _STATS[channels]


_ON_DEVICE: dict[tuple[tuple[float, ...], str], torch.Tensor] = {}


def _broadcast(values, z: torch.Tensor, channel_dim: int) -> torch.Tensor:
    """``values`` as an fp32 tensor on ``z.device`` shaped to broadcast over ``channel_dim``.

    Kept per device after the first use, so converting a chunk does no host-to-device copy.
    """
    key = (values, str(z.device))
    t = _ON_DEVICE.get(key)
    if t is None:
        t = _ON_DEVICE[key] = torch.tensor(values, dtype=torch.float32, device=z.device)
    shape = [1] * z.ndim
    shape[channel_dim] = len(values)
    return t.view(shape)


def _check(z: torch.Tensor, channel_dim: int, stats) -> None:
    if z.shape[channel_dim] != len(stats[0]):
        raise ValueError(
            f"latents have {z.shape[channel_dim]} channels at dim {channel_dim}, expected {len(stats[0])}"
        )


def to_normalized(raw: torch.Tensor, channel_dim: int = 1, channels: int | None = None) -> torch.Tensor:
    """Raw VAE latents -> DiT space: ``(raw - mean) / std``. Layout ``[B, C, T, H, W]`` by default.

    Computed in fp32 and returned in the input dtype.
    """
    stats = latent_stats(raw.shape[channel_dim] if channels is None else channels)
    _check(raw, channel_dim, stats)
    mean, std = _broadcast(stats[0], raw, channel_dim), _broadcast(stats[1], raw, channel_dim)
    return ((raw.float() - mean) / std).to(raw.dtype)


def to_raw(normalized: torch.Tensor, channel_dim: int = 1, channels: int | None = None) -> torch.Tensor:
    """DiT-space latents -> raw VAE latents: ``z * std + mean`` (fp32 math, input dtype out)."""
    stats = latent_stats(normalized.shape[channel_dim] if channels is None else channels)
    _check(normalized, channel_dim, stats)
    mean, std = _broadcast(stats[0], normalized, channel_dim), _broadcast(stats[1], normalized, channel_dim)
    return (normalized.float() * std + mean).to(normalized.dtype)
