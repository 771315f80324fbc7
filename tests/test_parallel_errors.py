"""Bad context-parallel setups fail early with errors that name the problem and the fix."""

import pytest
import torch
from official_ref import randomize_

from wan_core.dit import DualExpertDiT, WanDiT, WanDiTConfig
from wan_core.parallel import ParallelContext, check_frame_tokens, check_heads
from wan_core.parallel.context_parallel import ContextParallelDiT, wrap_for_context_parallel

# rank 0 of 2 without a process group: every check below runs before any collective
TWO = ParallelContext(rank=0, world_size=2)


def tiny(heads=4, dim=64):
    return randomize_(WanDiT(WanDiTConfig(dim=dim, ffn_dim=96, num_heads=heads, num_layers=1)).eval(), 0)


def test_ulysses_needs_heads_divisible_by_ranks():
    with pytest.raises(ValueError, match=r"3 attention heads.*not divisible by 2 ranks.*ring"):
        ContextParallelDiT(tiny(heads=3, dim=48), TWO, "ulysses")
    with pytest.raises(
        ValueError, match=r"12 is not divisible by 5 ranks: use a rank count in \[2, 3, 4, 6, 12\]"
    ):
        check_heads(12, 5)
    assert check_heads(40, 8) == 5
    ContextParallelDiT(tiny(heads=3, dim=48), TWO, "ring")  # ring has no head constraint


def test_more_ranks_than_tokens_per_frame():
    with pytest.raises(ValueError, match="at least 8 tokens per latent frame, but a frame has 4"):
        check_frame_tokens(4, 8)
    cp = ContextParallelDiT(tiny(), TWO, "ring")
    with pytest.raises(ValueError, match="at least 2 tokens per latent frame, but a frame has 1"):
        cp.new_kv_cache(1, frame_tokens=1, window_frames=2)
    x, ctx = torch.randn(1, 16, 1, 2, 2), torch.randn(1, 3, 4096)
    with pytest.raises(ValueError, match="at least 2 tokens per latent frame"):
        cp(x, torch.zeros(1), ctx)


def test_frame_tokens_not_divisible():
    with pytest.raises(ValueError, match="1560 tokens .* not divisible by 7 ranks"):
        check_frame_tokens(1560, 7)  # 480x832 Wan frame
    assert check_frame_tokens(1560, 8) == 195
    cp = ContextParallelDiT(tiny(), TWO, "ulysses")
    with pytest.raises(ValueError, match="3 tokens .* not divisible by 2 ranks"):
        cp.new_kv_cache(1, frame_tokens=3, window_frames=2)


def test_single_gpu_cache_is_refused_with_the_fix():
    model = tiny()
    cp = ContextParallelDiT(model, TWO, "ring")
    whole = model.new_kv_cache(1, 4, window_frames=2)  # whole frames: 4x the memory of each rank's share
    x, ctx = torch.randn(1, 16, 1, 4, 4), torch.randn(1, 3, 4096)
    cross = cp.prepare_context(ctx)
    with pytest.raises(ValueError, match=r"single-GPU cache.*new_kv_cache\(\) of the context-parallel model"):
        cp.forward_chunk(x, torch.zeros(1), cross, whole, 0)
    assert cp.kv_cache_geometry(4) == (2, 4)
    assert ContextParallelDiT(model, TWO, "ulysses").kv_cache_geometry(4) == (4, 2)
    share = cp.new_kv_cache(1, 4, window_frames=2, sink_frames=1)
    assert share.k[0].shape == (1, 3 * 2, 4, 16)


def test_mode_and_wrapping():
    model = tiny()
    with pytest.raises(ValueError, match="one of .*ulysses.*ring.*got 'stripes'"):
        ContextParallelDiT(model, TWO, "stripes")
    assert wrap_for_context_parallel(model, "ring", ParallelContext()) is model  # one process: unchanged
    assert wrap_for_context_parallel(model, None, TWO) is model
    dual = wrap_for_context_parallel(DualExpertDiT(model, tiny(), 0.875), "ulysses", TWO)
    assert all(isinstance(e, ContextParallelDiT) for e in dual.experts()) and dual.boundary == 0.875
