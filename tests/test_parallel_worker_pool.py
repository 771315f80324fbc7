"""ComfyUI path: one process hands a streaming rollout to 2 local gloo workers and takes the chunks
back through a queue; they equal the single-process StreamingPipeline's chunks."""

import dataclasses
import json

import pytest
import torch
from safetensors.torch import save_file
from test_parallel_context import tiny_model

from wan_core.dit import DualExpertDiT
from wan_core.parallel.worker_pool import ContextParallelWorkerPool, RolloutSpec, rollout_job
from wan_core.rollout.pipeline import StreamingPipeline
from wan_core.rollout.presets import get_preset

# LongLive: chunks of 3 latent frames, window 9 + sink 3, 4 steps; 15 latent frames = 5 chunks
PRESET, FRAMES, HEIGHT, WIDTH = "longlive-1.3b", 57, 32, 64  # 4 x 8 latent -> 8 tokens per frame


def _tiny_pipeline(ctx, spec):
    torch.set_num_threads(1)
    return StreamingPipeline(tiny_model().to(ctx.device), get_preset(spec.preset), rope="relative")


def _tiny_dual_pipeline(ctx, spec):  # Wan2.2 A14B layout: two experts, CFG, 3 Euler steps
    torch.set_num_threads(1)
    preset = get_preset(spec.preset)
    preset = preset.with_overrides(euler=dataclasses.replace(preset.euler, num_steps=3))
    return StreamingPipeline(DualExpertDiT(tiny_model(0), tiny_model(1), preset.boundary), preset)


def _cache_shape_job(ctx, state):
    cache = state["pipe"].state.cache
    yield {
        "rank": ctx.rank,
        "k": tuple(cache.k[0].shape),
        "sink": cache.sink_frames,
        "window": cache.window_frames,
    }


def _failing_job(ctx, state):
    if ctx.rank == 1:
        raise ValueError("boom on purpose")
    yield "never seen"


def _prompt():
    return torch.randn(1, 6, 4096, generator=torch.Generator().manual_seed(7))


@torch.no_grad()
def _single_process_dual(negative):
    pipe = _tiny_dual_pipeline(None, RolloutSpec("wan2.2-t2v-a14b"))
    pipe.initialize_cache(
        _prompt(), height=HEIGHT, width=WIDTH, num_frames=9, seed=5, negative_prompt=negative
    )
    return pipe.generate(0).latents


@torch.no_grad()
def _single_process_chunks():
    pipe = StreamingPipeline(tiny_model(), get_preset(PRESET), rope="relative")
    pipe.initialize_cache(_prompt(), height=HEIGHT, width=WIDTH, num_frames=FRAMES, seed=3)
    return [r.latents for r in pipe.stream()]


@pytest.mark.timeout(240)
def test_worker_pool_streams_the_same_chunks_as_one_process(tmp_path):
    # the workers load the DiT from its file (official key layout; config.json gives the tiny head_dim)
    save_file(tiny_model().state_dict(), str(tmp_path / "tiny_dit.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"dim": 64, "num_heads": 4}))
    spec = RolloutSpec(
        PRESET, files={"dit": str(tmp_path / "tiny_dit.safetensors")}, prompt=_prompt(),
        context_parallel="ulysses", height=HEIGHT, width=WIDTH, num_frames=FRAMES, seed=3,
        decoder="none", pipeline_kw={"rope": "relative"},
    )  # fmt: skip
    with ContextParallelWorkerPool(2, device="cpu") as pool:
        uly_chunks = list(pool.run(rollout_job, spec, timeout=120))
        # ring, with the models from a loader function instead of files
        spec = dataclasses.replace(spec, context_parallel="ring", files={}, load=_tiny_pipeline)
        chunks = list(pool.run(rollout_job, spec, timeout=120))
        (shape,) = pool.run(_cache_shape_job)  # models and the rollout stay loaded between jobs
        # bidirectional, two experts (Wan2.2 A14B), CFG with a negative prompt: the full pass split
        negative = torch.randn(1, 4, 4096, generator=torch.Generator().manual_seed(8))
        dual = RolloutSpec(
            "wan2.2-t2v-a14b", prompt=_prompt(), negative_prompt=negative, context_parallel="ulysses",
            height=HEIGHT, width=WIDTH, num_frames=9, seed=5, decoder="none", load=_tiny_dual_pipeline,
        )  # fmt: skip
        (dual_chunk,) = pool.run(rollout_job, dual, timeout=120)
        with pytest.raises(RuntimeError, match=r"rank 1:[\s\S]*boom on purpose"):
            list(pool.run(_failing_job))
        with pytest.raises(RuntimeError, match="closed"):
            list(pool.run(_cache_shape_job))
    ref = _single_process_chunks()
    assert [c["index"] for c in chunks] == list(range(5)) and len(ref) == len(uly_chunks) == 5
    assert [c["frame_start"] for c in chunks] == [0, 3, 6, 9, 12]
    for c, r in zip(uly_chunks + chunks, ref + ref):
        assert c["frames"] is None and c["latents"].shape == r.shape == (1, 16, 3, 4, 8)
        err = float((c["latents"] - r).abs().max() / r.abs().max())
        assert err <= 1e-5, err
    dual_ref = _single_process_dual(negative)
    assert dual_chunk["latents"].shape == dual_ref.shape == (1, 16, 3, 4, 8)
    assert float((dual_chunk["latents"] - dual_ref).abs().max() / dual_ref.abs().max()) <= 1e-5
    # rank 0's cache share: 8 tokens per frame / 2 ranks, (sink 3 + window 9) frames, all 4 heads; keys
    # also hold the 3 sink frames un-roped (relative RoPE)
    assert shape == {"rank": 0, "k": (1, (12 + 3) * 4, 4, 16), "sink": 3, "window": 9}


def test_pool_refuses_more_cuda_workers_than_gpus():
    with pytest.raises(ValueError, match="GPUs"):
        ContextParallelWorkerPool(torch.cuda.device_count() + 1, device="cuda")
