"""CLIP vision tower: parity with transformers CLIPVisionModelWithProjection hidden_states[-2] and with
the official Wan VisionTransformer (use_31_block), every file layout, real-size layouts on meta,
preprocessing as official / ComfyUI, wrong files."""

import importlib
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from official_ref import max_rel_err, official, randomize_, sdpa_flash_attention
from safetensors.torch import save_file

from wan_core.checkpoint import Checkpoint, CheckpointError
from wan_core.clip.clip_loader import clip_vision_config, clip_vision_plan
from wan_core.text import CLIP_VISION_PRESETS, CLIPVisionTower, clip_preprocess, load_clip_vision

DIM, HEADS, LAYERS, PATCH, IMAGE, PROJ = 64, 4, 3, 14, 42, 32  # 3x3 patches + class token = 10 tokens
TOL = 1e-4


def _hf_model(seed=0):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    cfg = CLIPVisionConfig(
        hidden_size=DIM,
        intermediate_size=4 * DIM,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        patch_size=PATCH,
        image_size=IMAGE,
        projection_dim=PROJ,
        hidden_act="gelu",
        layer_norm_eps=1e-5,
    )
    m = randomize_(CLIPVisionModelWithProjection(cfg).eval(), seed, std=0.1)
    with torch.no_grad():  # sharp attention, so a wrong head split or q/k/v order would show
        for layer in m.vision_model.encoder.layers:
            layer.self_attn.q_proj.weight.mul_(8)
    return m


def _hf_ref(hf, pixels):
    with torch.no_grad():
        out = hf(pixel_values=pixels, output_hidden_states=True)
    return out.hidden_states[-2], out.image_embeds


def _pixels(n=2, seed=1):
    return torch.randn(n, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(seed))


def _official_clip_module():
    """wan22's ``wan/modules/animate/clip.py`` (= Wan2.1 clip.py vision tower), imported on CPU:
    bare ``wan.modules.animate`` package, torchvision stubbed only while importing (it is only used by
    the transforms of the ``CLIPModel`` wrapper), flash_attention -> fp32 SDPA."""
    name = "wan.modules.animate.clip"
    if name in sys.modules:
        return sys.modules[name]
    official("attention")  # registers the bare wan / wan.modules packages
    modules_path = sys.modules["wan.modules"].__path__[0]
    if "wan.modules.animate" not in sys.modules:
        pkg = types.ModuleType("wan.modules.animate")
        pkg.__path__ = [modules_path + "/animate"]
        sys.modules["wan.modules.animate"] = pkg
    saved = {k: sys.modules.get(k) for k in ("torchvision", "torchvision.transforms")}
    tv = types.ModuleType("torchvision")
    tv.transforms = types.ModuleType("torchvision.transforms")
    sys.modules.update({"torchvision": tv, "torchvision.transforms": tv.transforms})
    try:
        mod = importlib.import_module(name)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    mod.flash_attention = sdpa_flash_attention
    return mod


def _hf_to_official(sd):
    """Independent (test-side) inverse mapping: transformers CLIPVisionModelWithProjection -> Wan ``visual.*``."""
    out = {
        "visual.patch_embedding.weight": sd["vision_model.embeddings.patch_embedding.weight"],
        "visual.cls_embedding": sd["vision_model.embeddings.class_embedding"].view(1, 1, -1),
        "visual.pos_embedding": sd["vision_model.embeddings.position_embedding.weight"].unsqueeze(0),
        "visual.head": sd["visual_projection.weight"].t().contiguous(),
    }
    for ours, theirs in (("pre_norm", "pre_layrnorm"), ("post_norm", "post_layernorm")):
        for w in ("weight", "bias"):
            out[f"visual.{ours}.{w}"] = sd[f"vision_model.{theirs}.{w}"]
    i = 0
    while f"vision_model.encoder.layers.{i}.layer_norm1.weight" in sd:
        hf, wan = f"vision_model.encoder.layers.{i}.", f"visual.transformer.{i}."
        for w in ("weight", "bias"):
            out[wan + f"attn.to_qkv.{w}"] = torch.cat([sd[hf + f"self_attn.{n}_proj.{w}"] for n in "qkv"])
            for a, b in (
                ("norm1", "layer_norm1"),
                ("attn.proj", "self_attn.out_proj"),
                ("norm2", "layer_norm2"),
            ):
                out[wan + f"{a}.{w}"] = sd[hf + f"{b}.{w}"]
            for a, b in (("mlp.0", "mlp.fc1"), ("mlp.2", "mlp.fc2")):
                out[wan + f"{a}.{w}"] = sd[hf + f"{b}.{w}"]
        i += 1
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def _hf_sd(hf):
    return {k: v.detach().clone().contiguous() for k, v in hf.state_dict().items()}


# ------------------------------------------------------------------------------------------------
# parity


def test_parity_with_transformers(tmp_path):
    hf = _hf_model()
    save_file(_hf_sd(hf), tmp_path / "clip_vision_h.safetensors")
    ours = load_clip_vision(tmp_path / "clip_vision_h.safetensors", dtype=torch.float32, num_heads=HEADS)
    assert (
        isinstance(ours, CLIPVisionTower) and ours.cfg.image_size == IMAGE and ours.cfg.num_layers == LAYERS
    )
    pixels = _pixels()
    ref, ref_embeds = _hf_ref(hf, pixels)
    with torch.no_grad():
        out = ours.encode(pixels)
        embeds = ours.image_embeds(pixels)
    err = max_rel_err(out, ref)
    print(f"CLIP vision vs transformers hidden_states[-2]: max rel err {err:.2e}")
    assert out.shape == (2, 10, DIM) and err <= TOL
    assert max_rel_err(embeds, ref_embeds) <= TOL


def test_parity_with_official_wan_visual_tower(tmp_path):
    clip = _official_clip_module()
    vt = clip.VisionTransformer(
        image_size=IMAGE,
        patch_size=PATCH,
        dim=DIM,
        mlp_ratio=4,
        out_dim=PROJ,
        num_heads=HEADS,
        num_layers=LAYERS,
        pool_type="token",
        pre_norm=True,
        post_norm=False,
        activation="gelu",
    ).eval()
    randomize_(vt, 4, std=0.1)
    with torch.no_grad():
        for block in vt.transformer:
            block.attn.to_qkv.weight[:DIM].mul_(8)  # sharp attention (q rows come first)
    sd = {f"visual.{k}": v for k, v in vt.state_dict().items()}
    sd["log_scale"] = torch.tensor(2.6)
    sd["textual.token_embedding.weight"] = torch.zeros(10, 8)  # the text tower is ignored
    sd["textual.blocks.0.ffn.0.weight"] = torch.zeros(8, 8)
    torch.save(sd, tmp_path / "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth")
    ours = load_clip_vision(
        tmp_path / "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth",
        dtype=torch.float32,
        num_heads=HEADS,
    )
    pixels = _pixels(seed=2)
    with torch.no_grad():
        ref = vt(pixels, use_31_block=True)
        out = ours.encode(pixels)
    err = max_rel_err(out, ref)
    print(f"CLIP vision vs official wan VisionTransformer(use_31_block): max rel err {err:.2e}")
    assert err <= TOL


def test_official_layout_built_from_transformers_weights(tmp_path):
    """The official key mapping, proved without the official file: transformers weights rewritten to
    the Wan layout by an independent inverse mapping load strictly into the official class too."""
    hf = _hf_model(6)
    wan_sd = _hf_to_official(_hf_sd(hf))
    torch.save(wan_sd, tmp_path / "clip_official.pth")
    ours = load_clip_vision(tmp_path / "clip_official.pth", dtype=torch.float32, num_heads=HEADS)
    vt = (
        _official_clip_module()
        .VisionTransformer(
            image_size=IMAGE,
            patch_size=PATCH,
            dim=DIM,
            out_dim=PROJ,
            num_heads=HEADS,
            num_layers=LAYERS,
            activation="gelu",
        )
        .eval()
    )
    vt.load_state_dict({k[len("visual.") :]: v for k, v in wan_sd.items()}, strict=True)
    pixels = _pixels(seed=3)
    ref, ref_embeds = _hf_ref(hf, pixels)
    with torch.no_grad():
        err_ours = max_rel_err(ours.encode(pixels), ref)
        err_official = max_rel_err(vt(pixels, use_31_block=True), ref)
        err_embeds = max_rel_err(ours.image_embeds(pixels), ref_embeds)
    print(f"CLIP official-layout (from HF weights): ours {err_ours:.2e}, official class {err_official:.2e}")
    assert err_ours <= TOL and err_official <= TOL and err_embeds <= TOL


def test_other_transformers_and_open_clip_layouts(tmp_path):
    hf = _hf_model(8)
    sd = _hf_sd(hf)
    pixels = _pixels(seed=4)
    ref, _ = _hf_ref(hf, pixels)
    # TF 5 CLIPVisionModel layout (no vision_model. prefix, no projection) inside a full CLIPModel-like file
    bare = {k[len("vision_model.") :]: v for k, v in sd.items() if k.startswith("vision_model.")}
    bare["embeddings.position_ids"] = torch.arange(10)[None]
    bare["text_model.embeddings.token_embedding.weight"] = torch.zeros(5, 4)
    save_file(bare, tmp_path / "vision_only.safetensors")
    (tmp_path / "config.json").write_text('{"vision_config": {"hidden_size": 64, "num_attention_heads": 4}}')
    m = load_clip_vision(tmp_path / "vision_only.safetensors", dtype=torch.float32)  # heads from config.json
    assert m.projection is None and m.cfg.num_heads == HEADS
    with torch.no_grad():
        assert max_rel_err(m.encode(pixels), ref) <= TOL
    # open_clip layout (laion ViT-H-14 open_clip_pytorch_model.bin)
    oc = {
        "visual.conv1.weight": sd["vision_model.embeddings.patch_embedding.weight"],
        "visual.class_embedding": sd["vision_model.embeddings.class_embedding"],
        "visual.positional_embedding": sd["vision_model.embeddings.position_embedding.weight"],
        "visual.ln_pre.weight": sd["vision_model.pre_layrnorm.weight"],
        "visual.ln_pre.bias": sd["vision_model.pre_layrnorm.bias"],
        "visual.ln_post.weight": sd["vision_model.post_layernorm.weight"],
        "visual.ln_post.bias": sd["vision_model.post_layernorm.bias"],
        "visual.proj": sd["visual_projection.weight"].t().contiguous(),
    }
    for i in range(LAYERS):
        hfp, ocp = f"vision_model.encoder.layers.{i}.", f"visual.transformer.resblocks.{i}."
        oc[ocp + "attn.in_proj_weight"] = torch.cat([sd[hfp + f"self_attn.{n}_proj.weight"] for n in "qkv"])
        oc[ocp + "attn.in_proj_bias"] = torch.cat([sd[hfp + f"self_attn.{n}_proj.bias"] for n in "qkv"])
        for a, b in (
            ("ln_1", "layer_norm1"),
            ("attn.out_proj", "self_attn.out_proj"),
            ("ln_2", "layer_norm2"),
        ):
            for w in ("weight", "bias"):
                oc[ocp + f"{a}.{w}"] = sd[hfp + f"{b}.{w}"]
        for a, b in (("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")):
            for w in ("weight", "bias"):
                oc[ocp + f"{a}.{w}"] = sd[hfp + f"{b}.{w}"]
    oc["logit_scale"] = torch.tensor(1.0)
    torch.save(oc, tmp_path / "open_clip_pytorch_model.bin")
    m = load_clip_vision(tmp_path / "open_clip_pytorch_model.bin", dtype=torch.float32, num_heads=HEADS)
    with torch.no_grad():
        assert max_rel_err(m.encode(pixels), ref) <= TOL


def test_fp16_default_dtype(tmp_path):
    hf = _hf_model(9)
    save_file({k: v.half() for k, v in _hf_sd(hf).items()}, tmp_path / "clip_vision_h.safetensors")
    m = load_clip_vision(tmp_path / "clip_vision_h.safetensors", num_heads=HEADS)
    assert m.dtype == torch.float16
    with torch.no_grad():
        out = m.encode(_pixels(seed=5))
    assert out.dtype == torch.float16 and torch.isfinite(out).all()


# ------------------------------------------------------------------------------------------------
# real-size layouts (meta device)


class _MetaCheckpoint(Checkpoint):
    def __init__(self, shapes, dtype, path):
        self.path, self.metadata, self.source = Path(path), {}, ""
        self._shapes = dict(shapes)
        self._dtypes = dict.fromkeys(shapes, dtype)
        self._readers = dict.fromkeys(shapes)

    def get(self, key, dtype=None, device="cpu"):
        return torch.empty(self._shapes[key], dtype=dtype or self._dtypes[key], device="meta")


def _manifest():
    shapes = {}
    for line in open("tests/data/keys/clip_xlm_roberta_vit_h_14.txt"):
        if line.startswith("#") or not line.strip():
            continue
        k, s = line.rstrip("\n").split("\t")
        shapes[k] = tuple(int(x) for x in s.strip("[]").split(",") if x.strip())
    return shapes


def _official_to_hf_shapes(off):
    """Test-side rename of the official visual keys to ComfyUI's clip_vision_h (transformers) layout."""
    d = 1280
    out = {
        "vision_model.embeddings.class_embedding": (d,),
        "vision_model.embeddings.patch_embedding.weight": off["visual.patch_embedding.weight"],
        "vision_model.embeddings.position_embedding.weight": off["visual.pos_embedding"][1:],
        "visual_projection.weight": tuple(reversed(off["visual.head"])),
    }
    for ours, theirs in (("pre_norm", "pre_layrnorm"), ("post_norm", "post_layernorm")):
        for w in ("weight", "bias"):
            out[f"vision_model.{theirs}.{w}"] = off[f"visual.{ours}.{w}"]
    for i in range(32):
        p, q = f"visual.transformer.{i}.", f"vision_model.encoder.layers.{i}."
        for w in ("weight", "bias"):
            qkv = off[p + f"attn.to_qkv.{w}"]
            for n in "qkv":
                out[q + f"self_attn.{n}_proj.{w}"] = (qkv[0] // 3, *qkv[1:])
            for a, b in (
                ("norm1", "layer_norm1"),
                ("attn.proj", "self_attn.out_proj"),
                ("norm2", "layer_norm2"),
            ):
                out[q + f"{b}.{w}"] = off[p + f"{a}.{w}"]
            for a, b in (("mlp.0", "mlp.fc1"), ("mlp.2", "mlp.fc2")):
                out[q + f"{b}.{w}"] = off[p + f"{a}.{w}"]
    return out


@pytest.mark.parametrize("fmt", ["official", "comfy_clip_vision_h"])
def test_real_layouts_map_with_right_shapes(fmt):
    off = _manifest()
    assert len(off) == 784
    shapes = off if fmt == "official" else _official_to_hf_shapes(off)
    ck = _MetaCheckpoint(shapes, torch.float16, f"{fmt}.safetensors")
    plan, layout = clip_vision_plan(ck.keys())
    assert layout == ("official" if fmt == "official" else "transformers")
    assert clip_vision_config(ck, plan) == CLIP_VISION_PRESETS["vit-h-14"]  # 16 heads from the width
    model = load_clip_vision(ck, device="meta")
    assert model.cfg.num_positions == 257
    n = sum(p.numel() for p in model.parameters())
    visual = sum(
        torch.Size(s).numel() if s else 1 for k, s in off.items() if k.startswith("visual.")
    )  # the official visual tower's parameter count
    assert n == visual
    assert model.blocks[31].qkv.weight.shape == (3840, 1280)
    x = torch.empty(1, 3, 224, 224, device="meta", dtype=torch.float16)
    assert model.encode(x).shape == (1, 257, 1280)


# ------------------------------------------------------------------------------------------------
# preprocessing


def test_squash_preprocess_as_official_clip_model_visual():
    """Run the official ``CLIPModel.visual`` (resize + [-1,1] -> [0,1] + normalize, then
    ``visual(..., use_31_block=True)``) on a stand-in object and compare the pixels it feeds the tower."""
    clip = _official_clip_module()
    seen = {}

    def tower(x, use_31_block):
        seen["x"], seen["use_31_block"] = x.clone(), use_31_block
        return x

    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)  # official _clip mean/std
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    fake = types.SimpleNamespace(
        model=types.SimpleNamespace(image_size=224, visual=tower),
        transforms=types.SimpleNamespace(transforms=[lambda x: (x - mean) / std]),
        dtype=torch.float32,
    )
    frames = (
        torch.rand(2, 3, 1, 90, 160, generator=torch.Generator().manual_seed(0)) * 2 - 1
    )  # [B, C, F, H, W]
    with pytest.warns(Warning):  # torch.cuda.amp.autocast on CPU
        clip.CLIPModel.visual(fake, frames.clone())
    ours = clip_preprocess(frames[:, :, 0], mode="squash")
    assert seen["use_31_block"] is True
    assert ours.shape == (2, 3, 224, 224) and max_rel_err(ours, seen["x"]) <= 1e-5
    # same from [0, 1] input
    assert max_rel_err(clip_preprocess(frames[:, :, 0] * 0.5 + 0.5, value_range=(0, 1)), seen["x"]) <= 1e-5


def test_center_crop_preprocess_as_comfyui():
    # a 2:1 image whose central square is one color and whose sides are another
    img = torch.zeros(1, 3, 300, 600)
    img[:, :, :, 150:450] = torch.tensor([0.2, 0.6, 0.8]).view(1, 3, 1, 1)
    out = clip_preprocess(img, mode="center_crop", value_range=(0, 1))
    assert out.shape == (1, 3, 224, 224)
    want = (
        torch.round(torch.tensor([0.2, 0.6, 0.8]) * 255) / 255
        - torch.tensor([0.48145466, 0.4578275, 0.40821073])
    ) / torch.tensor([0.26862954, 0.26130258, 0.27577711])
    inner = out[0, :, 4:-4, 4:-4]  # away from the antialiased edges of the cropped square
    assert torch.allclose(inner, want.view(3, 1, 1).expand_as(inner), atol=1e-5)
    # squash keeps the dark sides, crop does not
    squashed = clip_preprocess(img, mode="squash", value_range=(0, 1))
    assert squashed[0, :, :, :20].mean() < out[0, :, :, :20].mean() - 1
    # an image already 224x224 is only quantized and normalized
    x = torch.rand(1, 3, 224, 224)
    expect = clip_preprocess(torch.round(x * 255) / 255, mode="center_crop", value_range=(0, 1))
    assert torch.allclose(clip_preprocess(x, mode="center_crop", value_range=(0, 1)), expect, atol=1e-6)
    bilinear = F.interpolate(img, size=(224, 224), mode="bilinear")
    assert not torch.allclose(clip_preprocess(img, mode="center_crop", value_range=(0, 1)), bilinear)


def test_preprocess_and_encode_errors(tmp_path):
    with pytest.raises(ValueError, match="mode must be"):
        clip_preprocess(torch.zeros(1, 3, 8, 8), mode="fit")
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        clip_preprocess(torch.zeros(1, 8, 8, 3))
    hf = _hf_model()
    save_file(_hf_sd(hf), tmp_path / "c.safetensors")
    m = load_clip_vision(tmp_path / "c.safetensors", num_heads=HEADS)
    with pytest.raises(ValueError, match="clip_preprocess"):
        m.encode(torch.zeros(1, 3, 224, 224))  # tiny model expects 42x42


def test_wrong_files_are_clear_errors(tmp_path):
    save_file(
        {
            "encoder.block.0.layer.1.DenseReluDense.wi_1.weight": torch.zeros(4, 4),
            "shared.weight": torch.zeros(4, 4),
        },
        tmp_path / "umt5_xxl_fp16.safetensors",
    )
    with pytest.raises(CheckpointError, match=r"I2V Control Encode.*not a CLIP vision encoder.*UMT5"):
        load_clip_vision(tmp_path / "umt5_xxl_fp16.safetensors")
    sd = _hf_sd(_hf_model())
    del sd["vision_model.encoder.layers.2.self_attn.k_proj.bias"]
    save_file(sd, tmp_path / "cut.safetensors")
    with pytest.raises(CheckpointError, match="k_proj.bias"):
        load_clip_vision(tmp_path / "cut.safetensors", num_heads=HEADS)
    sd = _hf_sd(_hf_model())
    save_file(sd, tmp_path / "odd.safetensors")
    with pytest.raises(CheckpointError, match="num_heads"):
        load_clip_vision(tmp_path / "odd.safetensors")  # width 64 is not standard and no config.json
