"""Back-to-back videos on one pipeline (many jobs in one ComfyUI process): a new video with the same
cache geometry reuses the KV cache (same buffers, bookkeeping reset) and keeps the captured graphs
(the new prompt's cross-attention K/V copied into the buffers they read); with another geometry the
old cache is gone before the new one is allocated. Outputs always equal a fresh pipeline's."""

import gc
import weakref

import pytest
import torch
from cpu_stand_ins import CpuCapturer
from official_ref import randomize_

from wan_core.dit import WanDiT, WanDiTConfig
from wan_core.rollout.graphs import ChunkForward
from wan_core.rollout.pipeline import StreamingPipeline
from wan_core.rollout.presets import get_preset
from wan_core.rollout.schedulers import FewStepSchedule
from wan_core.rollout.schemes import causal as causal_module
from wan_core.rollout.schemes import rolling_forcing as rolling_module

CFG = WanDiTConfig(dim=32, ffn_dim=64, num_heads=2, num_layers=2)
SF = get_preset("self-forcing-1.3b").with_overrides(
    frames_per_chunk=2, sink_frames=1, window_frames=4, schedule=FewStepSchedule(steps=(1000, 750, 500, 250))
)
RF = get_preset("rolling-forcing-1.3b")


def _model():
    return randomize_(WanDiT(CFG).eval(), 0, std=0.2)


def _ctx(seed):
    return torch.randn(1, 7, 4096, generator=torch.Generator().manual_seed(seed))


def _pipe(model, preset, graphs=True):
    pipe = StreamingPipeline(model, preset)
    if graphs:
        pipe.forward_runner = ChunkForward(capturer=CpuCapturer(), device_types=("cpu",))
    return pipe


@torch.no_grad()
def _video(pipe, seed, height=32, width=48, num_chunks=3, **kw):
    pipe.initialize_cache(_ctx(seed), height=height, width=width, num_chunks=num_chunks, seed=seed, **kw)
    return torch.cat([r.latents for r in pipe.stream()], dim=2)


def _ptrs(pipe):
    return [t.data_ptr() for t in pipe.state.cache.tensors()]


@pytest.mark.parametrize("preset", [SF, RF], ids=["self-forcing", "rolling-forcing"])
def test_same_geometry_reuses_the_cache_and_the_graphs(preset):
    model = _model()
    pipe = _pipe(model, preset)
    _video(pipe, seed=1)
    cache, ptrs = pipe.state.cache, _ptrs(pipe)
    cross_ptrs = [t.data_ptr() for t in pipe.state.prompt.cross[0].text_k]
    fr = pipe.forward_runner
    captures, graphs = fr.captures, fr.num_graphs
    second = _video(pipe, seed=2)  # another prompt and seed, same geometry
    assert pipe.state.cache is cache and _ptrs(pipe) == ptrs
    assert [t.data_ptr() for t in pipe.state.prompt.cross[0].text_k] == cross_ptrs
    if preset is SF:  # every pass of the second video replays a graph of the first
        assert graphs == 3 and fr.num_graphs == graphs and fr.captures == captures
    assert torch.equal(second, _video(_pipe(model, preset, graphs=False), seed=2))
    # a third video at another size: a new cache, new graphs, again equal to a fresh pipeline
    third = _video(pipe, seed=3, height=48)
    assert pipe.state.cache is not cache
    if preset is SF:
        assert fr.captures > captures
    assert torch.equal(third, _video(_pipe(model, preset, graphs=False), seed=3, height=48))


def test_graphs_dropped_after_a_prompt_switch_and_outputs_stay_fresh():
    """After a switch the cross-attention buffers belong to the switched prompt: the next video copies
    nothing into them and recaptures (reusing the KV cache), still equal to a fresh pipeline."""
    model = _model()
    pipe = _pipe(model, SF)
    _video(pipe, seed=1, prompt_switches={1: _ctx(9)})
    cache, captures = pipe.state.cache, pipe.forward_runner.captures
    second = _video(pipe, seed=2)
    assert pipe.state.cache is cache and pipe.forward_runner.captures > captures
    assert torch.equal(second, _video(_pipe(model, SF, graphs=False), seed=2))


@pytest.mark.parametrize("preset", [SF, RF], ids=["self-forcing", "rolling-forcing"])
def test_new_geometry_frees_the_old_cache_before_allocating(preset, monkeypatch):
    """Every allocation of a cache class finds the previous cache already freed (by reference count,
    no garbage collection: on CUDA its memory goes back to the allocator before the new cache asks)."""
    module = rolling_module if preset is RF else causal_module
    cls = module.RollingWindowCache if preset is RF else module.RollingKVCache
    alive: list[weakref.ref] = []
    coexisting = []

    class Tracked(cls):
        def __init__(self, *a, **k):
            coexisting.append(sum(r() is not None for r in alive))
            super().__init__(*a, **k)
            alive.append(weakref.ref(self))

    monkeypatch.setattr(module, cls.__name__, Tracked)
    gc.collect()
    gc.disable()  # a reference cycle would keep the old cache until a collection: make that visible
    try:
        pipe = _pipe(_model(), preset)
        for height in (32, 48, 64, 48):
            _video(pipe, seed=height, height=height, num_chunks=2)
    finally:
        gc.enable()
    assert coexisting == [0, 0, 0, 0]
    assert sum(r() is not None for r in alive) == 1


@pytest.mark.parametrize("preset", [SF, RF], ids=["self-forcing", "rolling-forcing"])
def test_release_frees_the_cache_without_garbage_collection(preset):
    """``release()`` (the ComfyUI sampler calls it when a job ends, interrupted or not): the KV cache is
    freed by reference count at once, also for Rolling Forcing, whose sampler and pipeline form a cycle."""
    pipe = _pipe(_model(), preset)
    gc.collect()
    gc.disable()
    try:
        _video(pipe, seed=1, num_chunks=2)
        cache = weakref.ref(pipe.state.cache)
        pipe.release()
        assert cache() is None and pipe.state is None
        with pytest.raises(RuntimeError, match="initialize_cache"):
            pipe.generate(0)
    finally:
        gc.enable()
    assert _video(pipe, seed=1, num_chunks=2).shape[2] == 2 * preset.frames_per_chunk  # usable again
