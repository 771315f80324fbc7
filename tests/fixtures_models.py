"""Tiny random models saved in the real file formats into a ComfyUI-style models folder.

``make_tiny_models(models_dir, families=("t2v", "i2v", "ti2v"))`` writes, under ``models_dir``, the
files the presets below look for (same names, same containers and key layouts as the published
files, only tiny shapes and random weights), and returns what it wrote::

    {"t2v":  {"preset": "self-forcing-1.3b",   "height": 32, "width": 48, "files": {role: relative path}},
     "i2v":  {"preset": "wan2.1-i2v-14b-480p", ...},
     "ti2v": {"preset": "wan2.2-ti2v-5b", ...}}

Formats:
- Self-Forcing DiT: ``diffusion_models/self_forcing_dmd.pt``, ``torch.save`` of
  ``{"generator": sd, "generator_ema": sd, "critic": ...}`` with ``model.``-prefixed official Wan keys (fp32).
- Wan2.1 I2V DiT: ``diffusion_models/wan2.1_i2v_480p_14B_fp16.safetensors``, fp16,
  ``model.diffusion_model.``-prefixed keys (ComfyUI export), with CLIP image cross-attention.
- Wan2.2 TI2V DiT: ``diffusion_models/wan2.2_ti2v_5B_fp16.safetensors``, fp16, bare official keys.
- UMT5: ``text_encoders/umt5_xxl_fp16.safetensors`` (ComfyUI / transformers keys + ``spiece_model``
  uint8 tensor holding a trained SentencePiece model).
- Wan VAE 2.1 / 2.2: ``vae/wan_2.1_vae.safetensors``, ``vae/wan2.2_vae.safetensors`` (official key names).
- TAEHV: ``vae_approx/taew2_1.pth`` / ``taew2_2.pth`` (``torch.save`` of the state dict, madebyollin layout).
- CLIP vision: ``clip_vision/clip_vision_h.safetensors`` (transformers ``CLIPVisionModelWithProjection``
  layout, ``vision_model.*`` + ``visual_projection.weight``; width 768 so heads are inferable).

Everything is deterministic (seeded) and small (the whole folder is a few MB). Used by the rollout and
CLI tests and by the ComfyUI node tests.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

__all__ = ["make_tiny_models", "TEXT_DIM", "FAMILIES"]

TEXT_DIM = 32  # tiny UMT5 d_model == DiT text_dim
DIT = dict(dim=128, ffn_dim=64, num_heads=1, num_layers=2)  # head_dim 128, as every real Wan DiT
FAMILIES = {
    "t2v": dict(preset="self-forcing-1.3b", height=32, width=48),
    "i2v": dict(preset="wan2.1-i2v-14b-480p", height=32, width=48),
    "ti2v": dict(preset="wan2.2-ti2v-5b", height=64, width=64),
}
_CORPUS = [
    "a red fox running through snow",
    "a cat sitting on a sunny windowsill",
    "waves crashing on a rocky beach at sunset",
    "a city street at night with neon lights and rain",
    "an astronaut riding a horse on the moon",
    "slow motion of a hummingbird drinking nectar from a flower",
]


def _randomize(module: torch.nn.Module, seed: int, std: float = 0.1) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(module.named_parameters()):
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return module


def _spiece_bytes(workdir: Path) -> bytes:
    import sentencepiece

    workdir.mkdir(parents=True, exist_ok=True)
    corpus = workdir / "corpus.txt"
    corpus.write_text("\n".join(_CORPUS * 20))
    sentencepiece.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(workdir / "sp"),
        vocab_size=60,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,  # umT5: <pad>=0, </s>=1, <unk>=2, no BOS
        hard_vocab_limit=False,
        minloglevel=2,
    )
    return (workdir / "sp.model").read_bytes()


def _umt5_file(path: Path, workdir: Path) -> None:
    from transformers import UMT5Config, UMT5EncoderModel

    cfg = UMT5Config(
        vocab_size=64,
        d_model=TEXT_DIM,
        d_kv=8,
        num_heads=4,
        d_ff=64,
        num_layers=2,
        feed_forward_proj="gated-gelu",
    )
    torch.manual_seed(0)
    m = _randomize(UMT5EncoderModel(cfg).eval(), 1, std=0.3)
    sd = {k: v.detach().to(torch.float16).contiguous() for k, v in m.state_dict().items()}
    sd["spiece_model"] = torch.frombuffer(bytearray(_spiece_bytes(workdir)), dtype=torch.uint8)
    save_file(sd, str(path))


def _dit_state(seed: int, **cfg_kw) -> dict[str, torch.Tensor]:
    from wan_core.dit import WanDiT, WanDiTConfig

    m = WanDiT(WanDiTConfig(**DIT, text_dim=TEXT_DIM, **cfg_kw))
    _randomize(m, seed, std=0.08)
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def _vae21_file(path: Path) -> None:
    from wan_core.vae import WanVAE21, WanVAE21Config

    m = _randomize(WanVAE21(WanVAE21Config(dim=4, z_dim=16)), 21, std=0.1)
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(path))


def _vae22_file(path: Path) -> None:
    from wan_core.vae import WanVAE22, WanVAE22Config

    m = _randomize(WanVAE22(WanVAE22Config(dim=4, dec_dim=8, z_dim=48)), 22, std=0.1)
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(path))


def _taehv_file(path: Path, latent_channels: int, patch: int) -> None:
    from wan_core.vae import TAEHV, TAEHVConfig

    cfg = TAEHVConfig(
        latent_channels=latent_channels, patch_size=patch, encoder_width=8, decoder_widths=(16, 8, 8, 8)
    )
    m = _randomize(TAEHV(cfg), 30 + latent_channels, std=0.1)
    torch.save({k: v.detach().clone() for k, v in m.state_dict().items()}, path)


def _clip_file(path: Path) -> None:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    cfg = CLIPVisionConfig(
        hidden_size=768,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=12,
        image_size=28,
        patch_size=14,
        projection_dim=16,
    )
    torch.manual_seed(0)
    m = _randomize(CLIPVisionModelWithProjection(cfg).eval(), 5, std=0.05)
    sd = {
        k: v.detach().to(torch.float16).contiguous()
        for k, v in m.state_dict().items()
        if "position_ids" not in k
    }
    save_file(sd, str(path))


def make_tiny_models(models_dir: str | os.PathLike, families=("t2v", "i2v", "ti2v")) -> dict:
    """Write tiny models for ``families`` into ``models_dir`` (see module doc); returns what was written."""
    root = Path(models_dir)
    for sub in ("diffusion_models", "vae", "vae_approx", "text_encoders", "clip_vision"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    out: dict[str, dict] = {}
    written: set[str] = set()

    def once(rel: str, make) -> str:
        if rel not in written and not (root / rel).exists():
            make(root / rel)
        written.add(rel)
        return rel

    def umt5_file(p):
        with tempfile.TemporaryDirectory() as d:
            _umt5_file(p, Path(d))

    umt5 = once("text_encoders/umt5_xxl_fp16.safetensors", umt5_file)
    for fam in families:
        if fam not in FAMILIES:
            raise ValueError(f"unknown family {fam!r}; choose from {list(FAMILIES)}")
        files = {"text_encoder": umt5}
        if fam == "t2v":

            def sf(p):
                sd = {"model." + k: v for k, v in _dit_state(1).items()}
                torch.save({"generator": sd, "generator_ema": sd, "critic": {"w": torch.zeros(1)}}, p)

            files["dit"] = once("diffusion_models/self_forcing_dmd.pt", sf)
            files["vae"] = once("vae/wan_2.1_vae.safetensors", _vae21_file)
            files["taehv"] = once("vae_approx/taew2_1.pth", lambda p: _taehv_file(p, 16, 1))
        elif fam == "i2v":

            def i2v(p):
                sd = _dit_state(
                    2, in_dim=36, out_dim=16, model_type="i2v", image_cross_attn=True, clip_dim=768
                )
                save_file(
                    {"model.diffusion_model." + k: v.half().contiguous() for k, v in sd.items()}, str(p)
                )

            files["dit"] = once("diffusion_models/wan2.1_i2v_480p_14B_fp16.safetensors", i2v)
            files["vae"] = once("vae/wan_2.1_vae.safetensors", _vae21_file)
            files["taehv"] = once("vae_approx/taew2_1.pth", lambda p: _taehv_file(p, 16, 1))
            files["clip_vision"] = once("clip_vision/clip_vision_h.safetensors", _clip_file)
        else:

            def ti2v(p):
                sd = _dit_state(3, in_dim=48, out_dim=48, model_type="ti2v")
                save_file({k: v.half().contiguous() for k, v in sd.items()}, str(p))

            files["dit"] = once("diffusion_models/wan2.2_ti2v_5B_fp16.safetensors", ti2v)
            files["vae"] = once("vae/wan2.2_vae.safetensors", _vae22_file)
            files["taehv"] = once("vae_approx/taew2_2.pth", lambda p: _taehv_file(p, 48, 2))
        out[fam] = {**FAMILIES[fam], "files": files}
    return out
