"""Audit: a 2000-frame rollout (500 latent frames, 167 chunks of 3) through the real pipeline keeps its
memory flat once the window is full: the KV cache keeps its bytes and buffers, the visible-frame
history stays bounded by sink + window, and every chunk is finite. Tiny model, 1 token per frame."""

import pytest
import torch
from official_ref import randomize_

from wan_core.dit import WanDiT, WanDiTConfig
from wan_core.rollout.pipeline import StreamingPipeline
from wan_core.rollout.presets import get_preset
from wan_core.rollout.schedulers import FewStepSchedule


@pytest.mark.parametrize("rope", ["auto", "relative"])
def test_2000_frames_flat_memory(rope):
    dit = randomize_(WanDiT(WanDiTConfig(dim=32, ffn_dim=32, num_heads=2, num_layers=1)).eval(), 0, std=0.2)
    p = get_preset("self-forcing-1.3b").with_overrides(
        frames_per_chunk=3, sink_frames=1, window_frames=6, schedule=FewStepSchedule(steps=(1000, 500))
    )
    pipe = StreamingPipeline(dit, p, rope=rope)
    pipe.initialize_cache(torch.randn(1, 4, 4096), height=16, width=16, num_frames=2001, seed=0)
    assert pipe.num_chunks == 167 and pipe.state.num_latent_frames == 501
    window_full = (1 + 6) // 3 + 1
    sizes, ptrs, frames = set(), set(), 0
    for i, r in enumerate(pipe.stream()):
        assert torch.isfinite(r.latents).all()
        frames += r.num_latent_frames
        if i >= window_full:
            sizes.add(pipe.cache_nbytes())
            ptrs.add(tuple(t.data_ptr() for t in pipe.state.cache.tensors()))
            assert len(pipe.state.history) <= 1 + 6
    assert frames == 501 and 1 + 4 * (frames - 1) == 2001
    assert len(sizes) == 1, f"rollout memory changed: {sorted(sizes)}"
    assert len(ptrs) == 1, "the KV cache was reallocated during the rollout"
    assert pipe.state.cache.capacity_frames == 7
