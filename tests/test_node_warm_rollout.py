"""The Streaming AR Sampler keeps its pipeline (KV cache + CUDA graphs) with the loaded DiT between
jobs (``nodes.warm_rollout``): on tiny models, outside a ComfyUI server, with a CPU stand-in for graph
capture. A kept job replays the previous job's graphs from its first pass and gives the same latents
as a cold one; another geometry replaces the kept pipeline; a failed or interrupted job and ComfyUI's
unloading free it; what is kept is registered with (a stand-in of) ComfyUI's model management."""

import dataclasses
import functools

import pytest
import torch
from cpu_stand_ins import CpuCapturer, HeldMemory, QuietProgress, comfy_runtime_outside
from tiny_models import TEXT_DIM, tiny_family_files

import wan_core.rollout.pipeline as pipeline_mod
from nodes import comfy_runtime as rt
from nodes import core_bridge
from nodes.payloads import PromptSegment, StreamConditioning
from wan_core.rollout.graphs import ChunkForward

CHUNKS = 3


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return tiny_family_files(tmp_path_factory.mktemp("models"))


@pytest.fixture
def env(files, monkeypatch):
    comfy_runtime_outside(monkeypatch, QuietProgress)
    HeldMemory.held = []
    capturer = CpuCapturer()
    # graphs "captured" on CPU: the pipeline's runner uses the stand-in capturer for CPU tensors
    monkeypatch.setattr(
        pipeline_mod,
        "ChunkForward",
        functools.partial(ChunkForward, capturer=capturer, device_types=("cpu",)),
    )
    dit = core_bridge.load_dit(files["paths"]["dit"], "auto", "auto", False, False)
    dit = dataclasses.replace(
        dit, options=dataclasses.replace(dit.options, cuda_graphs=True)
    )  # CPU: allowed here
    return {"dit": dit, "info": files, "capturer": capturer}


def _cond(seed=5):
    g = torch.Generator().manual_seed(seed)
    return StreamConditioning(segments=(PromptSegment(0, "a", torch.randn(1, 6, TEXT_DIM, generator=g)),))


def _sample(env, seed=3, width=None, window=-1, cond=None):
    info = env["info"]
    return core_bridge.sample(
        env["dit"], cond or _cond(), width=width or info["width"], height=info["height"], frames=1,
        preset="self-forcing-1.3b", seed=seed, window_frames=window, sink_frames=-1, chunks=CHUNKS,
    )  # fmt: skip


def _runner(env):
    return env["dit"].warm.pipeline.forward_runner


def test_second_job_replays_the_first_jobs_graphs_and_equals_a_cold_job(env):
    warm = env["dit"].warm
    first = _sample(env)
    pipe, runner = warm.pipeline, _runner(env)
    cache = pipe.state.cache
    captured, replayed = runner.captures, runner.replays
    assert captured == CHUNKS  # one graph per KV fill level
    kv = HeldMemory.named("KV cache")
    assert (
        len(kv) == 1 and kv[0].nbytes == pipe.held_nbytes() > cache.nbytes() > 0
    )  # + the prompt's cross K/V

    other_prompt = _sample(env, seed=4, cond=_cond(6))  # another prompt and seed: same geometry
    again = _sample(env)
    assert warm.builds == 1 and warm.reuses == 2
    assert warm.pipeline is pipe and pipe.state.cache is cache  # same KV cache buffers
    assert runner.captures == captured  # nothing captured again ...
    passes = 2 * (CHUNKS * 4 + CHUNKS - 1)  # 4 denoising steps + a context pass (not after the last)
    assert runner.replays - replayed == passes  # ... and every pass of both jobs replayed
    assert len(HeldMemory.named("KV cache")) == 1  # registered once
    torch.testing.assert_close(again, first, rtol=0, atol=0)
    assert not torch.equal(other_prompt, first)

    warm.drop()  # a cold pipeline for the same job: the same latents
    cold = _sample(env)
    assert warm.builds == 2
    torch.testing.assert_close(cold, first, rtol=0, atol=0)


def test_another_size_or_window_replaces_the_kept_state(env):
    warm = env["dit"].warm
    _sample(env)
    pipe = warm.pipeline
    small = pipe.state.cache
    wider = _sample(env, width=env["info"]["width"] + 16)
    assert wider.shape[-1] == (env["info"]["width"] + 16) // 8
    # another video size: the same pipeline, a new KV cache (the old one freed first), its size registered
    assert warm.builds == 1 and warm.pipeline is pipe and pipe.state.cache is not small
    big = pipe.state.cache.nbytes()
    kv = HeldMemory.named("KV cache")
    assert big > small.nbytes() and warm.handles() == (kv[-1],) and kv[-1].nbytes == pipe.held_nbytes() > big
    # another attention window: another preset, a new pipeline; the old one freed
    _sample(env, window=6)
    assert warm.builds == 2 and warm.pipeline is not pipe and pipe.state is None
    assert pipe.forward_runner.num_graphs == 0


def test_a_failed_job_drops_the_kept_pipeline(env, monkeypatch):
    warm = env["dit"].warm
    first = _sample(env)
    kept = warm.pipeline
    calls = {"n": 0}

    class Interrupted(Exception):
        pass

    def interrupt_in_chunk_two():
        calls["n"] += 1
        if calls["n"] == 6:
            raise Interrupted("stopped by the user")

    monkeypatch.setattr(rt, "check_interrupt", interrupt_in_chunk_two)
    with pytest.raises(Interrupted):
        _sample(env)
    assert warm.pipeline is None and kept.state is None  # half-written cache not kept
    assert warm.handles() == ()
    monkeypatch.setattr(rt, "check_interrupt", lambda: None)
    after = _sample(env)
    assert warm.builds == 2
    torch.testing.assert_close(after, first, rtol=0, atol=0)


def test_comfyui_unloading_frees_the_kept_pipeline(env):
    warm = env["dit"].warm
    first = _sample(env)
    kept = warm.pipeline
    HeldMemory.unload_all()  # "Free model and node cache" / memory for ComfyUI's own models
    assert warm.pipeline is None and kept.state is None
    again = _sample(env)
    assert warm.builds == 2 and len(HeldMemory.named("KV cache")) == 1  # registered again
    torch.testing.assert_close(again, first, rtol=0, atol=0)


def test_unloading_during_a_job_frees_it_when_the_job_ends(env, monkeypatch):
    warm = env["dit"].warm
    _sample(env)
    seen = {"n": 0}

    def unload_mid_job():
        seen["n"] += 1
        if seen["n"] == 3:
            assert warm.pipeline is not None
            HeldMemory.unload_all()
            assert warm.pipeline is not None  # the running job keeps it

    monkeypatch.setattr(rt, "check_interrupt", unload_mid_job)
    _sample(env)
    assert warm.pipeline is None


def test_not_kept_when_comfyui_cannot_be_told(env, monkeypatch):
    monkeypatch.setattr(rt, "hold_memory", lambda nbytes, device, on_release, name="": None)
    _sample(env)
    assert env["dit"].warm.pipeline is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_kept_rollout_replays_real_cuda_graphs(files, monkeypatch):
    comfy_runtime_outside(monkeypatch, QuietProgress)
    monkeypatch.setattr(rt, "torch_device", lambda: torch.device("cuda"))
    HeldMemory.held = []
    dit = core_bridge.load_dit(files["paths"]["dit"], "bf16", "auto", False, True)
    env = {"dit": dit, "info": files}
    first = _sample(env)
    runner = dit.warm.pipeline.forward_runner
    captured, replayed = runner.captures, runner.replays
    assert captured == CHUNKS
    again = _sample(env)
    assert dit.warm.reuses == 1 and runner.captures == captured
    assert runner.replays - replayed == CHUNKS * 4 + CHUNKS - 1
    torch.testing.assert_close(again, first, rtol=1e-3, atol=1e-3)
    kv = HeldMemory.named("KV cache")
    assert kv[0].device.type == "cuda" and kv[0].nbytes > 0
    dit.warm.drop()


def _cond_switch(switch_at):
    g = torch.Generator().manual_seed(5)
    segs = [PromptSegment(0, "a", torch.randn(1, 6, TEXT_DIM, generator=g))]
    if switch_at is not None:
        segs.append(PromptSegment(switch_at, "b", torch.randn(1, 6, TEXT_DIM, generator=g)))
    return StreamConditioning(segments=tuple(segs))


def _job(env, preset, switch_at=None, chunks=4):
    info = env["info"]
    return core_bridge.sample(
        env["dit"], _cond_switch(switch_at), width=info["width"], height=info["height"], frames=1, preset=preset,
        seed=3, window_frames=-1, sink_frames=-1, chunks=chunks,
    )  # fmt: skip


@pytest.mark.parametrize(
    "preset,switches",
    [
        ("rolling-forcing-1.3b", (None, None)),  # its own window cache (RollingWindowCache)
        ("krea-realtime-14b", (None, None)),  # KV recompute before every chunk
        ("longlive-1.3b", (2, None)),  # a prompt switch, then a job without
        ("longlive-1.3b", (None, 2)),  # and the other way round
    ],
)
def test_kept_pipeline_equals_a_cold_one_for_every_scheme(env, preset, switches):
    warm = env["dit"].warm
    _job(env, preset, switches[0])
    kept = _job(env, preset, switches[1])
    assert warm.builds == 1 and warm.reuses == 1
    kv = HeldMemory.named("KV cache")[-1]
    assert kv.nbytes == warm.pipeline.held_nbytes() > warm.pipeline.state.cache.nbytes()  # + the cross K/V
    warm.drop()
    cold = _job(env, preset, switches[1])
    torch.testing.assert_close(kept, cold, rtol=0, atol=0)


def test_whole_video_presets_are_not_kept(env):
    info = env["info"]
    g = torch.Generator().manual_seed(5)
    pos, neg = torch.randn(1, 6, TEXT_DIM, generator=g), torch.randn(1, 6, TEXT_DIM, generator=g)
    cond = StreamConditioning(segments=(PromptSegment(0, "a", pos, negative_context=neg),))
    core_bridge.sample(
        env["dit"], cond, width=info["width"], height=info["height"], frames=5, preset="wan2.1-t2v-1.3b",
        seed=3, window_frames=-1, sink_frames=-1, chunks=0,
    )  # fmt: skip
    assert env["dit"].warm.pipeline is None and HeldMemory.named("KV cache") == []


def test_a_failure_before_the_first_chunk_clears_the_in_use_mark(env, monkeypatch):
    warm = env["dit"].warm
    _sample(env)

    def broken(self, **kw):
        raise RuntimeError("rebind failed")

    monkeypatch.setattr(pipeline_mod.StreamingPipeline, "rebind", broken)
    with pytest.raises(RuntimeError, match="rebind failed"):
        _sample(env)
    assert warm.pipeline is None and not warm.registration.in_use
    HeldMemory.unload_all()  # nothing is left that ComfyUI cannot free
    assert warm.pipeline is None
