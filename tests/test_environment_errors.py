"""Environment errors before anything loads: device names (``wan_core.devices``), FP8 math on the CPU
(refused: no FP8 hardware), and out-of-memory advice that fits what was being allocated, in GPU memory
or in RAM, with chunks counted from 1 (``wan_core.memory``)."""

import pytest
import torch
from tiny_models import make_tiny_models

import wan_core.fp8_linear as FL
import wan_core.rollout.loading as loading
from wan_core.__main__ import main
from wan_core.devices import resolve_device
from wan_core.memory import (
    DIT_LOAD_FIXES,
    FREE_RAM,
    TEXT_LOAD_FIXES,
    Allocation,
    OutOfMemory,
    chunk_label,
    describe_load,
    describe_pipeline_step,
    explain_oom,
)

RAM_OOM = (
    "[enforce fail at alloc_cpu.cpp:121] DefaultCPUAllocator: not enough memory: you tried to allocate 9 GB"
)
GPU_OOM = "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 23.99 GiB"


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    make_tiny_models(d, families=("t2v",))
    return d


def _one_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def test_device_names():
    assert resolve_device("cpu") == torch.device("cpu") and resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(
        ValueError, match=r"--device 'banana' is not a device name: use auto, cpu, cuda or cuda:N"
    ):
        resolve_device("banana")
    with pytest.raises(ValueError, match="mps devices are not supported"):
        resolve_device("mps")
    with pytest.raises(ValueError, match=r"^device 'cuda:x' is not a device name"):
        resolve_device("cuda:x", option="device")


def test_an_absent_gpu_is_refused_with_what_this_machine_has(monkeypatch):
    _one_gpu(monkeypatch)
    assert resolve_device("cuda:0") == torch.device("cuda", 0) and resolve_device("cuda") == torch.device(
        "cuda"
    )
    with pytest.raises(
        ValueError, match=r"--device 'cuda:7': there is no such GPU, this machine has cuda:0 and cpu"
    ):
        resolve_device("cuda:7")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(
        ValueError,
        match=r"--device 'cuda': torch sees no CUDA GPU \(CUDA_VISIBLE_DEVICES=''\); use --device cpu",
    ):
        resolve_device("cuda")


def _no_loading(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("model files were looked up before the environment was checked")

    monkeypatch.setattr(loading, "resolve_files", refuse)
    monkeypatch.setattr(loading, "build_pipeline", refuse)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--device", "banana"], "error: --device 'banana' is not a device name"),
        (["--device", "cuda:7"], "error: --device 'cuda:7': "),
        (["--fp8-linear", "--device", "cpu"], "error: FP8 linear math needs a GPU with FP8 tensor cores"),
        (["--out", "{tmp}/v.gif"], "the extension .gif is not a video format this writes"),  # VideoRequest
        (["--out", "{tmp}/file.txt/v.mp4"], "file.txt is a file, not a folder"),
    ],
)
def test_cli_refuses_a_bad_environment_before_loading(
    models_dir, tmp_path, monkeypatch, capsys, flags, message
):
    if "cuda:7" in flags and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    monkeypatch.delenv(FL.CPU_EMULATION_ENV, raising=False)
    monkeypatch.setattr(FL, "_SUPPORTED", {})
    _no_loading(monkeypatch)
    (tmp_path / "file.txt").write_text("x")
    before = sorted(p.name for p in tmp_path.iterdir())
    flags = [f.replace("{tmp}", str(tmp_path)) for f in flags]
    rc = main(["generate", "--preset", "self-forcing-1.3b", "--prompt", "a fox", "--models-dir", str(models_dir),
               "--out", str(tmp_path / "v.mp4"), *flags])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_fp8_math_on_the_cpu_is_refused_unless_emulation_is_asked_for(monkeypatch):
    monkeypatch.setattr(FL, "_SUPPORTED", {})
    monkeypatch.delenv(FL.CPU_EMULATION_ENV, raising=False)
    with pytest.raises(
        ValueError, match=r"FP8 tensor cores.*on the CPU torch would only emulate.*precision bf16"
    ):
        FL.check_fp8_support("cpu")
    monkeypatch.setenv(FL.CPU_EMULATION_ENV, "1")  # the CPU tests' switch: the emulated kernels run
    assert FL.check_fp8_support("cpu") in ("rowwise", "tensorwise")
    monkeypatch.delenv(FL.CPU_EMULATION_ENV)
    with pytest.raises(
        ValueError, match="FP8 tensor cores"
    ):  # a probe that passed before does not let it through
        FL.check_fp8_support("cpu")


# -- out-of-memory advice by allocation -------------------------------------------------------------------


def _fail(message):
    def step(*a, **k):
        raise RuntimeError(message) if "DefaultCPUAllocator" in message else torch.OutOfMemoryError(message)

    return step


class _Pipe:
    device = torch.device("cpu")
    num_chunks = 5

    def oom_fixes(self):
        return [
            "a smaller video (now 832x480): the KV cache and every pass's activations grow with it",
            "a shorter attention window: 3 sink + 9 window latent frames hold 4.10 GiB of KV cache (CLI --window / --sink)",
            "fp8 DiT weights: an *_fp8_scaled.safetensors file (Load Wan DiT precision fp8) halve the DiT's memory",
            "CUDA graphs off (Load Wan DiT cuda_graphs; CLI --no-cuda-graphs): their pool holds a pass",
            "fewer other models or programs on this GPU (ComfyUI: Free model and node cache)",
        ]


def test_out_of_ram_in_the_kv_cache_advises_window_and_size_not_gpu_settings():
    step = explain_oom(describe_pipeline_step("allocating the video's KV cache", Allocation.KV_CACHE))(
        _fail(RAM_OOM)
    )
    with pytest.raises(OutOfMemory) as info:
        step(_Pipe())
    text = str(info.value)
    assert text.startswith("Out of RAM (host memory) while allocating the video's KV cache (the KV cache).")
    fixes = [ln[4:] for ln in text.splitlines() if ln.startswith("  - ")]
    assert fixes[0] == FREE_RAM
    assert fixes[1].startswith("a smaller video (now 832x480)") and "hold 4.10 GiB of KV cache" in fixes[2]
    assert not any("CUDA" in f or "GPU" in f for f in fixes)  # GPU-only advice dropped


def test_out_of_memory_while_generating_counts_chunks_from_one():
    step = explain_oom(describe_pipeline_step("generating chunk {chunk}", Allocation.ACTIVATIONS))(
        _fail(GPU_OOM)
    )
    with pytest.raises(OutOfMemory) as info:
        step(_Pipe(), 0)
    text = str(info.value)
    assert (
        "while generating chunk 1/5 (a pass's activations)." in text and "Tried to allocate 2.00 GiB" in text
    )
    assert "CUDA graphs off" in text  # on the GPU every fix stays
    assert chunk_label(4, 5) == "5/5" and chunk_label(0) == "1"


def test_out_of_ram_while_loading_advises_fp8_and_a_smaller_model_not_the_cpu():
    load = explain_oom(describe_load("DiT", DIT_LOAD_FIXES))(_fail(RAM_OOM))
    with pytest.raises(OutOfMemory) as info:
        load("/m/wan2.1_t2v_14B_bf16.safetensors", torch.bfloat16, "cpu")
    text = str(info.value)
    assert text.startswith(
        "Out of RAM (host memory) while loading the DiT /m/wan2.1_t2v_14B_bf16.safetensors"
    )
    assert "(model weights)." in text and "fp8 weights" in text and "the 1.3B instead of a 14B" in text
    assert "text encoder on the CPU" not in text  # that would move ~11 GB more into RAM
    load = explain_oom(describe_load("UMT5 text encoder", TEXT_LOAD_FIXES))(_fail(GPU_OOM))
    with pytest.raises(OutOfMemory) as info:  # in GPU memory: offloading it to the CPU is the first fix
        load("/m/umt5.safetensors", None, "cuda:0")
    assert "Out of memory on cuda:0" in str(info.value) and "text encoder on the CPU" in str(info.value)


def test_out_of_ram_with_only_gpu_advice_falls_back_to_the_allocations_ram_advice():
    step = explain_oom(
        lambda: (
            "decoding 12 frames",
            "cuda:0",
            ["fewer other models or programs on this GPU"],
            Allocation.DECODE,
        )
    )(_fail(RAM_OOM))
    with pytest.raises(OutOfMemory) as info:
        step()
    text = str(info.value)
    assert "TAEHV decoder" in text and "chunk_frames" in text and "this GPU" not in text
