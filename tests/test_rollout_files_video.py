"""Presets, model-file lookup / download, and video writing."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hub_stand_in import hub_module

from wan_core.rollout import model_files, video_io
from wan_core.rollout.model_files import MissingModelFileError, ensure_model_file
from wan_core.rollout.presets import PRESETS, get_preset


def test_presets_carry_the_published_settings():
    sf = get_preset("self-forcing-1.3b")
    assert sf.schedule.timesteps == pytest.approx([1000.0, 937.5, 2500 / 3, 625.0])
    assert sf.frames_per_chunk == 3 and sf.schedule.shift == 5.0
    assert sf.dit.repo == "gdhe17/Self-Forcing" and sf.dit.repo_path == "checkpoints/self_forcing_dmd.pt"
    cv = get_preset("causvid-1.3b")
    assert cv.schedule.timesteps == [1000.0, 757.0, 522.0] and cv.schedule.shift == 8.0
    ll = get_preset("longlive-1.3b")
    assert (ll.window_frames + ll.sink_frames, ll.sink_frames) == (12, 3) and ll.lora is not None
    assert get_preset("causal-forcing-framewise-1.3b").frames_per_chunk == 1
    assert get_preset("krea-realtime-14b").schedule.timesteps == pytest.approx(
        [1000.0, 937.5, 833.333, 625.0, 0.0], abs=1e-3
    )
    a14 = get_preset("wan2.2-t2v-a14b")
    assert (
        a14.boundary == 0.875
        and a14.euler.shift == 12.0
        and (a14.guidance_scale, a14.guidance_scale_high) == (3.0, 4.0)
    )
    assert get_preset("wan2.2-i2v-a14b").boundary == 0.9
    ti = get_preset("wan2.2-ti2v-5b")
    assert ti.latent_channels == 48 and ti.vae_stride == (4, 16, 16) and ti.image_stamp == "clean_t0"
    for p in PRESETS.values():
        folders = {f.folder for f in p.files("vae")}
        assert {"diffusion_models", "text_encoders", "vae"} <= folders
    assert get_preset("wan2.1-i2v-14b-480p").clip_vision.name == "clip_vision_h.safetensors"
    with pytest.raises(ValueError, match="known presets"):
        get_preset("nope")


def test_missing_file_names_file_folder_and_command(tmp_path):
    spec = get_preset("self-forcing-1.3b").dit
    with pytest.raises(MissingModelFileError) as e:
        ensure_model_file(tmp_path, spec, preset="self-forcing-1.3b")
    msg = str(e.value)
    assert "self_forcing_dmd.pt" in msg and str(tmp_path / "diffusion_models") in msg
    assert "--download" in msg and "gdhe17/Self-Forcing checkpoints/self_forcing_dmd.pt" in msg


def test_alternative_name_is_found(tmp_path):
    spec = get_preset("self-forcing-1.3b").text_encoder
    (tmp_path / "text_encoders").mkdir()
    (tmp_path / "text_encoders" / "umt5_xxl_fp16.safetensors").write_bytes(b"x")
    assert ensure_model_file(tmp_path, spec).name == "umt5_xxl_fp16.safetensors"


def test_download_moves_file_into_its_folder(tmp_path, monkeypatch):
    calls = []

    def fake_hf_hub_download(repo_id, filename, local_dir):
        calls.append((repo_id, filename))
        p = Path(local_dir) / filename
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"weights")
        return str(p)

    monkeypatch.setitem(
        sys.modules, "huggingface_hub", hub_module(fake_hf_hub_download, lambda repo, path: b"weights")
    )
    spec = get_preset("self-forcing-1.3b").dit
    got = ensure_model_file(tmp_path, spec, download=True, log=lambda *_: None)
    assert got == tmp_path / "diffusion_models" / "self_forcing_dmd.pt" and got.read_bytes() == b"weights"
    assert calls == [("gdhe17/Self-Forcing", "checkpoints/self_forcing_dmd.pt")]
    assert not (tmp_path / "diffusion_models" / ".download").exists()
    # present now: no second download
    ensure_model_file(tmp_path, spec, download=True)
    assert len(calls) == 1


def _frames(f=5, h=32, w=48):
    g = torch.Generator().manual_seed(0)
    return torch.rand(1, 3, f, h, w, generator=g) * 2 - 1


def test_mp4_written_in_chunks_decodes_to_right_count_and_size(tmp_path):
    av = pytest.importorskip("av")
    path = tmp_path / "v.mp4"
    with video_io.open_video_writer(path, fps=16) as w:
        w.write(_frames(1))
        w.write(_frames(4))
        w.write(_frames(4))
    with av.open(str(path)) as c:
        frames = [fr.to_ndarray(format="rgb24") for fr in c.decode(video=0)]
    assert len(frames) == 9 and frames[0].shape == (32, 48, 3)


def test_uint8_conversion_is_exact_at_the_ends():
    x = torch.tensor([-1.0, 0.0, 1.0, 2.0]).view(1, 1, 1, 1, 4).expand(1, 3, 1, 1, 4)
    u = video_io.to_uint8_frames(x)
    assert u.shape == (1, 1, 4, 3) and u[0, 0, :, 0].tolist() == [0, 128, 255, 255]


def test_webp_and_fallback_without_av(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setattr(video_io, "have_av", lambda: False)
    msgs = []
    w = video_io.open_video_writer(tmp_path / "v.mp4", fps=8, log=msgs.append)
    assert isinstance(w, video_io.WebpWriter) and "pip install av" in msgs[0]
    w.write(_frames(3))
    w.write(np.stack([np.full((32, 48, 3), 10, np.uint8), np.full((32, 48, 3), 200, np.uint8)]))
    w.close()
    with Image.open(tmp_path / "v.webp") as im:
        assert im.n_frames == 5 and im.size == (48, 32)
    with pytest.raises(ValueError, match="unsupported"):
        video_io.open_video_writer(tmp_path / "v.gif", fps=8)


def test_folder_validation():
    with pytest.raises(ValueError, match="unknown models sub-folder"):
        model_files.ModelFile("dit", "unet", "a", "r", "p")
