"""One streaming interface for every pixel decoder (Wan VAE 2.1, 2.2, TAEHV) and its device wrappers.

Each decoder kind, with tiny random weights, goes through the same calls chunk by chunk and gives its
whole-video decode (within the 1e-5 of ``test_vae_wan`` / ``test_taehv_stream``: the causal state
carries across chunks); the wrappers cast the latents / frames to the model's device and dtype and
equal the direct calls bit for bit; ``encode_image`` is the one CLIP preprocess + encode.
"""

import inspect
import warnings

import pytest
import torch
from official_ref import max_rel_err, randomize_

from wan_core.clip import CLIPVisionConfig, CLIPVisionTower, clip_preprocess, encode_image
from wan_core.vae import (
    EncoderOnDevice,
    OnDevice,
    as_rollout_decoder,
    rollout_decoder,
)
from wan_core.vae.taehv import TAEHV, TAEHVConfig
from wan_core.vae.tiling import TiledDecoder
from wan_core.vae.wan21 import WanVAE21, WanVAE21Config
from wan_core.vae.wan22 import WanVAE22, WanVAE22Config

KINDS = ["wan2.1", "wan2.2", "taew2_1", "taew2_2"]


def _build(kind: str):
    if kind == "wan2.1":
        return WanVAE21(WanVAE21Config(dim=8, z_dim=16))
    if kind == "wan2.2":
        return WanVAE22(WanVAE22Config(dim=8, dec_dim=8, z_dim=48))
    ch, patch = (16, 1) if kind == "taew2_1" else (48, 2)
    return TAEHV(
        TAEHVConfig(latent_channels=ch, patch_size=patch, encoder_width=6, decoder_widths=(12, 8, 4, 4))
    )


def _model(kind: str):
    return randomize_(_build(kind), seed=len(kind), std=0.2).eval()


def _on_meta(kind: str):
    with torch.device("meta"):
        return _build(kind).eval()


@pytest.fixture(scope="module", params=KINDS)
def decoder(request):
    return request.param, _model(request.param)


def _channels(model) -> int:
    return getattr(model, "z_dim", None) or model.latent_channels


def _latents(model, frames=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, _channels(model), frames, 2, 3, generator=g)


def _clamped_err(got: torch.Tensor, unclamped: torch.Tensor) -> float:
    """``got`` (clamped to [-1, 1]) against ``unclamped.clamp(-1, 1)``, relative to the unclamped range
    (the tolerance of the existing tests, which compare unclamped frames; clamping is 1-Lipschitz)."""
    return float((got - unclamped.clamp(-1, 1)).abs().max() / unclamped.abs().max())


def test_the_same_names_and_options_on_every_decoder(decoder):
    kind, model = decoder
    assert model.decoder_kind == ("taehv" if kind.startswith("tae") else "wan_vae")
    assert callable(model.new_decode_state)
    assert list(inspect.signature(model.stream_decoder).parameters) == [
        "latents_per_step", "clamp", "tile_size", "tile_overlap",
    ]  # fmt: skip
    params = list(inspect.signature(model.decode_chunk).parameters)
    assert params[0] == "latents" and {"latents_per_step", "clamp"} <= set(params[2:])


@pytest.mark.parametrize("chunk", [1, 3, 4])
@pytest.mark.parametrize("wrap", ["stream_decoder", "on_device", "rollout"])
def test_chunk_by_chunk_equals_whole_video(decoder, chunk, wrap):
    kind, model = decoder
    z = _latents(model)
    whole = model.decode(z, latents_per_step=None, clamp=False)  # [1, 3, 33, H, W]
    factory = {"on_device": OnDevice(model), "rollout": rollout_decoder(model)}.get(wrap)
    stream = model.stream_decoder() if factory is None else factory.stream_decoder()
    for _ in range(2):  # reset() starts a new video
        parts = [stream.decode_chunk(z[:, :, i : i + chunk]) for i in range(0, 9, chunk)]
        sizes = [z[:, :, i : i + chunk].shape[2] for i in range(0, 9, chunk)]
        assert [p.shape[2] for p in parts] == [1 + 4 * (sizes[0] - 1)] + [4 * n for n in sizes[1:]]
        got = torch.cat(parts, dim=2)
        assert got.shape == whole.shape and got.dtype == whole.dtype
        assert float(got.abs().max()) <= 1.0
        assert _clamped_err(got, whole) <= 1e-5
        stream.reset()


def test_latents_per_step_splits_a_chunk_into_passes(decoder):
    _, model = decoder
    z = _latents(model, frames=7, seed=1)
    one_pass = model.decode_chunk(z, model.new_decode_state(), clamp=False)
    by_two = model.decode_chunk(z, model.new_decode_state(), latents_per_step=2, clamp=False)
    assert by_two.shape == one_pass.shape and max_rel_err(by_two, one_pass) <= 1e-5
    tiled = model.stream_decoder(
        latents_per_step=2, tile_size=(2, 3), tile_overlap=1
    )  # one tile: the untiled decode
    assert isinstance(tiled, TiledDecoder)
    assert _clamped_err(tiled.decode_chunk(z), one_pass) <= 1e-5


def test_rollout_decoder_passes_as_before(decoder):
    """Bit for bit the old adapters: Wan VAE at most 4 latent frames per pass, TAEHV a chunk at once."""
    kind, model = decoder
    dec = rollout_decoder(model)
    assert dec.kind == model.decoder_kind
    z = _latents(model, frames=9, seed=2)  # more than 4 latent frames: the Wan VAE splits it
    stream, state = dec.stream_decoder(), model.new_decode_state()
    if kind.startswith("wan"):
        assert dec.stream_options == {"latents_per_step": 4}
        ref = model.decode_chunk(z, state, latents_per_step=4)
    else:
        assert dec.stream_options == {"latents_per_step": None}
        ref = model.decode_chunk(z, state)
    assert torch.equal(stream.decode_chunk(z), ref)


def test_on_device_casts_to_the_decoders_dtype_and_device(decoder):
    _, model = decoder
    half = _model(_kind_of(model)).to(torch.bfloat16)
    z = _latents(model, frames=3, seed=3)  # float32
    dec = OnDevice(half)
    assert (dec.device, dec.dtype) == (torch.device("cpu"), torch.bfloat16)
    frames = dec.stream_decoder().decode_chunk(z)
    assert frames.dtype == torch.bfloat16
    assert torch.equal(frames, half.decode_chunk(z.to(torch.bfloat16), half.new_decode_state()))
    # a dtype given explicitly wins over the model's; float64 latents are cast down, not decoded in float64
    assert OnDevice(half, dtype=torch.float32).dtype == torch.float32
    assert OnDevice(model).stream_decoder().decode_chunk(z.double()).dtype == torch.float32
    # the device: latents on the CPU are moved to the decoder's device (meta here, no GPU needed)
    out = OnDevice(_on_meta(_kind_of(model))).stream_decoder().decode_chunk(z)
    assert out.device.type == "meta" and out.shape == frames.shape


def _kind_of(model) -> str:
    if isinstance(model, TAEHV):
        return "taew2_1" if model.latent_channels == 16 else "taew2_2"
    return "wan2.1" if model.z_dim == 16 else "wan2.2"


def test_as_rollout_decoder_accepts_models_and_factories():
    vae, tae = _model("wan2.1"), _model("taew2_1")
    assert as_rollout_decoder(None) is None
    assert as_rollout_decoder(vae).kind == "wan_vae" and as_rollout_decoder(tae).kind == "taehv"
    factory = OnDevice(tae)
    assert as_rollout_decoder(factory) is factory
    with pytest.raises(TypeError, match="not a decoder"):
        as_rollout_decoder(object())


def test_old_decode_state_name_is_a_deprecated_alias():
    vae = _model("wan2.1")
    with pytest.warns(DeprecationWarning, match="new_decode_state"):
        old = vae.new_decode_cache()
    assert type(old) is type(vae.new_decode_state())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the interface itself never calls the old name
        rollout_decoder(vae).stream_decoder().decode_chunk(_latents(vae, 2))
        vae.stream_decoder(tile_size=2, tile_overlap=1).decode_chunk(_latents(vae, 2))


@pytest.mark.parametrize("kind", ["wan2.1", "wan2.2"])
def test_encoder_on_device(kind):
    vae = _model(kind).to(torch.bfloat16)
    s = vae.spatial_scale
    x = torch.rand(1, 3, 5, s, 2 * s, generator=torch.Generator().manual_seed(4)) * 2 - 1  # float32
    enc = EncoderOnDevice(vae)
    z = enc.encode_chunk(x, enc.new_encode_cache())
    assert z.dtype == torch.float32 and z.shape == (1, _channels(vae), 2, 1, 2)
    assert torch.equal(z, vae.encode_chunk(x.to(torch.bfloat16), vae.new_encode_cache()).float())
    on_meta = _on_meta(kind)
    out = EncoderOnDevice(on_meta).encode_chunk(x, on_meta.new_encode_cache())
    assert out.device.type == "meta" and out.dtype == torch.float32


def _tiny_clip(dtype=torch.float32):
    cfg = CLIPVisionConfig(image_size=28, patch_size=14, dim=32, num_heads=2, num_layers=3, mlp_dim=64)
    return randomize_(CLIPVisionTower(cfg), seed=7, std=0.1).to(dtype).eval()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_encode_image_is_the_official_squash_and_penultimate_tokens(dtype):
    clip = _tiny_clip(dtype)
    image = torch.rand(2, 3, 40, 56, generator=torch.Generator().manual_seed(5)) * 2 - 1
    feats = encode_image(clip, image)
    assert feats.shape == (2, 1 + (28 // 14) ** 2, 32) and feats.dtype == torch.float32
    # what the command line and the I2V Control Encode node each computed before (one copy now)
    with torch.no_grad():
        pixels = clip_preprocess(image.float(), mode="squash", size=28)
        ref = clip.encode(pixels.to(dtype)).float()
        by_blocks = clip.hidden_states(clip_preprocess(image, size=28).to(dtype), num_blocks=2).float()
    assert torch.equal(feats, ref) and torch.equal(feats, by_blocks)
