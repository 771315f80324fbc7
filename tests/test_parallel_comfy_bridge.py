"""The Streaming AR Sampler's multi-GPU path (``nodes.core_bridge.sample(gpus=2)``) with 2 CPU workers
(gloo) on tiny models from files: the same latents as the in-process path, a preview and a progress
tick per chunk, prompt switches passed through, the worker pool reused across runs and dropped on
interrupt; bad settings fail before any worker starts."""

import dataclasses

import pytest
import torch
from cpu_stand_ins import comfy_runtime_outside
from tiny_models import TEXT_DIM, make_tiny_models

from nodes import comfy_runtime as rt
from nodes import core_bridge, multi_gpu
from nodes.payloads import PromptSegment, StreamConditioning


class _Interrupted(Exception):
    pass


class _FakeProgress:
    """Stands in for ComfyUI's progress bar / preview events (``comfy_runtime.StepProgress``)."""

    events: list = []

    def __init__(self, num_chunks, steps_per_chunk, node_id, prompt_id):
        self.num_chunks, self.steps_per_chunk = num_chunks, steps_per_chunk

    def step(self, chunk, step):
        self.events.append(("step", chunk, step))

    def chunk_frames(self, chunk, frames, fps):
        self.events.append(("frames", chunk, tuple(frames.shape)))


@pytest.fixture(scope="module")
def comfy_outside(tmp_path_factory):
    """ComfyUI's runtime services replaced for a plain process (CPU device, no server)."""
    mp = pytest.MonkeyPatch()
    comfy_runtime_outside(mp, _FakeProgress)
    root = tmp_path_factory.mktemp("models")
    made = make_tiny_models(root, families=("t2v", "i2v"))
    for fam in made.values():
        fam["paths"] = {role: str(root / rel) for role, rel in fam["files"].items()}
    info = made["t2v"]
    info["i2v"] = made["i2v"]
    yield mp, info, info["paths"]
    multi_gpu.close_all_pools()
    mp.undo()


def _conditioning():
    g = torch.Generator().manual_seed(11)
    first, second = torch.randn(1, 5, TEXT_DIM, generator=g), torch.randn(1, 7, TEXT_DIM, generator=g)
    return StreamConditioning(segments=(PromptSegment(0, "a", first), PromptSegment(2, "b", second)))


def _run(info, files, cond, **kw):
    dit = core_bridge.load_dit(files["dit"], "auto", "auto", False, False)
    taehv = core_bridge.load_taehv(files["taehv"], "auto")
    _FakeProgress.events = []
    latent = core_bridge.sample(
        dit, cond, width=info["width"], height=info["height"], frames=1, preset=info["preset"], seed=4,
        window_frames=-1, sink_frames=-1, chunks=3, preview_vae=taehv, **kw,
    )  # fmt: skip
    return latent, list(_FakeProgress.events)


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.timeout(300)
def test_multi_gpu_path_equals_in_process(comfy_outside):
    mp, info, files = comfy_outside
    cond = _conditioning()
    single, single_events = _run(info, files, cond)
    multi, multi_events = _run(info, files, cond, gpus=2, context_parallel="ring")
    assert multi.shape == single.shape and multi.shape[2] == 9  # 3 chunks x 3 latent frames
    assert _rel(multi, single) <= 1e-5
    # without the switch at chunk 2 the last chunk differs: the switch reached the workers
    no_switch = StreamConditioning(segments=cond.segments[:1])
    other, _ = _run(info, files, no_switch, gpus=2, context_parallel="ring")
    assert _rel(other[:, :, :6], single[:, :, :6]) <= 1e-5 and _rel(other[:, :, 6:], single[:, :, 6:]) > 1e-3
    # one progress tick (the chunk's last step) and one preview per chunk, in order
    frames_single = [e for e in single_events if e[0] == "frames"]
    assert [e for e in multi_events if e[0] == "frames"] == frames_single and len(frames_single) == 3
    last_step = max(e[2] for e in single_events if e[0] == "step")
    last_steps = [e for e in single_events if e[0] == "step" and e[2] == last_step]
    assert [e for e in multi_events if e[0] == "step"] == last_steps
    # the pool (and its loaded models) is kept for the next run; an interrupt stops and drops it
    pool = multi_gpu._POOLS[(2, "cpu")]
    assert not pool.closed

    def interrupt():
        raise _Interrupted()

    mp.setattr(rt, "check_interrupt", interrupt)
    with pytest.raises(_Interrupted):
        _run(info, files, cond, gpus=2, context_parallel="ring")
    mp.setattr(rt, "check_interrupt", lambda: None)
    assert pool.closed and (2, "cpu") not in multi_gpu._POOLS
    assert all(not p.is_alive() for p in pool._procs)


@pytest.mark.timeout(300)
def test_multi_gpu_image_conditioning_equals_in_process(comfy_outside):
    """Wan2.1 I2V (CFG with a negative prompt): the workers load the Wan VAE from its file and take the
    CLIP features computed in this process (random here: the tiny CLIP file of ``tiny_models`` is
    28 px, while I2V Control Encode feeds 224 px)."""
    _, info, _ = comfy_outside
    i2v = info["i2v"]
    files = i2v["paths"]
    g = torch.Generator().manual_seed(12)
    prompt = PromptSegment(
        0,
        "a",
        torch.randn(1, 5, TEXT_DIM, generator=g),
        negative_context=torch.randn(1, 4, TEXT_DIM, generator=g),
    )
    vae = core_bridge.load_vae(files["vae"], "auto")
    image = torch.rand(1, i2v["height"], i2v["width"], 3, generator=g)
    cond = core_bridge.encode_image_condition(StreamConditioning(segments=(prompt,)), vae, image, None)
    clip_features = torch.randn(1, 257, 768, generator=g)  # [1, 257, clip_dim] as from I2V Control Encode
    cond = cond.with_image(dataclasses.replace(cond.image, clip_features=clip_features))
    dit = core_bridge.load_dit(files["dit"], "auto", "auto", False, False)
    kw = dict(
        width=i2v["width"], height=i2v["height"], frames=5, preset=i2v["preset"], seed=2,
        window_frames=-1, sink_frames=-1, chunks=0,
    )  # fmt: skip
    single = core_bridge.sample(dit, cond, **kw)
    multi = core_bridge.sample(dit, cond, gpus=2, context_parallel="ring", **kw)
    assert multi.shape == single.shape and multi.shape[2] == 2
    assert _rel(multi, single) <= 1e-5


def test_bad_multi_gpu_settings_fail_before_starting_workers(comfy_outside, monkeypatch):
    _, info, files = comfy_outside
    # the tiny DiT has 1 attention head: Ulysses cannot split it over 2 GPUs
    with pytest.raises(ValueError, match="context_parallel 'ring'"):
        _run(info, files, _conditioning(), gpus=2, context_parallel="ulysses")
    with pytest.raises(ValueError, match="'ulysses' or 'ring'"):
        _run(info, files, _conditioning(), gpus=2, context_parallel="tensor")
    with pytest.raises(ValueError, match="gpus must be 1 or more"):
        _run(info, files, _conditioning(), gpus=0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match="gpus is 2, but this machine has 1 CUDA GPU"):
        multi_gpu.pool_device(2, torch.device("cuda", 0))
    assert multi_gpu.pool_device(2, torch.device("cpu")) == "cpu"


_KILLED_HOST = """
import sys, time
sys.path.insert(0, {root!r})
from wan_core.parallel.worker_pool import ContextParallelWorkerPool
pool = ContextParallelWorkerPool(2, device="cpu", import_main=False)
print(*[p.pid for p in pool._procs], flush=True)
time.sleep(600)
"""


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.timeout(120)
def test_workers_exit_when_the_host_process_is_killed():
    """A ComfyUI killed with SIGKILL runs no cleanup: its workers notice on their own and exit."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    host = subprocess.Popen(
        [sys.executable, "-c", _KILLED_HOST.format(root=root)], stdout=subprocess.PIPE, text=True
    )
    try:
        pids = [int(x) for x in host.stdout.readline().split()]
        assert len(pids) == 2 and all(_running(p) for p in pids)
    finally:
        host.kill()
        host.wait()
    deadline = time.monotonic() + 60
    while any(_running(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = [p for p in pids if _running(p)]
    for pid in left:  # leave no orphans behind when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not left, f"workers {left} outlived the killed host process"
