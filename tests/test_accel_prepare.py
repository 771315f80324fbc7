"""``prepare_dit``: the one place that orders LoRA -> fuse -> FP8 -> compile; a DiT prepared once is not
prepared again (the node loads once, a pipeline is built per job), and a KV-recompute preset without
the VAE encoder falls back to the first-frame anchor with a warning when asked to (the node's choice)."""

import logging

import torch
from official_ref import randomize_

from wan_core.accel import prepare_dit
from wan_core.accel.prepare import is_compiled
from wan_core.dit import WanDiT, WanDiTConfig
from wan_core.dit.fuse import is_qkv_fused
from wan_core.rollout.pipeline import StreamingPipeline
from wan_core.rollout.presets import get_preset

CFG = WanDiTConfig(dim=32, ffn_dim=64, num_heads=2, num_layers=2)


def test_prepare_is_idempotent_and_only_adds_steps(monkeypatch):
    from wan_core.rollout import graphs

    dit = randomize_(WanDiT(CFG).eval(), 0, std=0.2)
    calls = []
    monkeypatch.setattr(graphs, "compile_blocks", lambda m, mode=None: calls.append(mode) or 2)
    first = prepare_dit(dit, fuse_qkv=True, compile=False)
    assert first.fused == (2, 0) and is_qkv_fused(dit) and not is_compiled(dit)
    again = prepare_dit(dit, fuse_qkv=True)
    assert again.fused == (0, 0)  # nothing fused twice
    prepare_dit(dit, fuse_qkv=False)
    assert is_qkv_fused(dit)  # never undone
    prepare_dit(dit, compile=True, compile_mode="max-autotune-no-cudagraphs")
    assert calls == ["max-autotune-no-cudagraphs"]
    for blk in dit.blocks:
        blk._compiled_call_impl = lambda *a, **k: None  # what a compile leaves
    assert prepare_dit(dit, compile=True).compiled_blocks == 0 and calls == ["max-autotune-no-cudagraphs"]


def test_pipelines_built_per_job_prepare_the_dit_once():
    dit = randomize_(WanDiT(CFG).eval(), 0, std=0.2)
    p = get_preset("self-forcing-1.3b")
    StreamingPipeline(dit, p, fuse_qkv=True)
    fused = [blk.self_attn for blk in dit.blocks]
    StreamingPipeline(dit, p, fuse_qkv=True)
    assert [blk.self_attn for blk in dit.blocks] == fused  # the same modules: not rebuilt


def test_krea_reencode_anchor_falls_back_with_a_warning_when_asked(caplog):
    dit = randomize_(WanDiT(CFG).eval(), 0, std=0.2)
    p = get_preset("krea-realtime-14b")
    ctx = torch.randn(1, 5, 4096, generator=torch.Generator().manual_seed(1))
    pipe = StreamingPipeline(dit, p, missing_inputs="warn")
    with caplog.at_level(logging.WARNING, logger="wan_core.rollout"):
        pipe.start_video(ctx, height=32, width=48, num_chunks=4, seed=2)
        got = [r.latents for r in pipe.stream()]
    assert "keep_first_frame" in caplog.text and pipe.state.recompute.anchor == "first_frame"
    want = StreamingPipeline(dit, p.with_overrides(kv_recompute_anchor="first_frame"))
    want.start_video(ctx, height=32, width=48, num_chunks=4, seed=2)
    assert all(torch.equal(a, b.latents) for a, b in zip(got, want.stream()))
