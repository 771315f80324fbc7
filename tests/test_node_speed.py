"""Load Wan DiT's ``speed`` (``nodes/speed.py``): how it combines with the old ``compile`` /
``cuda_graphs`` booleans, and the guarantee that a failing compile or CUDA-graph capture costs the
user one warning, not the video -- run on the CPU through the sampler's bridge with stand-ins (a
compiler backend that raises; the CPU graph capturer made to raise)."""

import dataclasses
import logging

import pytest
import torch
from cpu_stand_ins import CpuCapturer, QuietProgress, comfy_runtime_outside
from tiny_models import TEXT_DIM, make_tiny_models

from nodes import core_bridge
from nodes.payloads import PromptSegment, StreamConditioning
from nodes.speed import SpeedFlags, speed_flags

ALL_ON = SpeedFlags(cuda_graphs=True, compile=True, fuse_qkv=True, overlap_decode=True)
ALL_OFF = SpeedFlags(cuda_graphs=False, compile=False, fuse_qkv=False, overlap_decode=False)


@pytest.mark.parametrize(
    "speed, compile, graphs, device, triton, expected",
    [
        ("auto", False, False, "cuda", True, ALL_ON),
        ("auto", False, False, "cuda", False, dataclasses.replace(ALL_ON, compile=False)),  # no Triton
        ("auto", False, False, "cpu", True, ALL_OFF),  # the CPU: eager
        ("eager", False, False, "cuda", True, ALL_OFF),
        # a saved workflow's explicit True wins, whatever speed says
        ("eager", True, False, "cuda", True, dataclasses.replace(ALL_OFF, compile=True)),
        ("eager", False, True, "cuda", True, dataclasses.replace(ALL_OFF, cuda_graphs=True)),
        ("auto", True, False, "cpu", False, dataclasses.replace(ALL_OFF, compile=True)),
        ("auto", True, True, "cuda", False, ALL_ON),  # True compiles even where auto would not
    ],
)
def test_speed_and_the_old_booleans(speed, compile, graphs, device, triton, expected):
    got = speed_flags(speed, compile=compile, cuda_graphs=graphs, device_type=device, triton=triton)
    assert got == expected


def test_unknown_speed_is_refused():
    with pytest.raises(ValueError, match="speed must be one of auto / eager, got 'fast'"):
        speed_flags("fast", compile=False, cuda_graphs=False, device_type="cuda", triton=True)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    comfy_runtime_outside(mp, QuietProgress)
    root = tmp_path_factory.mktemp("models")
    info = make_tiny_models(root, families=("t2v",))["t2v"]
    info["path"] = str(root / info["files"]["dit"])
    yield info
    mp.undo()


def _cond():
    g = torch.Generator().manual_seed(5)
    return StreamConditioning(segments=(PromptSegment(0, "a", torch.randn(1, 6, TEXT_DIM, generator=g)),))


def _sample(info, dit, preset="self-forcing-1.3b"):
    return core_bridge.sample(
        dit, _cond(), width=info["width"], height=info["height"], frames=1, preset=preset, seed=3,
        window_frames=-1, sink_frames=-1, chunks=3,
    )  # fmt: skip


def _warnings(caplog, text):
    return [r for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage()]


def test_load_dit_speed_on_the_cpu_is_eager_and_refuses_unknown_values(env):
    dit = core_bridge.load_dit(env["path"], "auto", "auto", False, False, speed="auto")
    opts = dit.options
    assert (opts.cuda_graphs, opts.compile, opts.fuse_qkv, opts.overlap_decode) == (
        False,
        False,
        False,
        False,
    )
    with pytest.raises(ValueError, match="Load Wan DiT: speed must be one of"):
        core_bridge.load_dit(env["path"], "auto", "auto", False, False, speed="turbo")
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA GPU"):  # an explicit True, as before
        core_bridge.load_dit(env["path"], "auto", "auto", False, True, speed="eager")


def test_failing_compile_falls_back_to_eager_once_and_the_job_succeeds(env, caplog, monkeypatch):
    from wan_core.rollout import graphs

    eager = _sample(env, core_bridge.load_dit(env["path"], "auto", "auto", False, False, speed="eager"))
    attempts = []

    def failing_backend(gm, example_inputs):  # stands in for inductor without a C compiler / Triton
        attempts.append(1)
        raise RuntimeError("stand-in: the compiler is missing")

    real_compile = graphs.compile_blocks
    monkeypatch.setattr(
        graphs, "compile_blocks", lambda model, mode=None, dynamic=None, backend="inductor": real_compile(
            model, mode=mode, dynamic=dynamic, backend=failing_backend
        ),
    )  # fmt: skip
    torch._dynamo.reset()
    dit = core_bridge.load_dit(env["path"], "auto", "auto", True, False)  # a saved workflow's compile on
    assert dit.options.compile
    with caplog.at_level(logging.WARNING, logger="wan_core.rollout"):
        first = _sample(env, dit)
        dit.warm.drop()  # the next job builds a new pipeline on the same loaded DiT
        second = _sample(env, dit)
    torch._dynamo.reset()
    assert attempts, "the stand-in compiler was never asked"
    assert len(_warnings(caplog, "torch.compile failed")) == 1  # once for the model, not once per job
    torch.testing.assert_close(first, eager, rtol=0, atol=0)
    torch.testing.assert_close(second, eager, rtol=0, atol=0)


def test_failing_graph_capture_falls_back_to_eager_once_and_the_job_succeeds(env, caplog, monkeypatch):
    from wan_core.rollout import pipeline
    from wan_core.rollout.graphs import ChunkForward

    eager = _sample(env, core_bridge.load_dit(env["path"], "auto", "auto", False, False, speed="eager"))
    capturers = []

    def cpu_chunk_forward(enabled=True, **kw):  # the CPU capturer, made to raise as a failed capture
        capturers.append(CpuCapturer(fail=True))
        return ChunkForward(enabled=enabled, capturer=capturers[-1], device_types=("cpu",))

    monkeypatch.setattr(pipeline, "ChunkForward", cpu_chunk_forward)
    loaded = core_bridge.load_dit(env["path"], "auto", "auto", False, False)
    # what speed auto gives on a GPU (load_dit refuses CUDA graphs on this CPU)
    dit = dataclasses.replace(loaded, options=dataclasses.replace(loaded.options, cuda_graphs=True))
    with caplog.at_level(logging.WARNING, logger="wan_core.rollout"):
        out = _sample(env, dit)
    assert [c.failures for c in capturers] == [1]  # a capture was tried, failed once
    assert len(_warnings(caplog, "CUDA graph capture failed")) == 1
    torch.testing.assert_close(out, eager, rtol=0, atol=0)
