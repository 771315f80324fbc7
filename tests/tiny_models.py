"""Tiny random models in the real file formats -- the one place tests write model files.

Every file is built from the real architecture at a tiny width (random weights, seeded) and saved in the
container, key layout and dtype of the published file, under its real name, so the loaders detect and
load it exactly as the real one. Two sets, one per kind of test:

``make_tiny_models(models_dir, families=("t2v", "i2v", "ti2v"))`` (rollout, CLI tests) writes the files
the presets look for and returns what it wrote::

    {"t2v":  {"preset": "self-forcing-1.3b",   "height": 32, "width": 48, "files": {role: relative path}},
     "i2v":  {"preset": "wan2.1-i2v-14b-480p", ...},
     "ti2v": {"preset": "wan2.2-ti2v-5b", ...}}

- ``diffusion_models/self_forcing_dmd.pt``: Self-Forcing ``torch.save`` of ``{"generator", "generator_ema",
  "critic"}`` with ``model.``-prefixed official Wan keys (fp32);
- ``diffusion_models/wan2.1_i2v_480p_14B_fp16.safetensors``: fp16, ``model.diffusion_model.`` prefix
  (ComfyUI export), CLIP image cross-attention (ViT width 768: heads inferable from the weights);
- ``diffusion_models/wan2.2_ti2v_5B_fp16.safetensors``: fp16, bare official keys, 48 channels;
- ``text_encoders/umt5_xxl_fp16.safetensors``: transformers / ComfyUI UMT5 layout with the SentencePiece
  tokenizer embedded as the ``spiece_model`` uint8 tensor (a tiny trained model);
- ``vae/wan_2.1_vae.safetensors`` / ``vae/wan2.2_vae.safetensors`` (official key names),
  ``vae_approx/taew2_1.pth`` / ``taew2_2.pth`` (madebyollin TAEHV state dicts);
- ``clip_vision/clip_vision_h.safetensors``: transformers ``CLIPVisionModelWithProjection`` layout.

``install_tiny_models(models_dir, input_dir)`` (ComfyUI node tests) writes the names the bundled
workflows use, plus start images into ``input/``:

- ``self_forcing_dmd.pt`` (as above); ``wan2.1_i2v_480p_14B_fp8_scaled.safetensors``: ComfyUI fp8 scaled
  (float8_e4m3fn block Linears + ``scale_weight``, ``scaled_fp8`` marker), ViT width 32 with its head
  count in a ``config.json`` beside the CLIP file; ``wan2.2_ti2v_5B_fp16.safetensors`` (as above);
- ``longlive_base.pt`` (``{"generator": {"model.<wan key>"}}``) + ``loras/longlive_lora.pt`` (PEFT
  ``base_model.model.<layer>.lora_{A,B}.weight`` in ``{"generator_lora": ...}``);
- ``umt5_xxl_fp8_e4m3fn_scaled.safetensors`` (fp8 scaled UMT5), ``clip_vision_h.safetensors``,
  the VAEs and TAEHVs (TAEHVs with visible mid-gray output, so previews differ), a VAE placed in
  ``diffusion_models`` (``WRONG_KIND_DIT``).

``causvid_checkpoint_bytes()``: a tiny causal T2V DiT in CausVid's ``model.pt`` format.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

__all__ = [
    "make_tiny_models",
    "tiny_family_files",
    "install_tiny_models",
    "causvid_checkpoint_bytes",
    "FAMILIES",
    "TEXT_DIM",
    "START_IMAGE",
    "ODD_IMAGE",
    "WRONG_KIND_DIT",
]

TEXT_DIM = 32  # tiny UMT5 d_model == the DiTs' text_dim
FAMILIES = {
    "t2v": dict(preset="self-forcing-1.3b", height=32, width=48),
    "i2v": dict(preset="wan2.1-i2v-14b-480p", height=32, width=48),
    "ti2v": dict(preset="wan2.2-ti2v-5b", height=64, width=64),
}
WRONG_KIND_DIT = "wan_2.1_vae_in_the_wrong_folder.safetensors"  # a VAE placed in diffusion_models
START_IMAGE = "wan_stream_start.png"  # 64x64
ODD_IMAGE = "wan_stream_odd.png"  # 72x40: not a multiple of 16

# the two tiny sizes: rollout tests (CLIP ViT width 768, 28 px) and node tests (width 32, 224 px)
ROLLOUT = dict(dit_ffn=64, dit_std=0.08, clip=dict(width=768, heads=12, layers=2, image=28, seed=5))
NODES = dict(dit_ffn=256, dit_std=0.05, clip=dict(width=32, heads=2, layers=3, image=224, seed=12))


# -- building blocks -------------------------------------------------------------------------------------
def _randomize(module: torch.nn.Module, seed: int, std: float) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(module.named_parameters()):
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


def _dit_state(model_type: str, seed: int, size: dict, clip_dim: int = 1280) -> dict[str, torch.Tensor]:
    """Official Wan DiT keys (fp32) of a tiny WanDiT: head_dim 128, as every real Wan DiT."""
    from wan_core.dit import WanDiT, WanDiTConfig

    kw = dict(dim=128, ffn_dim=size["dit_ffn"], num_heads=1, num_layers=2, text_dim=TEXT_DIM)
    if model_type == "t2v":
        cfg = WanDiTConfig(in_dim=16, out_dim=16, model_type="t2v", **kw)
    elif model_type == "i2v":
        cfg = WanDiTConfig(
            in_dim=36, out_dim=16, model_type="i2v", image_cross_attn=True, clip_dim=clip_dim, **kw
        )
    else:
        cfg = WanDiTConfig(in_dim=48, out_dim=48, model_type="ti2v", **kw)
    return _state(_randomize(WanDiT(cfg), seed, size["dit_std"]))


def _training_pt(sd: dict[str, torch.Tensor], *keys: str, critic: bool = False) -> dict:
    """Self-Forcing / CausVid / LongLive training checkpoint: ``{key: {"model.<wan key>": fp32}}``."""
    prefixed = {"model." + k: v.float() for k, v in sd.items()}
    out = {k: prefixed for k in keys}
    if critic:
        out["critic"] = {"w": torch.zeros(1)}
    return out


def _block_linear(k: str) -> bool:
    return (
        k.startswith("blocks.")
        and any(f".{m}." in k for m in ("self_attn", "cross_attn", "ffn"))
        and "norm" not in k
    )


def _i2v_file(path: Path, size: dict, fp8: bool) -> None:
    sd = _dit_state("i2v", 2, size, clip_dim=size["clip"]["width"])
    sd = _fp8_scaled(sd, _block_linear) if fp8 else {k: v.half() for k, v in sd.items()}
    save_file({(k if k == "scaled_fp8" else "model.diffusion_model." + k): v for k, v in sd.items()}, path)


def _ti2v_file(path: Path, size: dict) -> None:
    save_file({k: v.half() for k, v in _dit_state("ti2v", 3, size).items()}, path)


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
        bos_id=-1,  # umT5: <pad>=0, </s>=1, <unk>=2, no BOS
        minloglevel=2,
    )
    return buf.getvalue()


def _umt5_file(path: Path, fp8: bool) -> None:
    """UMT5 encoder, ComfyUI / transformers keys (one embedding: ``shared.weight``), fp16 or fp8 scaled."""
    from transformers import UMT5Config, UMT5EncoderModel

    cfg = UMT5Config(
        vocab_size=256, d_model=TEXT_DIM, d_kv=8, num_heads=4, d_ff=64, num_layers=2,
        relative_attention_num_buckets=32, relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu", dropout_rate=0.0,
    )  # fmt: skip
    sd = _state(_randomize(UMT5EncoderModel(cfg).eval(), 11, std=0.1))
    sd.pop("encoder.embed_tokens.weight", None)  # tied to shared.weight; ComfyUI files keep one
    if fp8:
        sd = _fp8_scaled(
            sd, lambda k: (".SelfAttention." in k or ".DenseReluDense." in k) and "relative" not in k
        )
    else:
        sd = {k: v.half() for k, v in sd.items()}
    sd["spiece_model"] = torch.frombuffer(bytearray(_spiece_model()), dtype=torch.uint8)
    save_file(sd, path)


def _clip_file(path: Path, clip: dict) -> None:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    cfg = CLIPVisionConfig(
        hidden_size=clip["width"], intermediate_size=64, num_hidden_layers=clip["layers"],
        num_attention_heads=clip["heads"], image_size=clip["image"], patch_size=14, projection_dim=16,
        hidden_act="gelu",
    )  # fmt: skip
    m = _randomize(CLIPVisionModelWithProjection(cfg).eval(), clip["seed"], std=0.05)
    sd = _state(m, torch.float16)
    save_file({k: v for k, v in sd.items() if not k.endswith("position_ids")}, path)
    if clip["width"] % 64:  # a non-standard ViT width: heads come from the transformers config beside it
        (path.parent / "config.json").write_text(
            json.dumps({"hidden_size": clip["width"], "num_attention_heads": clip["heads"]})
        )


def _vae_file(path: Path, version: str, dtype: torch.dtype, dim: int, dec_dim: int) -> None:
    from wan_core.vae import WanVAE21, WanVAE21Config, WanVAE22, WanVAE22Config

    if version == "2.1":
        m = _randomize(WanVAE21(WanVAE21Config(dim=dim, z_dim=16)), 21, std=0.1)
    else:
        m = _randomize(WanVAE22(WanVAE22Config(dim=dim, dec_dim=dec_dim, z_dim=48)), 22, std=0.1)
    save_file(_state(m, dtype), path)


def _taehv_file(path: Path, latent_channels: int, patch: int, visible: bool) -> None:
    """madebyollin TAEHV state dict; ``visible``: mid-gray frames with structure (previews differ)."""
    from wan_core.vae import TAEHV, TAEHVConfig

    cfg = TAEHVConfig(
        latent_channels=latent_channels, patch_size=patch, encoder_width=8, decoder_widths=(16, 8, 8, 8)
    )
    m = _randomize(TAEHV(cfg), 30 + latent_channels, std=0.3 if visible else 0.1)
    if visible:
        with torch.no_grad():
            m.decoder[-1].bias.fill_(0.5)
    torch.save(_state(m, torch.float16 if visible else None), path)


def _images(input_dir: Path) -> None:
    from PIL import Image

    y, x = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    rgb = torch.stack([x, y, 1 - x * y], -1).mul(255).byte().numpy()
    Image.fromarray(rgb).save(input_dir / START_IMAGE)
    Image.new("RGB", (72, 40), (200, 80, 40)).save(input_dir / ODD_IMAGE)


# -- entry points ----------------------------------------------------------------------------------------
def make_tiny_models(models_dir: str | os.PathLike, families=("t2v", "i2v", "ti2v")) -> dict:
    """Write the rollout tests' tiny models for ``families`` into ``models_dir`` (see the module doc)."""
    root = Path(models_dir)
    for sub in ("diffusion_models", "vae", "vae_approx", "text_encoders", "clip_vision"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    out: dict[str, dict] = {}

    def once(rel: str, make) -> str:
        if not (root / rel).exists():
            make(root / rel)
        return rel

    size = ROLLOUT
    umt5 = once("text_encoders/umt5_xxl_fp16.safetensors", lambda p: _umt5_file(p, fp8=False))
    for fam in families:
        if fam not in FAMILIES:
            raise ValueError(f"unknown family {fam!r}; choose from {list(FAMILIES)}")
        files = {"text_encoder": umt5}
        if fam in ("t2v", "i2v"):
            files["vae"] = once(
                "vae/wan_2.1_vae.safetensors", lambda p: _vae_file(p, "2.1", torch.float32, 4, 4)
            )
            files["taehv"] = once("vae_approx/taew2_1.pth", lambda p: _taehv_file(p, 16, 1, False))
        if fam == "t2v":
            files["dit"] = once(
                "diffusion_models/self_forcing_dmd.pt",
                lambda p: torch.save(
                    _training_pt(_dit_state("t2v", 1, size), "generator", "generator_ema", critic=True), p
                ),
            )
        elif fam == "i2v":
            files["dit"] = once(
                "diffusion_models/wan2.1_i2v_480p_14B_fp16.safetensors",
                lambda p: _i2v_file(p, size, fp8=False),
            )
            files["clip_vision"] = once(
                "clip_vision/clip_vision_h.safetensors", lambda p: _clip_file(p, size["clip"])
            )
        else:
            files["dit"] = once(
                "diffusion_models/wan2.2_ti2v_5B_fp16.safetensors", lambda p: _ti2v_file(p, size)
            )
            files["vae"] = once(
                "vae/wan2.2_vae.safetensors", lambda p: _vae_file(p, "2.2", torch.float32, 4, 8)
            )
            files["taehv"] = once("vae_approx/taew2_2.pth", lambda p: _taehv_file(p, 48, 2, False))
        out[fam] = {**FAMILIES[fam], "files": files}
    return out


def install_tiny_models(models_dir: Path, input_dir: Path) -> dict[str, Path]:
    """Write every tiny model of the node tests (see the module doc); returns {file name: path}."""
    models_dir, input_dir = Path(models_dir), Path(input_dir)
    for folder in ("diffusion_models", "vae", "vae_approx", "text_encoders", "clip_vision", "loras"):
        (models_dir / folder).mkdir(parents=True, exist_ok=True)
    input_dir.mkdir(parents=True, exist_ok=True)
    size = NODES
    dm, vae, approx = models_dir / "diffusion_models", models_dir / "vae", models_dir / "vae_approx"
    # DiTs
    t2v = _dit_state("t2v", 1, size)
    torch.save(_training_pt(t2v, "generator", "generator_ema", critic=True), dm / "self_forcing_dmd.pt")
    _i2v_file(dm / "wan2.1_i2v_480p_14B_fp8_scaled.safetensors", size, fp8=True)
    _ti2v_file(dm / "wan2.2_ti2v_5B_fp16.safetensors", size)
    # LongLive 2.0 5B: a causal TI2V DiT as its release holds it ({"generator": {"model.<wan key>"}})
    torch.save(_training_pt(_dit_state("ti2v", 13, size), "generator"), dm / "longlive2_5b_bf16.pt")
    # LongLive: a causal T2V base (Self-Forcing-style .pt) + a PEFT LoRA of its block Linears
    torch.save(_training_pt(_dit_state("t2v", 8, size), "generator"), dm / "longlive_base.pt")
    torch.save({"generator_lora": _peft_lora(t2v, rank=4, seed=9)}, models_dir / "loras" / "longlive_lora.pt")
    # VAEs and TAEHVs
    _vae_file(vae / "wan_2.1_vae.safetensors", "2.1", torch.float16, 8, 8)
    _vae_file(vae / "wan2.2_vae.safetensors", "2.2", torch.float16, 8, 8)
    shutil.copyfile(vae / "wan_2.1_vae.safetensors", dm / WRONG_KIND_DIT)
    _taehv_file(approx / "taew2_1.pth", 16, 1, visible=True)
    _taehv_file(approx / "taew2_2.pth", 48, 2, visible=True)
    # encoders
    _umt5_file(models_dir / "text_encoders" / "umt5_xxl_fp8_e4m3fn_scaled.safetensors", fp8=True)
    _clip_file(models_dir / "clip_vision" / "clip_vision_h.safetensors", size["clip"])
    _images(input_dir)
    return {p.name: p for p in models_dir.rglob("*") if p.is_file()}


def causvid_checkpoint_bytes(seed: int = 21) -> bytes:
    """A tiny causal T2V DiT in CausVid's ``model.pt`` format (``{"generator": {"model.<wan key>"}}``)."""
    buf = io.BytesIO()
    torch.save(_training_pt(_dit_state("t2v", seed, NODES), "generator"), buf)
    return buf.getvalue()


def tiny_family_files(models_dir: str | os.PathLike, family: str = "t2v") -> dict:
    """``make_tiny_models`` for one family, plus ``root`` and ``paths`` (role -> absolute path)."""
    root = Path(models_dir)
    info = make_tiny_models(root, families=(family,))[family]
    info["root"] = root
    info["paths"] = {role: str(root / rel) for role, rel in info["files"].items()}
    return info
