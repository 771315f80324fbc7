"""Files -> pipeline -> video, for T2V (Self-Forcing, AR), I2V (Wan2.1 I2V 14B layout, CLIP + mask + y)
and TI2V (Wan2.2 5B layout, first latent stamped): tiny random models saved in the real formats."""

import pytest
import torch
from official_ref import max_rel_err
from tiny_models import make_tiny_models

from wan_core.rollout.conditioning import ConcatYStream, i2v_mask
from wan_core.rollout.loading import build_pipeline, encode_text, resolve_files
from wan_core.rollout.presets import get_preset
from wan_core.rollout.schedulers import EulerSchedule
from wan_core.rollout.video_io import open_video_writer


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return d, make_tiny_models(d)


def _image(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, h, w, generator=g) * 2 - 1


def _decode_count(path):
    av = pytest.importorskip("av")
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return len(frames), frames[0].shape


def _write(pipe, path, fps=16, num_frames=None):
    n = 0
    with open_video_writer(path, fps) as w:
        for r in pipe.stream():
            f = r.frames if num_frames is None else r.frames[:, :, : num_frames - n]
            w.write(f)
            n += f.shape[2]
    return n


@pytest.mark.parametrize("decoder", ["vae", "taehv"])
def test_t2v_self_forcing_files_to_mp4(models, tmp_path, decoder):
    d, info = models
    preset = get_preset("self-forcing-1.3b")
    files = resolve_files(preset, d, decoder=decoder)
    emb = encode_text(files["text_encoder"], ["a red fox running through snow"])
    pipe = build_pipeline(preset, files, decoder=decoder)
    pipe.initialize_cache(emb, height=32, width=48, num_frames=33, seed=1)
    assert pipe.num_chunks == 3  # 33 frames -> 9 latent frames -> 3 chunks of 3
    n = _write(pipe, tmp_path / "t2v.mp4")
    assert n == 33
    assert _decode_count(tmp_path / "t2v.mp4") == (33, (32, 48, 3))


def test_t2v_with_image_mask_inject_keeps_the_image_latent(models):
    d, _ = models
    preset = get_preset("self-forcing-1.3b")
    files = resolve_files(preset, d)
    emb = encode_text(files["text_encoder"], ["a cat"])
    pipe = build_pipeline(preset, files, decoder="none")
    img = _image(32, 48)
    pipe.initialize_cache(emb, img, height=32, width=48, num_frames=17, seed=0)
    chunks = [r.latents for r in pipe.stream()]
    z = pipe.vae.encode_chunk(img[:, :, None], pipe.vae.new_encode_cache())
    assert torch.equal(chunks[0][:, :, :1], z)
    pipe.initialize_cache(emb, None, height=32, width=48, num_frames=17, seed=0)
    plain = [r.latents for r in pipe.stream()]
    assert max_rel_err(plain[0][:, :, 1:], chunks[0][:, :, 1:]) > 1e-3  # the image steers the rest


def test_i2v_wan21_files_to_webp(models, tmp_path):
    from PIL import Image

    d, _ = models
    preset = get_preset("wan2.1-i2v-14b-480p").with_overrides(euler=EulerSchedule(num_steps=3, shift=3.0))
    files = resolve_files(preset, d)
    assert set(files) == {"dit", "text_encoder", "vae", "clip_vision"}
    embs = encode_text(files["text_encoder"], ["a boat on a lake", "blurry"])
    pipe = build_pipeline(preset, files)
    calls = []
    pipe.progress = lambda done, total, chunk: calls.append((done, total))
    img = _image(32, 48, seed=3)
    pipe.initialize_cache(
        embs[0][None], img, height=32, width=48, num_frames=9, seed=0, negative_prompt=embs[1][None]
    )
    assert pipe.state.image.clip_fea.shape == (1, 5, 768)  # tiny CLIP: 2x2 patches + class token
    n = _write(pipe, tmp_path / "i2v.webp")
    assert n == 9 and calls[-1] == (3, 3)
    with Image.open(tmp_path / "i2v.webp") as im:
        assert im.size == (48, 32) and im.n_frames >= 2
    # the image matters
    pipe.initialize_cache(
        embs[0][None], img, height=32, width=48, num_frames=9, seed=0, negative_prompt=embs[1][None]
    )
    a = pipe.generate(0).latents
    pipe.initialize_cache(
        embs[0][None], -img, height=32, width=48, num_frames=9, seed=0, negative_prompt=embs[1][None]
    )
    assert max_rel_err(pipe.generate(0).latents, a) > 1e-3
    with pytest.raises(ValueError, match="image-to-video"):
        pipe.initialize_cache(embs[0][None], None, height=32, width=48, num_frames=9)


def test_concat_y_stream_equals_whole_video_encode_with_mask(models):
    """y built chunk by chunk == [official-layout 4-channel mask ; VAE(image, zeros...)] of the whole video."""
    from wan_core.vae import load_vae

    d, _ = models
    vae = load_vae(d / "vae" / "wan_2.1_vae.safetensors", dtype=torch.float32)
    img = _image(32, 48, seed=4)
    stream = ConcatYStream(vae, img)
    y = torch.cat([stream.take(0, 3), stream.take(3, 3), stream.take(6, 1)], dim=2)  # 7 latent frames
    video = torch.cat([img[:, :, None], torch.zeros(1, 3, 24, 32, 48)], dim=2)  # 25 frames
    lat = vae.encode(video)
    want = torch.cat([i2v_mask(7, 4, 6)[None], lat], dim=1)
    assert y.shape == (1, 20, 7, 4, 6)
    assert max_rel_err(y, want) < 1e-5
    assert i2v_mask(3, 1, 1)[:, :, 0, 0].tolist() == [[1, 0, 0]] * 4


def test_ti2v_files_to_mp4_first_latent_is_the_image(models, tmp_path):
    d, _ = models
    preset = get_preset("wan2.2-ti2v-5b").with_overrides(euler=EulerSchedule(num_steps=3, shift=5.0))
    files = resolve_files(preset, d, decoder="taehv")
    embs = encode_text(files["text_encoder"], ["a sunny beach", ""])
    pipe = build_pipeline(preset, files, decoder="taehv")
    img = _image(64, 64, seed=5)
    pipe.initialize_cache(
        embs[0][None], img, height=64, width=64, num_frames=9, seed=2, negative_prompt=embs[1][None]
    )
    n = _write(pipe, tmp_path / "ti2v.mp4", fps=24)
    assert n == 9
    assert _decode_count(tmp_path / "ti2v.mp4") == (9, (64, 64, 3))
    pipe.initialize_cache(
        embs[0][None], img, height=64, width=64, num_frames=9, seed=2, negative_prompt=embs[1][None]
    )
    lat = pipe.generate(0).latents
    z = pipe.vae.encode_chunk(img[:, :, None], pipe.vae.new_encode_cache())
    assert lat.shape == (1, 48, 3, 4, 4) and torch.equal(lat[:, :, :1], z)


def test_dual_expert_switches_by_timestep_and_uses_each_scale():
    from official_ref import randomize_

    from wan_core.dit import DualExpertDiT, WanDiT, WanDiTConfig
    from wan_core.rollout.pipeline import StreamingPipeline

    cfg = WanDiTConfig(dim=32, ffn_dim=32, num_heads=2, num_layers=1, text_dim=8)
    high, low = (randomize_(WanDiT(cfg).eval(), s, std=0.2) for s in (1, 2))
    seen = []
    for name, m in (("high", high), ("low", low)):
        m.register_forward_pre_hook(
            lambda mod, args, name=name: seen.append((name, float(args[1].reshape(-1)[0])))
        )
    p = get_preset("wan2.2-t2v-a14b").with_overrides(euler=EulerSchedule(num_steps=6, shift=12.0))
    pipe = StreamingPipeline(DualExpertDiT(high, low, 0.875), p)
    pipe.initialize_cache(
        torch.randn(1, 5, 8), height=32, width=48, num_frames=5, negative_prompt=torch.randn(1, 3, 8)
    )
    pipe.generate(0)
    assert len(seen) == 12  # 6 steps x (cond + uncond)
    for name, t in seen:
        assert (name == "high") == (t >= 875.0)
    assert {n for n, _ in seen} == {"high", "low"}


@pytest.mark.parametrize("kind", ["vae", "taehv"])
def test_streamed_frames_equal_whole_video_decode(models, kind):
    """Plain loaded decoder modules plug in; chunk-by-chunk frames == decoding all latents at once."""
    from wan_core.dit.loader import load_dit
    from wan_core.rollout.pipeline import StreamingPipeline
    from wan_core.vae import load_taehv, load_vae

    d, _ = models
    dec = (
        load_vae(d / "vae" / "wan_2.1_vae.safetensors", dtype=torch.float32)
        if kind == "vae"
        else load_taehv(d / "vae_approx" / "taew2_1.pth", dtype=torch.float32)
    )
    dit = load_dit(d / "diffusion_models" / "self_forcing_dmd.pt", dtype=torch.float32)
    pipe = StreamingPipeline(dit, get_preset("self-forcing-1.3b"), decoder=dec)
    pipe.initialize_cache(torch.randn(1, 6, 32), height=32, width=48, num_frames=25, seed=0)
    chunks = list(pipe.stream())
    frames = torch.cat([r.frames for r in chunks], dim=2)
    whole = dec.decode(torch.cat([r.latents for r in chunks], dim=2))
    assert frames.shape == (1, 3, 25, 32, 48)
    assert max_rel_err(frames, whole) < 1e-4
