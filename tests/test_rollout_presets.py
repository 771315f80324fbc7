"""Every preset carries the published settings of its model (the table in ``presets.py``, FACTS.md
section 3): sampler, steps / shift / warp, chunking, attention window and sink, CFG and expert boundary,
the DiT file and its source. The table is built from two base presets with ``dataclasses.replace``;
this pins every value that a shared base could silently change."""

import pytest

from wan_core.rollout.presets import PRESETS, get_preset

# name: sampler, steps (few-step: timesteps; Euler: count), shift, warp, frames per chunk, window, sink
SAMPLING = {
    "self-forcing-1.3b": ("few_step", (1000, 750, 500, 250), 5.0, True, 3, 21, 0),
    "causvid-1.3b": ("few_step", (1000, 757, 522), 8.0, False, 3, 21, 0),
    "longlive-1.3b": ("few_step", (1000, 750, 500, 250), 5.0, True, 3, 9, 3),
    "rolling-forcing-1.3b": ("rolling_forcing", (1000, 800, 600, 400, 200), 5.0, True, 3, 21, 0),
    "causal-forcing-chunkwise-1.3b": ("few_step", (1000, 750, 500, 250), 5.0, True, 3, 21, 0),
    "causal-forcing-framewise-1.3b": ("few_step", (1000, 750, 500, 250), 5.0, True, 1, 21, 0),
    "krea-realtime-14b": ("few_step", (1000, 750, 500, 250), 5.0, True, 3, 6, 0),
    "causal-forcing-pp-2step-1.3b": ("few_step", (1000, 500), 5.0, True, 1, 21, 0),
    "causal-forcing-pp-1step-1.3b": ("few_step", (1000,), 5.0, True, 1, 21, 0),
    "reward-forcing-1.3b": ("few_step", (1000, 750, 500, 250), 5.0, True, 3, 6, 3),
    "longlive2-5b": ("unipc", (999, 937, 833, 624), 5.0, False, 8, 24, 8),
    "wan2.1-t2v-1.3b": ("euler_cfg", 50, 5.0, None, 0, None, 0),
    "wan2.1-t2v-14b": ("euler_cfg", 50, 5.0, None, 0, None, 0),
    "wan2.1-i2v-14b-480p": ("euler_cfg", 40, 3.0, None, 0, None, 0),
    "wan2.2-ti2v-5b": ("euler_cfg", 50, 5.0, None, 0, None, 0),
    "wan2.2-t2v-a14b": ("euler_cfg", 40, 12.0, None, 0, None, 0),
    "wan2.2-i2v-a14b": ("euler_cfg", 40, 5.0, None, 0, None, 0),
}
# name: task, DiT file, its repo, low-noise expert file, CFG (low / high), boundary, image stamp
MODEL = {
    "self-forcing-1.3b": ("t2v", "self_forcing_dmd.pt", "gdhe17/Self-Forcing", None, 1.0, None, None, "none"),
    "causvid-1.3b": ("t2v", "causvid_model.pt", "tianweiy/CausVid", None, 1.0, None, None, "none"),
    "longlive-1.3b": ("t2v", "longlive_base.pt", "Efficient-Large-Model/LongLive-1.3B", None, 1.0, None, None, "none"),
    "rolling-forcing-1.3b": ("t2v", "rolling_forcing_dmd.pt", "TencentARC/RollingForcing", None, 1.0, None, None, "none"),
    "causal-forcing-chunkwise-1.3b": ("t2v", "causal_forcing_chunkwise.pt", "zhuhz22/Causal-Forcing", None, 1.0, None, None, "none"),
    "causal-forcing-framewise-1.3b": ("t2v", "causal_forcing_framewise.pt", "zhuhz22/Causal-Forcing", None, 1.0, None, None, "none"),
    "krea-realtime-14b": ("t2v", "krea-realtime-video-14b.safetensors", "krea/krea-realtime-video", None, 1.0, None, None, "none"),
    "causal-forcing-pp-2step-1.3b": ("t2v", "causal_forcing_pp_framewise_2step.pt", "zhuhz22/Causal-Forcing", None, 1.0, None, None, "none"),
    "causal-forcing-pp-1step-1.3b": ("t2v", "causal_forcing_pp_framewise_1step.pt", "zhuhz22/Causal-Forcing", None, 1.0, None, None, "none"),
    "reward-forcing-1.3b": ("t2v", "rewardforcing.pt", "JaydenLu666/Reward-Forcing-T2V-1.3B", None, 1.0, None, None, "none"),
    "longlive2-5b": ("ti2v", "longlive2_5b_bf16.pt", "Efficient-Large-Model/LongLive-2.0-5B", None, 1.0, None, None, "clean_t0"),
    "wan2.1-t2v-1.3b": ("t2v", "wan2.1_t2v_1.3B_fp16.safetensors", "Comfy-Org/Wan_2.1_ComfyUI_repackaged", None, 5.0, None, None, "none"),
    "wan2.1-t2v-14b": ("t2v", "wan2.1_t2v_14B_fp8_scaled.safetensors", "Comfy-Org/Wan_2.1_ComfyUI_repackaged", None, 5.0, None, None, "none"),
    "wan2.1-i2v-14b-480p": ("i2v", "wan2.1_i2v_480p_14B_fp8_scaled.safetensors", "Comfy-Org/Wan_2.1_ComfyUI_repackaged", None, 5.0, None, None, "concat_y"),
    "wan2.2-ti2v-5b": ("ti2v", "wan2.2_ti2v_5B_fp16.safetensors", "Comfy-Org/Wan_2.2_ComfyUI_Repackaged", None, 5.0, None, None, "clean_t0"),
    "wan2.2-t2v-a14b": ("t2v", "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors", "Comfy-Org/Wan_2.2_ComfyUI_Repackaged",
                        "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors", 3.0, 4.0, 0.875, "none"),
    "wan2.2-i2v-a14b": ("i2v", "wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors", "Comfy-Org/Wan_2.2_ComfyUI_Repackaged",
                        "wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors", 3.5, 3.5, 0.9, "concat_y"),
}  # fmt: skip


def test_every_preset_is_pinned():
    assert set(PRESETS) == set(SAMPLING) == set(MODEL)


@pytest.mark.parametrize("name", list(SAMPLING))
def test_published_sampling(name):
    p = get_preset(name)
    sampler, steps, shift, warp, n, window, sink = SAMPLING[name]
    assert (p.sampler, p.frames_per_chunk, p.window_frames, p.sink_frames) == (sampler, n, window, sink)
    if sampler == "euler_cfg":
        assert p.schedule is None and (p.euler.num_steps, p.euler.shift) == (steps, shift)
    else:
        assert p.euler is None
        assert (p.schedule.steps, p.schedule.shift, p.schedule.warp) == (steps, shift, warp)
        assert p.schedule.final_t0_step == (name == "krea-realtime-14b")
    assert p.kv_recompute_frames == (3 if name == "krea-realtime-14b" else 0)
    assert p.lora is None or (name == "longlive-1.3b" and p.lora.name == "longlive_lora.pt")
    assert p.default_frames == {"longlive-1.3b": 477, "wan2.2-ti2v-5b": 121, "longlive2-5b": 509}.get(
        name, 81
    )


@pytest.mark.parametrize("name", list(MODEL))
def test_published_files_and_guidance(name):
    p = get_preset(name)
    task, dit, repo, low, cfg, cfg_high, boundary, stamp = MODEL[name]
    assert (p.task, p.dit.name, p.dit.repo, p.dit.folder) == (task, dit, repo, "diffusion_models")
    assert p.dit.role == "dit" and (p.dit_low_noise and p.dit_low_noise.name) == low
    assert low is None or (p.dit_low_noise.role, p.dit_low_noise.repo) == ("dit_low_noise", repo)
    assert (p.guidance_scale, p.guidance_scale_high, p.boundary, p.image_stamp) == (
        cfg,
        cfg_high,
        boundary,
        stamp,
    )
    wan22_vae = name in ("wan2.2-ti2v-5b", "longlive2-5b")
    assert p.vae.name == ("wan2.2_vae.safetensors" if wan22_vae else "wan_2.1_vae.safetensors")
    assert p.taehv.name == ("taew2_2.pth" if wan22_vae else "taew2_1.pth")
    assert (p.latent_channels, p.vae_stride) == ((48, (4, 16, 16)) if wan22_vae else (16, (4, 8, 8)))
    assert (p.height, p.width, p.fps) == ((704, 1280, 24) if wan22_vae else (480, 832, 16))
    assert (p.clip_vision is not None) == (name == "wan2.1-i2v-14b-480p")
    assert p.text_encoder.name == "umt5_xxl_fp8_e4m3fn_scaled.safetensors"
