"""The benchmark's "ours" path times steady-state videos: the warm-up rollout captures the CUDA graphs
(one per KV fill level) and every later rollout replays them, on the same KV cache. Checked on CPU with
a capturer whose "graph" re-runs the function on the static buffers (as ``tests/test_rollout_perf.py``)."""

import pytest
import torch

pytest.importorskip("wan_core.rollout.pipeline")

from cpu_stand_ins import CpuCapturer  # noqa: E402

from bench import bench_ar  # noqa: E402
from bench.random_weights import build_random  # noqa: E402
from bench.rollout_timing import run_rollout  # noqa: E402
from bench.steppers import PipelineStepper  # noqa: E402
from wan_core.dit import WanDiT  # noqa: E402
from wan_core.rollout.graphs import ChunkForward  # noqa: E402

CHUNKS = 3
ARGS = ["--tiny", "--device", "cpu", "--height", "32", "--width", "32", "--chunks", str(CHUNKS)]


def test_timed_rollouts_replay_the_warm_up_graphs_on_the_same_cache():
    args = bench_ar.parse_args([*ARGS, "--paths", "ours", "--decoder", "none"])
    cfg = bench_ar.dit_config(args)
    model = build_random(lambda: WanDiT(cfg), "cpu", torch.float32)
    context = torch.randn(1, cfg.text_len, cfg.text_dim, generator=torch.Generator().manual_seed(1))
    stepper = PipelineStepper(model, context, CHUNKS, args)
    fr = stepper.pipe.forward_runner = ChunkForward(capturer=CpuCapturer(), device_types=("cpu",))
    warm = run_rollout(stepper, {}, CHUNKS, "cpu")
    cache, captures, replays = stepper.pipe.state.cache, fr.captures, fr.replays
    assert captures == CHUNKS  # one graph per fill level (the full window grows every chunk)
    timed = run_rollout(stepper, {}, CHUNKS, "cpu")
    passes = CHUNKS * (len(args.timesteps) + 1)  # denoising steps + the context pass (kept by default)
    assert stepper.pipe.state.cache is cache  # the KV cache is reused, never a second one
    assert fr.captures == captures and fr.replays == replays + passes  # no eager pass, no capture
    assert torch.equal(timed.latents, warm.latents)
    stepper.release()
