"""The sampler's fewer knobs, outside a ComfyUI server: preset ``auto`` (the loaded DiT's file name and
layout -> the preset; ambiguous -> an error listing the candidates), Wan Stream Rollout Options and
its precedence over the sampler's kept widgets, the fps that goes to CreateVideo, and switches in
seconds reaching the rollout at the chunk they name."""

import logging
import shutil
from types import SimpleNamespace

import pytest
import torch
from cpu_stand_ins import QuietProgress, comfy_runtime_outside
from tiny_models import TEXT_DIM, make_tiny_models

from nodes import core_bridge
from nodes.payloads import PromptSegment, RolloutOptions, StreamConditioning
from nodes.video_request import sampler_request
from wan_core.dit.config import PRESETS as DIT_CONFIGS
from wan_core.rollout.preset_auto import ARCHITECTURES, preset_candidates, resolve_auto_preset
from wan_core.rollout.presets import PRESETS
from wan_core.rollout.request import RequestError, Seconds

T2V_13B, T2V_14B = DIT_CONFIGS["wan2.1-t2v-1.3b"], DIT_CONFIGS["wan2.1-t2v-14b"]


def test_every_preset_has_an_architecture():
    assert set(ARCHITECTURES) == set(PRESETS)
    assert all(name in DIT_CONFIGS for name in ARCHITECTURES.values())


@pytest.mark.parametrize(
    "file, config, dual, expected",
    [
        ("self_forcing_dmd.pt", T2V_13B, False, ["self-forcing-1.3b"]),  # a preset's own file
        ("longlive_base.pt", T2V_13B, False, ["longlive-1.3b"]),
        ("wan2.1_t2v_1.3B_fp16.safetensors", T2V_13B, False, ["wan2.1-t2v-1.3b"]),
        ("/models/diffusion_models/Self-Forcing_DMD-fp16.safetensors", T2V_13B, False, ["self-forcing-1.3b"]),
        ("causal_forcing_framewise_v2.pt", T2V_13B, False, ["causal-forcing-framewise-1.3b"]),
        ("krea-realtime-video-14b.safetensors", T2V_14B, False, ["krea-realtime-14b"]),
        (
            "wan2.1_i2v_480p_14B_fp8_scaled.safetensors",
            DIT_CONFIGS["wan2.1-i2v-14b"],
            False,
            ["wan2.1-i2v-14b-480p"],
        ),
        ("wan2.2_ti2v_5B_fp16.safetensors", DIT_CONFIGS["wan2.2-ti2v-5b"], False, ["wan2.2-ti2v-5b"]),
        ("longlive2_5b_bf16.pt", DIT_CONFIGS["wan2.2-ti2v-5b"], False, ["longlive2-5b"]),  # same layout
        ("anything.safetensors", DIT_CONFIGS["wan2.2-ti2v-5b"], False, ["longlive2-5b", "wan2.2-ti2v-5b"]),
        ("high.safetensors", DIT_CONFIGS["wan2.2-i2v-a14b"], True, ["wan2.2-i2v-a14b"]),
        ("wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors", T2V_14B, True, ["wan2.2-t2v-a14b"]),
        # the layout wins over a misleading name: an I2V DiT named like Self-Forcing's file
        ("self_forcing_dmd.pt", DIT_CONFIGS["wan2.1-i2v-14b"], False, ["wan2.1-i2v-14b-480p"]),
    ],
)
def test_preset_candidates(file, config, dual, expected):
    assert sorted(preset_candidates(file, config, dual_expert=dual)) == expected
    if len(expected) == 1:
        assert resolve_auto_preset(file, config, dual_expert=dual) == expected[0]


def test_an_ambiguous_dit_is_an_error_listing_the_candidates():
    from nodes.video_request import SAMPLER_WORDS

    with pytest.raises(RequestError) as e:
        resolve_auto_preset("my_finetune.safetensors", T2V_13B, words=SAMPLER_WORDS)
    assert e.value.code == "preset.ambiguous"
    msg = str(e.value)
    assert msg.startswith("Streaming AR Sampler: preset 'auto': the DiT my_finetune.safetensors")
    for name in (
        "self-forcing-1.3b",
        "causvid-1.3b",
        "longlive-1.3b",
        "rolling-forcing-1.3b",
        "wan2.1-t2v-1.3b",
    ):
        assert name in msg
    assert "krea-realtime-14b" not in msg and "pick one of them in preset" in msg
    odd = SimpleNamespace(model_type="t2v", in_dim=16, out_dim=32, image_cross_attn=False, dim=64)
    with pytest.raises(RequestError, match="no preset runs the DiT x.pt") as e:
        resolve_auto_preset("x.pt", odd)
    assert e.value.code == "preset.no_fit"


def _cond(*switches):
    g = torch.Generator().manual_seed(5)
    neg = torch.randn(1, 6, TEXT_DIM, generator=g)  # the negative prompt of the CFG presets
    segs = [PromptSegment(0, "a", torch.randn(1, 6, TEXT_DIM, generator=g), neg)]
    segs += [
        PromptSegment(start, text, torch.randn(1, 6, TEXT_DIM, generator=g), neg) for start, text in switches
    ]
    return StreamConditioning(segments=tuple(segs))


KEPT = dict(window_frames=-1, sink_frames=-1, chunks=0, gpus=1, context_parallel="ulysses")


def test_options_node_wins_over_the_kept_widgets_with_one_warning(caplog):
    base = dict(width=832, height=480, frames=81, preset="self-forcing-1.3b", seed=1)
    old = sampler_request(_cond(), **base, **{**KEPT, "window_frames": 12, "sink_frames": 3})
    assert (old.window, old.sink) == (12, 3)  # a saved workflow without the options node: as before
    with caplog.at_level(logging.WARNING, logger="wan_stream"):
        req = sampler_request(
            _cond(), **base, **{**KEPT, "window_frames": 12, "sink_frames": 3},
            options=RolloutOptions(window_frames=9, sink_frames=None, gpus=2, context_parallel="ring"),
        )  # fmt: skip
    assert (req.window, req.sink, req.gpus, req.context_parallel) == (9, None, 2, "ring")
    (warning,) = [r.getMessage() for r in caplog.records]
    assert (
        "Wan Stream Rollout Options connected, so the sampler's own window_frames 12, sink_frames 3"
        in warning
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="wan_stream"):  # kept widgets at their defaults: silent
        req = sampler_request(_cond(), **base, **KEPT, options=RolloutOptions())
    assert (req.window, req.sink, req.gpus, req.context_parallel) == (None, None, 1, None)
    assert not caplog.records


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    comfy_runtime_outside(mp, QuietProgress)
    root = tmp_path_factory.mktemp("models")
    info = make_tiny_models(root, families=("t2v", "ti2v"))
    for fam in info.values():
        fam["path"] = str(root / fam["files"]["dit"])
    yield info
    mp.undo()


def _video(info, dit, cond=None, **kw):
    inputs = dict(
        width=info["width"], height=info["height"], frames=1, preset="auto", seed=3, **{**KEPT, "chunks": 4}
    )
    return core_bridge.sample_video(dit, cond or _cond(), **{**inputs, **kw})


def test_preset_auto_runs_the_loaded_dits_preset_and_gives_its_fps(env):
    t2v = env["t2v"]
    dit = core_bridge.load_dit(t2v["path"], "auto", "auto", False, False)
    auto = _video(t2v, dit)
    named = _video(t2v, dit, preset="self-forcing-1.3b")
    torch.testing.assert_close(auto.latent, named.latent, rtol=0, atol=0)
    assert auto.fps == 16.0 and isinstance(auto.fps, float)
    ti2v = env["ti2v"]
    dit5 = core_bridge.load_dit(ti2v["path"], "auto", "auto", False, False)
    assert _video(ti2v, dit5, chunks=0, frames=5).fps == 24.0  # wan2.2-ti2v-5b: 24 fps


def test_preset_auto_of_a_renamed_dit_lists_the_candidates_before_any_work(env, tmp_path):
    t2v = env["t2v"]
    renamed = tmp_path / "my_finetune.pt"
    shutil.copy(t2v["path"], renamed)
    dit = core_bridge.load_dit(str(renamed), "auto", "auto", False, False)
    with pytest.raises(RequestError, match="preset 'auto': the DiT my_finetune.pt .* fits") as e:
        _video(t2v, dit)
    assert "self-forcing-1.3b" in str(e.value) and not dit.warm.handles()


def test_a_switch_in_seconds_reaches_the_rollout_at_its_chunk(env):
    """``1s`` at 16 fps is frame 16 -> chunk 2 (frames 21..32): the same video as the switch at chunk 2."""
    t2v = env["t2v"]
    dit = core_bridge.load_dit(t2v["path"], "auto", "auto", False, False)
    by_chunk = _video(t2v, dit, cond=_cond((2, "b")))
    by_time = _video(t2v, dit, cond=_cond((Seconds.parse("1"), "b")))
    plain = _video(t2v, dit)
    torch.testing.assert_close(by_time.latent, by_chunk.latent, rtol=0, atol=0)
    assert not torch.equal(by_time.latent, plain.latent)
    # 3 latent frames per chunk: chunks 0 and 1 (6 latent frames) are the same as without the switch
    torch.testing.assert_close(by_time.latent[:, :, :6], plain.latent[:, :, :6], rtol=0, atol=0)
