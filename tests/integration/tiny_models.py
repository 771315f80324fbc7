"""Tiny random models in the real file formats, written under the real file names the bundled
workflows use, into a ComfyUI ``models/`` folder (plus start images into ``input/``).

Every file is built from the real architecture at a tiny width (random weights) and saved in the
layout the real file has, so the pack's loaders detect and load them exactly as the real ones:

- ``self_forcing_dmd.pt``: ``torch.save({"generator_ema": {"model.<wan key>": fp32}})`` (Self-Forcing)
- ``wan2.1_i2v_480p_14B_fp8_scaled.safetensors``: ComfyUI fp8 scaled (``model.diffusion_model.`` prefix,
  float8_e4m3fn block Linears + ``scale_weight``, ``scaled_fp8`` marker), Wan2.1 I2V (CLIP cross-attention)
- ``wan2.2_ti2v_5B_fp16.safetensors``: bare keys, fp16, 48-channel TI2V
- ``longlive_base.pt`` (``{"generator": {"model.<wan key>"}}``) + ``loras/longlive_lora.pt`` (PEFT
  ``base_model.model.<layer>.lora_{A,B}.weight`` in ``{"generator_lora": ...}``)
- ``umt5_xxl_fp8_e4m3fn_scaled.safetensors``: transformers/ComfyUI UMT5 layout, fp8 scaled, with the
  SentencePiece tokenizer embedded as the ``spiece_model`` uint8 tensor (a tiny trained model)
- ``clip_vision_h.safetensors``: transformers ``CLIPVisionModelWithProjection`` layout (ViT, 224 px / 14)
- ``wan_2.1_vae.safetensors`` / ``wan2.2_vae.safetensors``: official key names; ``taew2_1.pth`` / ``taew2_2.pth``
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

WRONG_KIND_DIT = "wan_2.1_vae_in_the_wrong_folder.safetensors"  # a VAE placed in diffusion_models
START_IMAGE = "wan_stream_start.png"  # 64x64
ODD_IMAGE = "wan_stream_odd.png"  # 72x40: not a multiple of 16

TEXT_DIM = 32  # tiny UMT5 width = the DiT's text_dim
CLIP_DIM = 32  # tiny CLIP ViT width = the I2V DiT's clip_dim


def _randomize(module: torch.nn.Module, seed: int, std: float = 0.05) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.ndim >= 2 or p.numel() > 1:
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return module


def _state(module: torch.nn.Module, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in module.state_dict().items():
        v = v.detach().clone().contiguous()
        out[k] = v.to(dtype) if dtype is not None and v.is_floating_point() else v
    return out


def _fp8_scaled(sd: dict[str, torch.Tensor], is_linear) -> dict[str, torch.Tensor]:
    """ComfyUI's legacy fp8 scaled layout: fp8 Linear weights + per-tensor ``scale_weight``."""
    out = {"scaled_fp8": torch.empty(2, dtype=torch.float8_e4m3fn)}
    for k, v in sd.items():
        if k.endswith(".weight") and is_linear(k):
            scale = v.abs().max().float().clamp(min=1e-8) / 448.0
            out[k] = (v.float() / scale).to(torch.float8_e4m3fn)
            out[k[: -len("weight")] + "scale_weight"] = scale.reshape(())
        else:
            out[k] = v.half() if v.is_floating_point() else v
    return out


def _dit(model_type: str, seed: int):
    from wan_core.dit import WanDiT, WanDiTConfig

    kw = dict(dim=128, ffn_dim=256, num_heads=1, num_layers=2, text_dim=TEXT_DIM, freq_dim=256)
    if model_type == "t2v":
        cfg = WanDiTConfig(in_dim=16, out_dim=16, model_type="t2v", **kw)
    elif model_type == "i2v":
        cfg = WanDiTConfig(
            in_dim=36, out_dim=16, model_type="i2v", image_cross_attn=True, clip_dim=CLIP_DIM, **kw
        )
    else:
        cfg = WanDiTConfig(in_dim=48, out_dim=48, model_type="ti2v", **kw)
    return _randomize(WanDiT(cfg), seed)


def _peft_lora(dit_state: dict[str, torch.Tensor], rank: int, seed: int) -> dict[str, torch.Tensor]:
    """``peft.get_peft_model_state_dict`` layout: ``base_model.model.<layer>.lora_{A,B}.weight``."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, w in dit_state.items():
        if (
            k.startswith("blocks.")
            and k.endswith(".weight")
            and w.ndim == 2
            and (".self_attn." in k or ".ffn." in k)
        ):
            layer = "base_model.model." + k[: -len(".weight")]
            out[layer + ".lora_A.weight"] = torch.randn(rank, w.shape[1], generator=g) * 0.05
            out[layer + ".lora_B.weight"] = torch.randn(w.shape[0], rank, generator=g) * 0.05
    return out


def _visible_taehv(cfg, seed: int):
    """A random TAEHV whose frames are mid-gray with visible structure (not clamped to black), so
    that different latents give different preview JPEGs."""
    from wan_core.vae import TAEHV

    model = _randomize(TAEHV(cfg), seed, std=0.3)
    with torch.no_grad():
        model.decoder[-1].bias.fill_(0.5)
    return model


def _spiece_model() -> bytes:
    import sentencepiece as spm

    corpus = [
        "a red fox trotting through fresh snow in a sunlit pine forest",
        "the woman in the picture turns her head toward the window and smiles",
        "a paper boat drifting down a rain soaked street gutter with neon reflections",
        "a hot air balloon rising over misty green hills at sunrise seen from a drone",
        "the balloon drifts over a wide river valley and descends toward a village square",
        "static frame blurry details overexposed low quality worst quality jpeg artifacts",
    ] * 20
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_writer=buf,
        vocab_size=120,
        model_type="unigram",
        character_coverage=1.0,
        hard_vocab_limit=False,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        minloglevel=2,
    )
    return buf.getvalue()


def _umt5_file() -> dict[str, torch.Tensor]:
    from transformers import UMT5Config, UMT5EncoderModel

    cfg = UMT5Config(
        vocab_size=256, d_model=TEXT_DIM, d_kv=8, num_heads=4, d_ff=64, num_layers=2,
        relative_attention_num_buckets=32, relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu", dropout_rate=0.0,
    )  # fmt: skip
    sd = _state(_randomize(UMT5EncoderModel(cfg).eval(), 11, std=0.1))
    sd.pop("encoder.embed_tokens.weight", None)  # tied to shared.weight; ComfyUI files keep one
    out = _fp8_scaled(
        sd, lambda k: (".SelfAttention." in k or ".DenseReluDense." in k) and "relative" not in k
    )
    out["spiece_model"] = torch.frombuffer(bytearray(_spiece_model()), dtype=torch.uint8)
    return out


def _clip_file() -> dict[str, torch.Tensor]:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    cfg = CLIPVisionConfig(
        hidden_size=CLIP_DIM, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
        image_size=224, patch_size=14, projection_dim=16, hidden_act="gelu",
    )  # fmt: skip
    sd = _state(_randomize(CLIPVisionModelWithProjection(cfg).eval(), 12), torch.float16)
    return {k: v for k, v in sd.items() if not k.endswith("position_ids")}


def _images(input_dir: Path) -> None:
    from PIL import Image

    y, x = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    rgb = torch.stack([x, y, 1 - x * y], -1).mul(255).byte().numpy()
    Image.fromarray(rgb).save(input_dir / START_IMAGE)
    Image.new("RGB", (72, 40), (200, 80, 40)).save(input_dir / ODD_IMAGE)


def _write_all(models: Path, input_dir: Path) -> None:
    from wan_core.vae import TAEHVConfig, WanVAE21, WanVAE21Config, WanVAE22, WanVAE22Config

    dm, vae, approx = models / "diffusion_models", models / "vae", models / "vae_approx"
    # DiTs
    t2v = _state(_dit("t2v", 1))
    torch.save(
        {"generator_ema": {"model." + k: v.float() for k, v in t2v.items()}}, dm / "self_forcing_dmd.pt"
    )
    i2v = _state(_dit("i2v", 2))

    def block_linear(k: str) -> bool:
        return (
            k.startswith("blocks.")
            and any(f".{m}." in k for m in ("self_attn", "cross_attn", "ffn"))
            and "norm" not in k
        )

    i2v_fp8 = _fp8_scaled(i2v, block_linear)
    save_file(
        {(k if k == "scaled_fp8" else "model.diffusion_model." + k): v for k, v in i2v_fp8.items()},
        dm / "wan2.1_i2v_480p_14B_fp8_scaled.safetensors",
    )
    save_file(_state(_dit("ti2v", 3), torch.float16), dm / "wan2.2_ti2v_5B_fp16.safetensors")
    # LongLive: a causal T2V base (Self-Forcing-style .pt) + a PEFT LoRA of its block Linears
    torch.save(
        {"generator": {"model." + k: v for k, v in _state(_dit("t2v", 8)).items()}}, dm / "longlive_base.pt"
    )
    torch.save({"generator_lora": _peft_lora(t2v, rank=4, seed=9)}, models / "loras" / "longlive_lora.pt")
    # VAEs and TAEHVs
    vae21 = _state(_randomize(WanVAE21(WanVAE21Config(dim=8)), 4), torch.float16)
    save_file(vae21, vae / "wan_2.1_vae.safetensors")
    save_file(
        _state(_randomize(WanVAE22(WanVAE22Config(dim=8, dec_dim=8)), 5), torch.float16),
        vae / "wan2.2_vae.safetensors",
    )
    shutil.copyfile(vae / "wan_2.1_vae.safetensors", dm / WRONG_KIND_DIT)
    tiny_tae = dict(encoder_width=8, decoder_widths=(16, 8, 8, 8))
    torch.save(_state(_visible_taehv(TAEHVConfig(**tiny_tae), 6), torch.float16), approx / "taew2_1.pth")
    taew22 = _visible_taehv(TAEHVConfig(latent_channels=48, patch_size=2, **tiny_tae), 7)
    torch.save(_state(taew22, torch.float16), approx / "taew2_2.pth")
    # encoders
    save_file(_umt5_file(), models / "text_encoders" / "umt5_xxl_fp8_e4m3fn_scaled.safetensors")
    save_file(_clip_file(), models / "clip_vision" / "clip_vision_h.safetensors")
    # a non-standard (tiny) ViT width: its head count comes from the transformers config beside it
    (models / "clip_vision" / "config.json").write_text(
        json.dumps({"hidden_size": CLIP_DIM, "num_attention_heads": 2})
    )
    _images(input_dir)


def causvid_checkpoint_bytes(seed: int = 21) -> bytes:
    """A tiny causal T2V DiT in CausVid's ``model.pt`` format (``{"generator": {"model.<wan key>"}}``)."""
    buf = io.BytesIO()
    torch.save({"generator": {"model." + k: v.float() for k, v in _state(_dit("t2v", seed)).items()}}, buf)
    return buf.getvalue()


def install_tiny_models(models_dir: Path, input_dir: Path) -> dict[str, Path]:
    """Write every tiny model; returns {file name: path}."""
    for folder in ("diffusion_models", "vae", "vae_approx", "text_encoders", "clip_vision", "loras"):
        (models_dir / folder).mkdir(parents=True, exist_ok=True)
    input_dir.mkdir(parents=True, exist_ok=True)
    _write_all(models_dir, input_dir)
    return {p.name: p for p in models_dir.rglob("*") if p.is_file()}
