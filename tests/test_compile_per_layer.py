"""torch.compile must not specialise a transformer block on its layer index in the two caches / wrappers
outside ``wan_core.dit``: Rolling Forcing's ``RollingWindowCache`` and the context-parallel DiT. With
``cache.write(i, ...)`` in the attention closure dynamo guarded on ``i``, recompiled once per layer and
gave up at its recompile limit (8): the remaining layers ran eagerly. Both now hand each block a
per-layer K/V object (``cache.layer(i, n)``), as ``WanDiT.forward_planned`` does (``tests/test_rollout_perf``
has the DiT's test). Traced with the "eager" backend (no code generation); compiled == eager outputs."""

import copy

import pytest
import torch
import torch.distributed as dist
from official_ref import randomize_
from torch._dynamo.utils import counters

from wan_core.dit import WanDiT, WanDiTConfig
from wan_core.parallel.context_parallel import ContextParallelDiT
from wan_core.parallel.group import free_port, init_local, shutdown
from wan_core.rollout.graphs import compile_blocks
from wan_core.rollout.pipeline import StreamingPipeline
from wan_core.rollout.presets import get_preset

LAYERS = 10  # more than dynamo's recompile limit of 8


def _pair(**cfg):
    plain = randomize_(WanDiT(WanDiTConfig(dim=32, ffn_dim=64, num_layers=LAYERS, **cfg)).eval(), 0, std=0.2)
    compiled = copy.deepcopy(plain)
    assert compile_blocks(compiled, backend="eager") == LAYERS
    return plain, compiled


@pytest.fixture
def dynamo_counters():
    torch._dynamo.reset()
    counters.clear()
    yield counters
    torch._dynamo.reset()


@torch.no_grad()
def test_rolling_forcing_compiled_blocks_share_graphs_across_layers(dynamo_counters):
    plain, compiled = _pair(num_heads=2)
    ctx = torch.randn(1, 7, 4096, generator=torch.Generator().manual_seed(1))
    outs = []
    for m in (plain, compiled):
        pipe = StreamingPipeline(m, get_preset("rolling-forcing-1.3b"))
        pipe.initialize_cache(ctx, height=32, width=48, num_chunks=3, seed=2)
        outs.append(torch.cat([r.latents for r in pipe.stream()], dim=2))
    assert torch.equal(outs[0], outs[1])
    graphs = dynamo_counters["stats"]["unique_graphs"]
    print(f"\nRolling Forcing, {LAYERS} compiled blocks: {graphs} dynamo graphs")
    assert 1 <= graphs <= 4  # one per layer up to the recompile limit (8) with the layer index


@pytest.fixture
def one_rank_group():
    """A gloo group of one process: the context-parallel code path (shard, gather, ring / all-to-all)."""
    ctx = init_local(0, 1, free_port(), backend="gloo")
    yield ctx
    shutdown()


@pytest.mark.parametrize("mode", ["ring", "ulysses"])
@torch.no_grad()
def test_context_parallel_compiled_blocks_share_graphs_across_layers(mode, one_rank_group, dynamo_counters):
    assert dist.is_initialized() and one_rank_group.world_size == 1
    plain, compiled = _pair(num_heads=2)
    g = torch.Generator().manual_seed(3)
    x, text = torch.randn(1, 16, 8, 4, 4, generator=g), torch.randn(1, 5, 4096, generator=g)
    outs = []
    for m in (plain, compiled):
        cp = ContextParallelDiT(m, one_rank_group, mode)
        cache = cp.new_kv_cache(1, 4, window_frames=4, sink_frames=1, rope="relative")
        cross = cp.prepare_context(text)
        outs.append(
            torch.cat(
                [
                    cp.forward_chunk(x[:, :, s : s + 2], torch.full((1,), 500.0), cross, cache, s)
                    for s in range(0, 8, 2)
                ],
                dim=2,
            )
        )
    assert torch.equal(outs[0], outs[1])
    graphs = dynamo_counters["stats"]["unique_graphs"]
    print(f"\ncontext parallel ({mode}), {LAYERS} compiled blocks, 4 chunks: {graphs} dynamo graphs")
    assert 1 <= graphs <= 4  # one per layer up to the recompile limit (8) with the layer index
