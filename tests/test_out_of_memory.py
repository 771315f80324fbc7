"""Running out of GPU memory gives an error that names the step, torch's numbers and the settings that
fit it, frees what the failed step held, and leaves no half-written state or file behind: in the
loaders, the streaming pipeline, the ComfyUI sampler and decoder bridge, and the CLI. The OOM is
simulated on CPU (a ``torch.OutOfMemoryError`` raised where CUDA would raise it)."""

import gc
import weakref

import pytest
import torch
from cpu_stand_ins import FreedMemory, HeldMemory, QuietProgress, comfy_runtime_outside
from tiny_models import TEXT_DIM, tiny_family_files

import wan_core.dit.loader as dit_loader
from nodes import core_bridge
from nodes.payloads import PromptSegment, StreamConditioning
from wan_core.__main__ import main
from wan_core.dit.kv_cache import RollingKVCache, planned_kv_nbytes
from wan_core.memory import OutOfMemory, explain_oom, is_out_of_memory
from wan_core.rollout.pipeline import StreamingPipeline
from wan_core.vae.causal_vae import WanCausalVAE

TORCH_OOM = (
    "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 23.99 GiB of which "
    "1.12 GiB is free. Of the allocated memory 21.50 GiB is allocated by PyTorch"
)


def _oom():
    return torch.OutOfMemoryError(TORCH_OOM)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return tiny_family_files(tmp_path_factory.mktemp("models"))


def test_explained_error_is_a_torch_oom_with_the_step_the_numbers_and_the_fixes():
    held = {}

    def describe(n):
        return f"doing step {n}", "cuda:0", ["fix one", "fix two"]

    @explain_oom(describe)
    def step(n):
        big = torch.ones(1000)
        held["ref"] = weakref.ref(big)
        raise _oom()

    with pytest.raises(torch.OutOfMemoryError) as info:  # still what OOM handlers catch (ComfyUI's too)
        step(3)
    e = info.value
    assert isinstance(e, OutOfMemory)
    text = str(e)
    assert "Out of memory on cuda:0 while doing step 3." in text
    assert "Tried to allocate 2.00 GiB" in text and "1.12 GiB is free" in text
    assert "  - fix one" in text and "  - fix two" in text
    assert e.__context__ is None and e.__cause__ is None  # no chained exception holding the frames
    gc.collect()
    assert held["ref"]() is None  # the failed step's tensors are gone although the error lives on


def test_other_errors_pass_through_and_alloc_failures_count_as_oom():
    @explain_oom(lambda: ("x", "cpu", []))
    def bad():
        raise ValueError("not memory")

    with pytest.raises(ValueError, match="not memory"):
        bad()
    assert is_out_of_memory(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling cublasCreate"))
    assert is_out_of_memory(
        RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 9 GB")
    )
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


def test_loader_oom_names_the_file_and_fp8(files, monkeypatch):
    def fail(*a, **k):
        raise _oom()

    monkeypatch.setattr(dit_loader, "_load_single", fail)
    with pytest.raises(OutOfMemory) as info:
        dit_loader.load_dit(files["paths"]["dit"], dtype=torch.bfloat16, device="cpu")
    text = str(info.value)
    assert "loading the DiT" in text and files["paths"]["dit"] in text and "torch.bfloat16" in text
    assert "fp8_scaled" in text and "--text-encoder-device cpu" in text


def _pipeline(files, **kw):
    from wan_core.rollout.loading import build_pipeline
    from wan_core.rollout.presets import get_preset

    return build_pipeline(get_preset(files["preset"]), files["paths"], device="cpu", decoder="none", **kw)


def test_planned_cache_bytes_match_the_allocated_cache(files):
    pipe = _pipeline(files)
    for frames in (9, 21):
        planned = pipe.planned_cache_nbytes(files["height"], files["width"], num_frames=frames)
        pipe.initialize_cache(
            torch.randn(1, 6, TEXT_DIM), height=files["height"], width=files["width"], num_frames=frames
        )
        cache = pipe.state.cache
        assert (
            planned
            == cache.kv_nbytes()
            == sum(t.numel() * t.element_size() for t in [*cache.k, *cache.v])
            > 0
        )
    spec = dict(
        num_layers=2, batch=1, frame_tokens=6, num_heads=2, head_dim=4, window_frames=5, sink_frames=2
    )
    rel = RollingKVCache(**spec, dtype=torch.float32, rope="relative")
    assert planned_kv_nbytes(RollingKVCache, dict(**spec, dtype=torch.float32, rope="relative")) == sum(
        t.numel() * t.element_size() for t in [*rel.k, *rel.v]
    )


def test_pipeline_oom_mid_video_explains_and_frees_the_state(files, monkeypatch):
    pipe = _pipeline(files)
    pipe.initialize_cache(
        torch.randn(1, 6, TEXT_DIM), height=files["height"], width=files["width"], num_frames=21
    )
    kv = pipe.state.cache.nbytes()
    pipe.generate(0)
    pipe.finalize(0)
    real = StreamingPipeline._run_chunk

    def run_chunk(self, *a, **k):
        if self.state.generated == 1:
            raise _oom()
        return real(self, *a, **k)

    monkeypatch.setattr(StreamingPipeline, "_run_chunk", run_chunk)
    with pytest.raises(OutOfMemory) as info:
        pipe.generate(1)
    text = str(info.value)
    assert (
        "while generating chunk 2/2 (a pass's activations)." in text
    )  # counted from 1 and "Tried to allocate 2.00 GiB" in text
    assert f"now {files['width']}x{files['height']}" in text
    win = pipe.preset.window_frames if pipe.preset.window_frames else "?"
    assert f"window latent frames hold {kv / 2**30:.2f} GiB of KV cache" in text and str(win) in text
    assert "fp8_scaled" in text and "Free model and node cache" in text
    assert pipe.state is None  # the half-written cache is not continued
    with pytest.raises(RuntimeError, match="initialize_cache"):
        pipe.generate(2)


def test_node_sampler_makes_room_first_and_drops_the_kept_rollout_on_oom(files, monkeypatch):
    comfy_runtime_outside(monkeypatch, QuietProgress)
    HeldMemory.held = []
    dit = core_bridge.load_dit(files["paths"]["dit"], "auto", "auto", False, False)
    g = torch.Generator().manual_seed(5)
    cond = StreamConditioning(segments=(PromptSegment(0, "a", torch.randn(1, 6, TEXT_DIM, generator=g)),))

    def sample(width=files["width"]):
        return core_bridge.sample(
            dit, cond, width=width, height=files["height"], frames=1, preset="self-forcing-1.3b", seed=1,
            window_frames=-1, sink_frames=-1, chunks=3,
        )  # fmt: skip

    sample()
    need = dit.warm.pipeline.state.cache.kv_nbytes()
    # room for the KV cache asked before allocating it, without unloading the DiT that is about to run
    assert FreedMemory.calls == [(need, dit.device, dit.resident.handles())] and dit.resident.handles()
    sample()
    assert len(FreedMemory.calls) == 1  # the kept cache: nothing new to allocate
    kept = dit.warm.handles()
    sample(width=files["width"] + 16)  # a bigger cache: only the difference, the kept hold protected
    (extra, _, keep) = FreedMemory.calls[-1]
    assert extra == dit.warm.pipeline.state.cache.kv_nbytes() - need and len(kept) == 1
    assert keep == kept + dit.resident.handles()

    real = StreamingPipeline._run_chunk
    calls = {"n": 0}

    def run_chunk(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 7:
            raise _oom()
        return real(self, *a, **k)

    monkeypatch.setattr(StreamingPipeline, "_run_chunk", run_chunk)
    with pytest.raises(OutOfMemory, match="while generating chunk 2/"):  # counted from 1
        sample()
    assert dit.warm.pipeline is None  # nothing half-written kept for the next job


def test_node_decode_oom_suggests_smaller_chunks_and_taehv(files, monkeypatch):
    comfy_runtime_outside(monkeypatch, QuietProgress)
    vae = core_bridge.load_vae(files["paths"]["vae"], "auto")

    def fail(self, *args, **kwargs):
        raise _oom()

    monkeypatch.setattr(WanCausalVAE, "decode_chunk", fail)
    latent = torch.randn(1, 16, 6, files["height"] // 8, files["width"] // 8)
    with pytest.raises(OutOfMemory) as info:
        core_bridge.decode_latent(vae, latent, chunk_frames=4)
    text = str(info.value)
    assert "decoding a (1, 16, 6," in text and "chunk_frames 2 (now 4)" in text and "TAEHV" in text


def test_cli_oom_is_a_clear_error_and_leaves_no_file(files, tmp_path, monkeypatch, capsys):
    out = tmp_path / "fox.mp4"
    real = StreamingPipeline._run_chunk

    def run_chunk(self, *a, **k):
        if self.state.generated == 1:
            raise _oom()
        return real(self, *a, **k)

    monkeypatch.setattr(StreamingPipeline, "_run_chunk", run_chunk)
    rc = main(
        [
            "generate", "--preset", "self-forcing-1.3b", "--prompt", "a fox", "--models-dir", str(files["root"]),
            "--frames", "21", "--height", "32", "--width", "48", "--out", str(out), "--decoder", "taehv",
        ]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2
    # the first pass after chunk 0 is its context pass (finalize), which runs before chunk 1's steps
    assert (
        "error: Out of memory on cpu while writing chunk 1/" in err and "'s clean K/V (context pass)" in err
    )
    assert "--window" in err and "Tried to allocate 2.00 GiB" in err
    assert "--decoder taehv" not in err  # already the TAEHV
    assert not out.exists()


def test_rolling_forcing_oom_is_explained_too(files, monkeypatch):
    from wan_core.rollout.loading import build_pipeline
    from wan_core.rollout.presets import get_preset

    pipe = build_pipeline(get_preset("rolling-forcing-1.3b"), files["paths"], device="cpu", decoder="none")
    h, w = files["height"], files["width"]
    planned = pipe.planned_cache_nbytes(h, w, num_chunks=4)
    pipe.initialize_cache(torch.randn(1, 6, TEXT_DIM), height=h, width=w, num_chunks=4)
    assert planned == pipe.state.cache.kv_nbytes() > 0  # its own window cache, planned right
    monkeypatch.setattr(
        StreamingPipeline, "_guard_compile", lambda self, fn, *a, **k: (_ for _ in ()).throw(_oom())
    )
    with pytest.raises(OutOfMemory, match="while generating chunk 1/") as info:
        pipe.generate(0)
    assert "shorter attention window" in str(info.value) and pipe.state is None


def test_advice_that_fails_still_gives_the_oom_and_cleans_up():
    cleaned = []

    def describe():
        raise AttributeError("no such field")

    @explain_oom(describe, cleanup=lambda: cleaned.append(1))
    def step():
        raise _oom()

    with pytest.raises(OutOfMemory) as info:
        step()
    assert (
        cleaned == [1]
        and "Tried to allocate 2.00 GiB" in str(info.value)
        and "no such field" in str(info.value)
    )


def test_cli_reports_a_cpu_allocation_failure_as_out_of_memory(files, tmp_path, monkeypatch, capsys):
    import wan_core.rollout.loading as loading

    def fail(*a, **k):
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:121] DefaultCPUAllocator: not enough memory: you tried to allocate 9 GB"
        )

    monkeypatch.setattr(loading, "build_pipeline", fail)
    rc = main(
        [
            "generate", "--preset", "self-forcing-1.3b", "--prompt", "a fox", "--models-dir", str(files["root"]),
            "--frames", "21", "--height", "32", "--width", "48", "--out", str(tmp_path / "x.mp4"),
        ]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "not enough memory" in err and "--text-encoder-device cpu" in err


def test_a_cpu_allocation_failure_is_reported_as_ram():
    @explain_oom(lambda: ("decoding", "cuda:0", ["fewer latent frames per decode step"]))
    def step():
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:121] DefaultCPUAllocator: not enough memory: 9 GB")

    with pytest.raises(OutOfMemory) as info:
        step()
    text = str(info.value)
    assert text.startswith("Out of RAM (host memory) while decoding.") and "cuda:0" not in text
    assert "close other programs" in text


def test_umt5_encoding_oom_suggests_the_cpu_and_fp8(files, monkeypatch):
    from wan_core.text import encode_prompts_detailed, load_tokenizer, load_umt5

    path = files["paths"]["text_encoder"]
    enc, tok = load_umt5(path, device="cpu"), load_tokenizer(path)

    def fail(*a, **k):
        raise _oom()

    monkeypatch.setattr(type(enc), "forward", fail)
    with pytest.raises(OutOfMemory) as info:
        encode_prompts_detailed(enc, tok, ["a fox", "a wolf"])
    text = str(info.value)
    assert "encoding 2 prompt(s) with UMT5" in text and "device cpu" in text and "fp8" in text
