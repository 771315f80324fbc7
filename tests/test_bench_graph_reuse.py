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


def test_kept_rollout_bench_counts_captures_per_job(monkeypatch):
    """``bench/kept_rollout.py``: a new pipeline per job captures every fill level again (and runs each
    level's first pass eagerly); the kept pipeline replays every pass of every timed job."""
    import functools

    import wan_core.rollout.pipeline as pipeline_mod
    from bench import kept_rollout

    monkeypatch.setattr(
        pipeline_mod,
        "ChunkForward",
        functools.partial(ChunkForward, capturer=CpuCapturer(), device_types=("cpu",)),
    )
    rep = kept_rollout.main([*ARGS, "--jobs", "2", "--cuda-graphs", "--no-compile"])
    passes = CHUNKS * 5  # 4 denoising steps + the context pass (kept: like bench_ar by default)
    assert rep["new"]["captures_per_job"] == [CHUNKS, CHUNKS]
    assert rep["new"]["replays_per_job"] == [passes - CHUNKS] * 2  # each level's first pass is eager
    assert rep["kept"]["captures_per_job"] == [0, 0]
    assert rep["kept"]["replays_per_job"] == [passes] * 2
    assert rep["new"]["job_ms_median"] > 0 and rep["kept"]["first_chunk_ms_median"] > 0
