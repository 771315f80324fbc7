"""Speed levers of the rollout, checked on CPU: one CUDA graph per KV fill level (``ChunkForward`` driven
by a CPU capturer whose "graph" re-runs the function on the static buffers), device-side seeded noise,
no clean-context pass after the last chunk of a finite video, fused q/k/v inside the pipeline."""

import logging

import torch
from cpu_stand_ins import CpuCapturer
from official_ref import randomize_

from wan_core.dit import WanDiT, WanDiTConfig
from wan_core.dit.fuse import is_qkv_fused
from wan_core.rollout.graphs import ChunkForward
from wan_core.rollout.noise import seeded_noise
from wan_core.rollout.pipeline import StreamingPipeline, chunk_seed
from wan_core.rollout.presets import get_preset
from wan_core.rollout.schedulers import FewStepSchedule

CFG = WanDiTConfig(dim=32, ffn_dim=64, num_heads=2, num_layers=2)
H, W = 32, 48  # latent 4 x 6 -> 6 tokens per latent frame
STEPS = (1000, 750, 500, 250)


def _model(seed=0):
    return randomize_(WanDiT(CFG).eval(), seed, std=0.2)


def _preset(n=2, sink=1, window=4):
    return get_preset("self-forcing-1.3b").with_overrides(
        frames_per_chunk=n, sink_frames=sink, window_frames=window, schedule=FewStepSchedule(steps=STEPS)
    )


def _ctx():
    return torch.randn(1, 7, 4096, generator=torch.Generator().manual_seed(5))


def _rollout(pipe, num_chunks=5, **kw):
    pipe.initialize_cache(_ctx(), height=H, width=W, num_chunks=num_chunks, seed=11, **kw)
    return torch.cat([r.latents for r in pipe.stream()], dim=2)


def _count_dit_calls(model):
    calls = []
    plain = model.forward_planned

    def counted(*a, **k):
        calls.append(1)
        return plain(*a, **k)

    model.forward_planned = counted
    return calls


@torch.no_grad()
def test_one_graph_per_fill_level_equals_eager():
    model = _model()
    eager = _rollout(StreamingPipeline(model, _preset()))
    pipe = StreamingPipeline(model, _preset())
    cap = CpuCapturer()
    pipe.forward_runner = ChunkForward(capturer=cap, device_types=("cpu",))
    calls = _count_dit_calls(model)
    graphed = _rollout(pipe)
    assert torch.equal(graphed, eager)  # inputs reach the "graph" only through the static buffers
    fr = pipe.forward_runner
    # chunks of 2 frames, sink 1 + window 4: visible frames 2, 4, 5, 5, 5 -> three fill levels
    assert fr.captures == 3 and fr.num_graphs == 3
    # 5 chunks x 4 steps + 4 context passes (none after the last chunk); one eager call per level
    assert fr.replays == 5 * 4 + 4 - 3
    # every capture used the runner's one pool (no pool per level)
    assert len(cap.pools) == 1 and all(p is cap.pools[0] for p in cap.capture_pools)
    # a new video of the same geometry reuses the KV cache and the cross-attention buffers: it keeps the
    # graphs and their pool, replays every pass (no eager call, no capture) and agrees
    n_calls = len(calls)
    again = _rollout(pipe)
    assert torch.equal(again, eager) and len(cap.pools) == 1 and fr.captures == 3
    assert len(calls) - n_calls == 5 * 4 + 4  # each replay re-runs the function on the static buffers


@torch.no_grad()
def test_graph_key_separates_levels_and_reuses_equal_ones():
    model = _model()
    pipe = StreamingPipeline(model, _preset(n=1, sink=0, window=3))
    pipe.forward_runner = ChunkForward(capturer=CpuCapturer(), device_types=("cpu",))
    pipe.initialize_cache(_ctx(), height=H, width=W, num_chunks=6, seed=1)
    fr = pipe.forward_runner
    replays_by_level = {}
    for i in range(6):
        pipe.generate(i)
        pipe.finalize(i)
        cache = pipe.state.cache
        graphs = {k[-2]: v for k, v in fr._graphs.items()}  # kv_tokens -> captured graph
        replays_by_level.setdefault(cache.kv_tokens, set()).add(id(graphs[cache.kv_tokens].replay))
    # kv lengths 1, 2, 3, 3, 3, 3 frames: one captured callable per length, reused by later chunks
    assert sorted(replays_by_level) == [6, 12, 18]
    assert all(len(v) == 1 for v in replays_by_level.values())
    assert fr.num_graphs == 3


@torch.no_grad()
def test_capture_failure_falls_back_to_eager(caplog):
    model = _model()
    eager = _rollout(StreamingPipeline(model, _preset()), num_chunks=3)
    pipe = StreamingPipeline(model, _preset())
    cap = CpuCapturer(fail=True)
    pipe.forward_runner = ChunkForward(capturer=cap, device_types=("cpu",))
    with caplog.at_level(logging.WARNING, logger="wan_core.rollout"):
        out = _rollout(pipe, num_chunks=3)
    assert torch.equal(out, eager)
    assert not pipe.forward_runner.enabled and cap.failures == 1 and pipe.forward_runner.captures == 0
    assert "CUDA graph capture failed" in caplog.text


@torch.no_grad()
def test_no_context_pass_after_the_last_chunk_of_a_finite_video():
    model = _model()
    calls = _count_dit_calls(model)
    skip = _rollout(StreamingPipeline(model, _preset()), num_chunks=3)
    assert len(calls) == 3 * 4 + 2  # 4 steps per chunk, context passes after chunks 0 and 1 only
    calls.clear()
    full = _rollout(StreamingPipeline(model, _preset(), context_pass_last=True), num_chunks=3)
    assert len(calls) == 3 * (4 + 1)
    assert torch.equal(skip, full)  # nothing read the skipped pass's K/V
    # endless stream: the next chunk may always come, so every chunk gets its context pass
    calls.clear()
    pipe = StreamingPipeline(model, _preset(), rope="absolute")  # "auto" would pick relative when endless
    pipe.initialize_cache(_ctx(), height=H, width=W, seed=11)
    endless = []
    for i in range(3):
        endless.append(pipe.generate(i).latents)
        pipe.finalize(i)
    assert len(calls) == 3 * (4 + 1)
    assert torch.equal(torch.cat(endless, dim=2), skip)
    pipe.generate(3)  # and it can go on


def test_chunk_noise_on_device_keeps_the_cpu_numbers():
    pipe = StreamingPipeline(_model(), _preset())
    pipe.initialize_cache(_ctx(), height=H, width=W, num_chunks=2, seed=4)
    noise = pipe.chunk_noise(1)
    assert noise.shape == (len(STEPS), 1, 16, 2, H // 8, W // 8) and noise.dtype == torch.float32
    # the previous CPU draw (generator on the CPU, then moved): identical on CPU
    g = torch.Generator(device="cpu").manual_seed(chunk_seed(4, 1))
    assert torch.equal(noise, torch.randn(noise.shape, generator=g))
    assert torch.equal(seeded_noise(7, (3, 4), "cpu"), seeded_noise(7, (3, 4), "cpu"))
    assert not torch.equal(seeded_noise(7, (3, 4), "cpu"), seeded_noise(8, (3, 4), "cpu"))
    assert not torch.equal(pipe.chunk_noise(0), noise[:, :, :, :2])


@torch.no_grad()
def test_fused_qkv_switch_in_the_pipeline():
    plain = _rollout(StreamingPipeline(_model(), _preset()), num_chunks=3)
    assert not StreamingPipeline(_model(), _preset()).fused_qkv  # off by default on CPU
    pipe = StreamingPipeline(_model(), _preset(), fuse_qkv=True)
    assert pipe.fused_qkv and is_qkv_fused(pipe.dit)
    fused = _rollout(pipe, num_chunks=3)
    assert (fused - plain).abs().max() <= 1e-6 * plain.abs().max()


@torch.no_grad()
def test_lora_merge_into_a_fused_model_unfuses_first(tmp_path):
    from wan_core.dit.fuse import fuse_qkv_
    from wan_core.rollout.lora import merge_lora

    plain, fused = _model(), _model()
    fuse_qkv_(fused)
    g = torch.Generator().manual_seed(2)
    lora = {
        "blocks.0.self_attn.k.lora_A.weight": torch.randn(4, CFG.dim, generator=g),
        "blocks.0.self_attn.k.lora_B.weight": torch.randn(CFG.dim, 4, generator=g),
    }
    torch.save(lora, tmp_path / "lora.pt")
    assert merge_lora(plain, tmp_path / "lora.pt") == merge_lora(fused, tmp_path / "lora.pt") == 1
    assert not is_qkv_fused(fused)
    sd = plain.state_dict()
    assert all(torch.equal(v, sd[k]) for k, v in fused.state_dict().items())


@torch.no_grad()
def test_compiled_blocks_share_graphs_across_layers():
    """torch.compile must not specialise a block on its layer index: with ``cache.write(i, ...)`` in the
    attention closure it recompiled per layer and hit dynamo's recompile limit (8) -- every later
    layer and fill level then ran eagerly. Traced with the "eager" backend (no code generation)."""
    import copy

    from torch._dynamo.utils import counters

    from wan_core.rollout.graphs import compile_blocks

    torch._dynamo.reset()
    counters.clear()
    try:
        plain = randomize_(WanDiT(WanDiTConfig(dim=32, ffn_dim=64, num_heads=2, num_layers=10)).eval(), 0)
        compiled = copy.deepcopy(plain)
        assert compile_blocks(compiled, backend="eager") == 10
        outs = []
        for m in (plain, compiled):
            pipe = StreamingPipeline(m, _preset(n=2, sink=1, window=6), rope="relative")
            outs.append(_rollout(pipe, num_chunks=5))  # visible frames 2, 4, 6, 7, 7
        assert torch.equal(outs[0], outs[1])
        graphs = counters["stats"]["unique_graphs"]
        print(f"\n10 compiled blocks, 5 chunks: {graphs} dynamo graphs")
        # one static graph + one with a dynamic visible length; was 8 (the recompile limit) before LayerKV,
        # and 4 while block 0 got the transposed token layout of the patch embedding
        assert 1 <= graphs <= 2
    finally:
        torch._dynamo.reset()


@torch.no_grad()
def test_residual_stream_is_contiguous_in_every_block(monkeypatch):
    """The patch embedding's tokens are a transposed view; they are copied once into a contiguous
    ``[B, L, dim]`` so no block runs its LayerNorms / elementwise ops on a strided residual stream."""
    import wan_core.dit.model as M

    seen = []
    block_forward = M.WanBlock.forward

    def spy(self, x, *a):
        seen.append(x.is_contiguous())
        return block_forward(self, x, *a)

    monkeypatch.setattr(M.WanBlock, "forward", spy)
    for dtype in (torch.float32, torch.bfloat16):
        m = _model().to(dtype)
        cache = m.new_kv_cache(1, 6, 4)
        cache.plan_chunk(0, 2)
        m.forward_planned(
            torch.randn(1, 16, 2, 4, 6), torch.full((1, 2), 500.0), m.prepare_context(_ctx()), cache
        )
        m(torch.randn(1, 16, 2, 4, 6), torch.tensor([500.0]), _ctx())
    assert len(seen) == 4 * CFG.num_layers and all(seen)
