"""GPU-only checks of the speed levers (skipped without CUDA; the CPU equality tests are
``test_rollout_perf.py`` / ``test_dit_perf.py``): one real CUDA graph per KV fill level == eager within
bf16 tolerance, no host sync inside a chunk (``torch.cuda.set_sync_debug_mode("error")``), the pinned
non-blocking ``plan_chunk`` upload under back-to-back plans, device noise determinism, fused q/k/v."""

import copy

import pytest
import torch
from official_ref import max_rel_err, randomize_

from wan_core.dit import WanDiT, WanDiTConfig
from wan_core.dit.kv_cache import RollingKVCache
from wan_core.rollout.pipeline import StreamingPipeline
from wan_core.rollout.presets import get_preset

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

BF16_TOL = 2e-2
PRESET = get_preset("self-forcing-1.3b").with_overrides(window_frames=6, sink_frames=1)  # 3-frame chunks


def _model():
    cfg = WanDiTConfig(dim=256, ffn_dim=512, num_heads=2, num_layers=3, text_dim=64)
    return randomize_(WanDiT(cfg), 0, std=0.05).to("cuda", torch.bfloat16).eval()


def _ctx():
    return torch.randn(1, 12, 64, generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def _video(pipe, num_chunks=5):
    pipe.initialize_cache(_ctx(), height=64, width=96, num_chunks=num_chunks, seed=3)
    return torch.cat([r.latents for r in pipe.stream()], dim=2).float()


def test_one_cuda_graph_per_fill_level():
    dit = _model()
    eager = _video(StreamingPipeline(dit, PRESET, cuda_graphs=False, compile=False, fuse_qkv=False))
    pipe = StreamingPipeline(dit, PRESET, cuda_graphs=True, compile=False, fuse_qkv=False)
    graphed = _video(pipe)
    fr = pipe.forward_runner
    # visible frames 3, 6, 7, 7, 7: three levels; 5 x 4 steps + 4 context passes, one eager call per level
    assert fr.enabled and fr.captures == 3 and fr.replays == 5 * 4 + 4 - 3
    err = max_rel_err(graphed, eager)
    print(f"\nCUDA graphs per fill level vs eager: max rel err {err:.2e}")
    assert err < BF16_TOL
    replays = fr.replays
    again = _video(pipe)  # same geometry: the KV cache, cross-attention buffers and graphs are reused
    assert fr.captures == 3 and fr.replays == replays + 5 * 4 + 4 and fr.capturer.warmed_up
    assert max_rel_err(again, eager) < BF16_TOL


def test_no_host_sync_inside_a_chunk():
    pipe = StreamingPipeline(_model(), PRESET, cuda_graphs=False, compile=False)
    with torch.no_grad():
        pipe.initialize_cache(_ctx(), height=64, width=96, num_chunks=4, seed=3)
        pipe.generate(0)  # lazy initialisation (cuBLAS, pinned-memory pool) outside the check
        pipe.finalize(0)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            for i in (1, 2):
                pipe.generate(i)  # noise, plans, DiT steps: raises on any synchronising call
                pipe.finalize(i)
        finally:
            torch.cuda.set_sync_debug_mode(0)


def test_pinned_plan_upload_equals_cpu_plans():
    caches = [
        RollingKVCache(1, 1, 6, 2, 8, 4, 2, dtype=torch.float32, device=d, rope="relative")
        for d in ("cpu", "cuda")
    ]
    snaps = {0: [], 1: []}
    for c in range(12):
        for _ in range(2):  # a chunk is planned once per pass
            for j, cache in enumerate(caches):
                cache.plan_chunk(c * 2, 2)
                # device-side clones, compared after all plans: catches a staging buffer reused too early
                snaps[j].append(
                    [
                        cache.write_index(2).clone(),
                        cache.chunk_positions(2).clone(),
                        cache.slot_positions.clone(),
                        cache.chunk_unroped(2).clone(),  # relative RoPE: sink frames, keys un-roped
                        cache.layer(0, 2).k_write_index.clone(),
                    ]
                )
    torch.cuda.synchronize()
    for a, b in zip(snaps[0], snaps[1]):
        assert all(torch.equal(x, y.cpu()) for x, y in zip(a, b))


def test_device_noise_is_deterministic_on_cuda():
    pipe = StreamingPipeline(_model(), PRESET, cuda_graphs=False, compile=False)
    pipe.initialize_cache(_ctx(), height=64, width=96, num_chunks=2, seed=5)
    a = pipe.chunk_noise(1)
    assert a.is_cuda and torch.equal(a, pipe.chunk_noise(1))
    assert not torch.equal(a, pipe.chunk_noise(0))


def test_fused_qkv_on_cuda_agrees():
    dit = _model()
    plain = _video(StreamingPipeline(dit, PRESET, cuda_graphs=False, compile=False, fuse_qkv=False))
    pipe = StreamingPipeline(copy.deepcopy(dit), PRESET, cuda_graphs=True, compile=False)
    assert pipe.fused_qkv  # on by default on CUDA
    fused = _video(pipe)
    err = max_rel_err(fused, plain)
    print(f"\nfused QKV + CUDA graphs vs plain eager (bf16): max rel err {err:.2e}")
    assert err < BF16_TOL


def test_rolling_forcing_plans_without_a_host_sync():
    """Rolling Forcing's per-pass plan (slots, positions, timesteps) goes up in one pinned non-blocking
    copy and is expanded on the device: no host sync while windows run (they are not graphed)."""
    pipe = StreamingPipeline(_model(), get_preset("rolling-forcing-1.3b"), cuda_graphs=False, compile=False)
    with torch.no_grad():
        pipe.initialize_cache(_ctx(), height=64, width=96, num_chunks=8, seed=3)
        pipe.generate(0)  # lazy initialisation outside the check
        pipe.finalize(0)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            for i in (1, 2, 3):
                pipe.generate(i)
                pipe.finalize(i)
        finally:
            torch.cuda.set_sync_debug_mode(0)
