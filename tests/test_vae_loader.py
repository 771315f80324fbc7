"""Loading Wan VAE 2.1 / 2.2 and TAEHV: official / ComfyUI / diffusers files, real key layouts (meta),
TGrow patching, raw-latent detection, wrong-kind errors."""

import json
from pathlib import Path

import pytest
import torch
from official_ref import max_rel_err, official, randomize_
from safetensors.torch import save_file

from wan_core.checkpoint import CheckpointError, detect_kind
from wan_core.vae import latent_norm
from wan_core.vae.loader import diffusers_vae_key, load_decoder, load_taehv, load_vae
from wan_core.vae.taehv import TAEHV, TAEHVConfig
from wan_core.vae.wan21 import WanVAE21
from wan_core.vae.wan22 import WanVAE22

KEYS = Path(__file__).parent / "data" / "keys"


class ShapeCheckpoint:
    """A checkpoint that only knows key -> shape (real layouts); tensors come back on ``meta``."""

    def __init__(self, shapes, path="manifest"):
        self.shapes, self.path = dict(shapes), path

    def keys(self):
        return list(self.shapes)

    def shape(self, k):
        return self.shapes[k]

    def __contains__(self, k):
        return k in self.shapes

    def get(self, k, dtype=None, device="meta"):
        return torch.empty(self.shapes[k], dtype=dtype or torch.float32, device="meta")

    @property
    def kind(self):
        return detect_kind(self.shapes)


def manifest(name):
    shapes = {}
    for line in (KEYS / f"{name}.txt").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, shape = line.split("\t")
        shapes[key] = tuple(json.loads(shape))
    return shapes


def _n_params(model):
    return sum(p.numel() for p in model.state_dict().values())


# ---------------------------------------------------------------------------------------------- real layouts


@pytest.mark.parametrize(
    "name, cls, expect",
    [
        ("wan21_vae", WanVAE21, dict(dim=96, z_dim=16)),
        ("wan22_vae", WanVAE22, dict(dim=160, dec_dim=256, z_dim=48, patch_size=2)),
    ],
)
def test_real_vae_layout_official_and_diffusers_naming(name, cls, expect):
    shapes = manifest(name)
    model = load_vae(ShapeCheckpoint(shapes), device="meta")
    assert type(model) is cls
    for k, v in expect.items():
        assert getattr(model.config, k) == v
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes
    # diffusers naming: the real-size diffusers AutoencoderKLWan (meta) loads into the same module
    from diffusers import AutoencoderKLWan

    kw = dict(base_dim=96, z_dim=16)
    if name == "wan22_vae":
        kw = dict(
            base_dim=160, decoder_base_dim=256, z_dim=48, is_residual=True, in_channels=12, out_channels=12,
            patch_size=2, scale_factor_spatial=16,
        )  # fmt: skip
    with torch.device("meta"):
        ref = AutoencoderKLWan(**kw)
    d_shapes = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    version = "2.2" if name == "wan22_vae" else "2.1"
    assert {diffusers_vae_key(k, version): v for k, v in shapes.items()} == d_shapes
    model_d = load_decoder(ShapeCheckpoint(d_shapes), device="meta")
    assert type(model_d) is cls and model_d.config == model.config
    if version == "2.1":  # diffusers' own single-file converter agrees with our key map
        from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

        conv = convert_wan_vae_to_diffusers({k: torch.empty(v, device="meta") for k, v in shapes.items()})
        assert {k: tuple(v.shape) for k, v in conv.items()} == d_shapes


@pytest.mark.parametrize(
    "name, channels, patch, variant",
    [
        ("taehv_taew2_1", 16, 1, "base"),
        ("taehv_taew2_2", 48, 2, "base"),
        ("taehv_taew2_2_super", 48, 2, "super"),
    ],
)
def test_real_taehv_layouts(name, channels, patch, variant):
    shapes = manifest(name)
    model = load_taehv(ShapeCheckpoint(shapes, path=f"{name[6:]}.pth"), device="meta")
    cfg = model.config
    assert (cfg.latent_channels, cfg.patch_size, cfg.variant, cfg.raw_latents) == (
        channels,
        patch,
        variant,
        False,
    )
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes
    assert model.t_upscale == 4 and model.frames_to_trim == 3 and model.decoder_spatial_scale == 8 * patch
    light = load_decoder(ShapeCheckpoint(shapes, path=f"light{name[6:]}.safetensors"), device="meta")
    assert isinstance(light, TAEHV) and light.config.raw_latents


# ---------------------------------------------------------------------------------------------- files


@pytest.fixture(scope="module")
def official21():
    ref = official("vae2_1").WanVAE_(
        dim=8,
        z_dim=16,
        dim_mult=[1, 2, 4, 4],
        num_res_blocks=2,
        attn_scales=[],
        temperal_downsample=[False, True, True],
    )
    return randomize_(ref, 5, std=0.2).eval()


def test_official_pth_and_comfy_safetensors(tmp_path, official21):
    sd = official21.state_dict()
    torch.save(sd, tmp_path / "Wan2.1_VAE.pth")
    save_file({k: v.contiguous() for k, v in sd.items()}, tmp_path / "wan_2.1_vae.safetensors")
    save_file(
        {"first_stage_model." + k: v.contiguous() for k, v in sd.items()}, tmp_path / "prefixed.safetensors"
    )
    z = torch.randn(1, 16, 2, 2, 2)
    scale = [torch.tensor(latent_norm.WAN21_MEAN), 1 / torch.tensor(latent_norm.WAN21_STD)]
    ref = official21.decode(z, scale)
    for name in ("Wan2.1_VAE.pth", "wan_2.1_vae.safetensors", "prefixed.safetensors"):
        vae = load_vae(tmp_path / name)
        assert isinstance(vae, WanVAE21) and not vae.training
        assert max_rel_err(vae.decode(z, clamp=False), ref) <= 1e-4
    bf16 = load_vae(tmp_path / "wan_2.1_vae.safetensors", dtype=torch.bfloat16)
    assert bf16.dtype == torch.bfloat16 and bf16.decode(z).dtype == torch.bfloat16


@pytest.mark.parametrize("version", ["2.1", "2.2"])
def test_diffusers_autoencoderklwan_numerically(tmp_path, version):
    from diffusers import AutoencoderKLWan

    if version == "2.1":
        kw = dict(base_dim=8, z_dim=16)
    else:
        kw = dict(
            base_dim=8, decoder_base_dim=8, z_dim=48, is_residual=True, in_channels=12, out_channels=12,
            patch_size=2, scale_factor_spatial=16,
        )  # fmt: skip
    ref = randomize_(AutoencoderKLWan(**kw), 7, std=0.2).eval()
    save_file(
        {k: v.contiguous() for k, v in ref.state_dict().items()},
        tmp_path / "diffusion_pytorch_model.safetensors",
    )
    vae = load_vae(tmp_path / "diffusion_pytorch_model.safetensors")
    assert isinstance(vae, WanVAE22 if version == "2.2" else WanVAE21)
    s, z_dim = vae.spatial_scale, kw["z_dim"]
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 5, s, 2 * s, generator=g) * 2 - 1
    z_raw = torch.randn(1, z_dim, 3, 1, 2, generator=g)
    with torch.no_grad():
        mu_ref = ref.encode(x).latent_dist.mean  # diffusers returns raw latents
        x_ref = ref.decode(z_raw).sample  # clamped to [-1, 1]
    enc_err = max_rel_err(vae.encode(x, normalized=False), mu_ref)
    dec_err = max_rel_err(vae.decode(z_raw, normalized=False), x_ref)
    print(f"diffusers {version}: encode {enc_err:.2e}, decode {dec_err:.2e}")
    assert enc_err <= 1e-4 and dec_err <= 1e-4


def test_taehv_tgrow_patch_and_lighttae_name(tmp_path):
    tiny = dict(encoder_width=6, decoder_widths=(12, 8, 4, 4))
    src = randomize_(TAEHV(TAEHVConfig(**tiny)), 1, std=0.2)
    sd = {k: v.clone() for k, v in src.state_dict().items()}
    # decoder.7 trained with temporal stride 2: twice the output channels; the last ones are used
    wide = torch.randn(24, 12, 1, 1)
    sd["decoder.7.conv.weight"] = wide
    torch.save(sd, tmp_path / "taew2_1.pth")
    save_file(sd, tmp_path / "lighttaew2_1.safetensors")
    tae = load_taehv(tmp_path / "taew2_1.pth")
    assert torch.equal(tae.decoder[7].conv.weight, wide[-12:])
    assert not tae.config.raw_latents
    light = load_taehv(tmp_path / "lighttaew2_1.safetensors", dtype=torch.float16)
    assert light.config.raw_latents and light.dtype == torch.float16
    assert load_taehv(tmp_path / "lighttaew2_1.safetensors", raw_latents=False).config.raw_latents is False


# ---------------------------------------------------------------------------------------------- wrong files


def test_wrong_kind_errors(tmp_path):
    dit = {"head.modulation": torch.zeros(1, 2, 8), "patch_embedding.weight": torch.zeros(8, 16, 1, 2, 2)}
    save_file(dit, tmp_path / "wan2.1_t2v_1.3B.safetensors")
    umt5 = {
        "encoder.block.0.layer.1.DenseReluDense.wi_1.weight": torch.zeros(4, 4),
        "shared.weight": torch.zeros(4, 4),
    }
    save_file(umt5, tmp_path / "umt5.safetensors")
    taehv = {"decoder.22.bias": torch.zeros(3), "decoder.22.weight": torch.zeros(3, 4, 3, 3)}
    save_file(taehv, tmp_path / "taew2_1.safetensors")
    vae = {"decoder.middle.0.residual.0.gamma": torch.zeros(4, 1, 1, 1)}
    save_file(vae, tmp_path / "vae.safetensors")
    with pytest.raises(CheckpointError, match="detected a Wan DiT"):
        load_vae(tmp_path / "wan2.1_t2v_1.3B.safetensors")
    with pytest.raises(CheckpointError, match="UMT5"):
        load_vae(tmp_path / "umt5.safetensors")
    with pytest.raises(CheckpointError, match="detected a TAEHV"):
        load_vae(tmp_path / "taew2_1.safetensors")
    with pytest.raises(CheckpointError, match="detected a Wan VAE"):
        load_taehv(tmp_path / "vae.safetensors")
    with pytest.raises(CheckpointError, match="incomplete"):
        load_vae(tmp_path / "vae.safetensors")
    with pytest.raises(CheckpointError, match="Wan DiT"):
        load_taehv(tmp_path / "wan2.1_t2v_1.3B.safetensors")
    with pytest.raises(CheckpointError, match="Load Wan VAE / TAEHV.*UMT5"):
        load_decoder(tmp_path / "umt5.safetensors")


def test_wrong_taehv_family_and_shape_mismatch(tmp_path):
    shapes = manifest("taehv_taew2_1")
    shapes["decoder.1.weight"] = (256, 32, 3, 3)  # TAEHV 1.5 (HunyuanVideo 1.5) has 32 channels
    with pytest.raises(CheckpointError, match="HunyuanVideo 1.5"):
        load_taehv(ShapeCheckpoint(shapes, path="taehv1_5.pth"), device="meta")
    shapes = manifest("wan21_vae")
    shapes["decoder.middle.0.residual.2.weight"] = (384, 384, 3, 3, 1)
    with pytest.raises(CheckpointError, match="decoder.middle.0.residual.2.weight"):
        load_vae(ShapeCheckpoint(shapes), device="meta")
