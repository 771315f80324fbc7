"""The context-parallel DiT on 2 gloo processes equals the single-process DiT: an AR rollout over
several chunks with a rolling window + sink (absolute and relative RoPE), and the full pass."""

import json

import pytest
import torch
from official_ref import max_rel_err, randomize_

from wan_core.dit import WanDiT, WanDiTConfig
from wan_core.parallel import run_local
from wan_core.parallel.context_parallel import wrap_for_context_parallel

TINY = dict(dim=64, ffn_dim=128, num_heads=4, num_layers=2)
LAT_H, LAT_W = 4, 8  # 2 x 4 = 8 tokens per latent frame
CHUNK, SINK, WINDOW, CHUNKS = 2, 1, 4, 5  # 10 frames: the window rolls over and evicts frames


def tiny_model(seed=0):
    return randomize_(WanDiT(WanDiTConfig(**TINY)).eval(), seed, std=0.2)


def inputs(seed=1, frames=CHUNK * CHUNKS, batch=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 16, frames, LAT_H, LAT_W, generator=g), torch.randn(batch, 5, 4096, generator=g)


@torch.no_grad()
def rollout(model, x, ctx_text, rope):
    """Self-Forcing-like AR loop: per chunk a noisy denoising call, then the re-run of the same chunk."""
    ft = (LAT_H // 2) * (LAT_W // 2)
    cache = model.new_kv_cache(x.shape[0], ft, window_frames=WINDOW, sink_frames=SINK, rope=rope)
    cross = model.prepare_context(ctx_text)
    outs = []
    for s in range(0, x.shape[2], CHUNK):
        t = torch.linspace(900.0, 700.0, CHUNK)[None].expand(x.shape[0], CHUNK)  # per-frame timesteps
        outs.append(model.forward_chunk(x[:, :, s : s + CHUNK] * 0.5, t, cross, cache, s))
        outs.append(model.forward_chunk(x[:, :, s : s + CHUNK], torch.zeros(x.shape[0]), cross, cache, s))
    return torch.stack(outs), cache


@torch.no_grad()
def _check_on_ranks(ctx, result_path):
    torch.set_num_threads(1)
    model = tiny_model()
    x, text = inputs()
    refs = {rope: rollout(model, x, text, rope) for rope in ("absolute", "relative")}
    report = {}
    for mode in ("ulysses", "ring"):
        cp = wrap_for_context_parallel(model, mode, ctx)
        for rope in ("absolute", "relative"):
            ref, ref_cache = refs[rope]
            out, cache = rollout(cp, x, text, rope)
            report[f"{mode}/{rope}/rollout"] = max_rel_err(out, ref)
            # each rank holds half of the single-process cache
            assert cache.nbytes() < ref_cache.nbytes() and sum(k.numel() for k in cache.k) * 2 == sum(
                k.numel() for k in ref_cache.k
            )
            assert cache.chunk_end == ref_cache.chunk_end == CHUNK * CHUNKS
        # full bidirectional pass, batch 2, per-token timesteps
        xf, tf = inputs(seed=3, frames=3, batch=2)
        t_tok = torch.rand(2, 3 * 8, generator=torch.Generator().manual_seed(4)) * 1000
        report[f"{mode}/full"] = max_rel_err(cp(xf, t_tok, tf), model(xf, t_tok, tf))
        # ranks > tokens per frame: both ranks fail before any collective, with the fix in the message
        with pytest.raises(ValueError, match="at least 2 tokens per latent frame"):
            cp(xf[..., :2, :2], t_tok[:, :3], tf)
    # Wan2.1 I2V: conditioning latent y on the channels, CLIP image cross-attention (local on each rank)
    i2v = randomize_(
        WanDiT(WanDiTConfig(**TINY, in_dim=36, model_type="i2v", image_cross_attn=True)).eval(), 5
    )
    g = torch.Generator().manual_seed(6)
    xi, yi = torch.randn(1, 16, 2, 4, 4, generator=g), torch.randn(1, 20, 2, 4, 4, generator=g)
    clip = torch.randn(1, 257, 1280, generator=g)
    cross = i2v.prepare_context(text[:1], clip)
    for mode in ("ulysses", "ring"):
        cp = wrap_for_context_parallel(i2v, mode, ctx)
        report[f"{mode}/i2v"] = max_rel_err(
            cp(xi, torch.full((1,), 700.0), cross, y=yi), i2v(xi, torch.full((1,), 700.0), cross, y=yi)
        )
    assert all(v <= 1e-5 for v in report.values()), report
    if ctx.rank == 0:
        with open(result_path, "w") as f:
            json.dump(report, f)


@pytest.mark.timeout(240)
def test_ulysses_and_ring_rollout_equal_single_process(tmp_path):
    path = tmp_path / "errors.json"
    run_local(_check_on_ranks, 2, str(path), backend="gloo")
    report = json.loads(path.read_text())
    print("max|cp - single| / max|single| per case:", report)
    assert len(report) == 8 and max(report.values()) <= 1e-5
