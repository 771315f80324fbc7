"""GPU-only checks (skipped without CUDA): CUDA-graph replay == eager within bf16 tolerance; torch.compile
of the blocks runs and agrees. The same checks at real sizes with timings: ``bench/rollout_gpu_check.py``."""

import pytest
import torch
from official_ref import max_rel_err, randomize_

from wan_core.dit import WanDiT, WanDiTConfig
from wan_core.rollout.pipeline import StreamingPipeline
from wan_core.rollout.presets import get_preset

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

BF16_TOL = 2e-2


def _run(dit, preset, **kw):
    pipe = StreamingPipeline(dit, preset, **kw)
    g = torch.Generator().manual_seed(0)
    pipe.initialize_cache(torch.randn(1, 12, 64, generator=g), height=64, width=96, num_chunks=8, seed=3)
    out = torch.cat([r.latents for r in pipe.stream()], dim=2)
    return out, pipe


def _model():
    cfg = WanDiTConfig(dim=256, ffn_dim=512, num_heads=2, num_layers=3, text_dim=64)
    return randomize_(WanDiT(cfg), 0, std=0.05).to("cuda", torch.bfloat16).eval()


def test_cuda_graph_replay_equals_eager():
    dit = _model()
    preset = get_preset("self-forcing-1.3b").with_overrides(window_frames=6, sink_frames=1)
    eager, _ = _run(dit, preset, cuda_graphs=False, compile=False)
    graphed, pipe = _run(dit, preset, cuda_graphs=True, compile=False)
    assert pipe.forward_runner.captures >= 1 and pipe.forward_runner.replays > 0
    err = max_rel_err(graphed.float(), eager.float())
    print(f"\nCUDA graph vs eager: max rel err {err:.2e}, {pipe.forward_runner.replays} replays")
    assert err < BF16_TOL


def test_compiled_blocks_agree_with_eager():
    dit = _model()
    preset = get_preset("self-forcing-1.3b").with_overrides(window_frames=6, sink_frames=1)
    eager, _ = _run(dit, preset, cuda_graphs=False, compile=False)
    compiled, pipe = _run(_model(), preset, cuda_graphs=True, compile=True)
    assert pipe.compiled
    err = max_rel_err(compiled.float(), eager.float())
    print(f"\ncompile + CUDA graph vs eager: max rel err {err:.2e}")
    assert err < BF16_TOL
