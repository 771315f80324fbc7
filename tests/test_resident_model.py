"""Loaded DiTs and VAEs are models in ComfyUI's model management (``nodes/resident_model.py``): it may
offload them to the CPU when its own models need the room, and the pack moves them back before running
them. On CPU (with a stand-in of the model management) the bookkeeping is checked end to end; that a
move really moves every tensor of every model kind is checked structurally (``Module.to`` moves
parameters and buffers only); the GPU round trip is a GPU test."""

import pytest
import torch
from cpu_stand_ins import FreedMemory, HeldMemory, QuietProgress, comfy_runtime_outside
from tiny_models import TEXT_DIM, tiny_family_files

from nodes import comfy_runtime as rt
from nodes import core_bridge
from nodes.payloads import PromptSegment, StreamConditioning
from nodes.resident_model import ResidentModel, module_nbytes


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return tiny_family_files(tmp_path_factory.mktemp("models"))


@pytest.fixture
def env(files, monkeypatch):
    comfy_runtime_outside(monkeypatch, QuietProgress)
    HeldMemory.held = []
    return {
        "dit": core_bridge.load_dit(files["paths"]["dit"], "auto", "auto", False, False),
        "taehv": core_bridge.load_taehv(files["paths"]["taehv"], "auto"),
        "info": files,
    }


def _cond():
    g = torch.Generator().manual_seed(5)
    return StreamConditioning(segments=(PromptSegment(0, "a", torch.randn(1, 6, TEXT_DIM, generator=g)),))


def _sample(env, preview=True):
    info = env["info"]
    return core_bridge.sample(
        env["dit"], _cond(), width=info["width"], height=info["height"], frames=1, preset="self-forcing-1.3b",
        seed=3, window_frames=-1, sink_frames=-1, chunks=3, preview_vae=env["taehv"] if preview else None,
    )  # fmt: skip


def test_loaded_models_are_registered_with_their_size(env):
    (dit,) = HeldMemory.named("Load Wan DiT")
    (tae,) = HeldMemory.named("Load TAEHV")
    assert dit.nbytes == module_nbytes(env["dit"].model) > 0 and dit.device == env["dit"].device
    assert tae.nbytes == module_nbytes(env["taehv"].model) > 0


def test_offloaded_between_jobs_and_moved_back_before_the_next(env):
    first = _sample(env)
    dit = env["dit"]
    assert dit.warm.pipeline is not None
    HeldMemory.unload_all()  # ComfyUI needs the room (or "Free model and node cache")
    assert dit.resident.offloaded and env["taehv"].resident.offloaded and dit.resident.offloads == 1
    assert dit.warm.pipeline is None  # its CUDA graphs read the weights by address: dropped
    FreedMemory.calls = []
    again = _sample(env)
    assert not dit.resident.offloaded and not env["taehv"].resident.offloaded
    # room made for each model before moving it back, keeping the other model of the job loaded
    calls = {c[0]: c[2] for c in FreedMemory.calls}
    assert module_nbytes(dit.model) in calls and module_nbytes(env["taehv"].model) in calls
    assert calls[module_nbytes(env["taehv"].model)] == dit.resident.handles() != ()  # the DiT stays loaded
    assert len(HeldMemory.named("Load Wan DiT")) == 1 and len(HeldMemory.named("Load TAEHV")) == 1
    torch.testing.assert_close(again, first, rtol=0, atol=0)


def test_an_unload_during_the_job_waits_for_its_end(env, monkeypatch):
    dit = env["dit"]
    first = _sample(env)
    seen = {"n": 0}

    def unload_mid_job():
        seen["n"] += 1
        if seen["n"] == 2:
            HeldMemory.unload_all()
            assert not dit.resident.offloaded  # still running on it

    monkeypatch.setattr(rt, "check_interrupt", unload_mid_job)
    during = _sample(env)
    assert dit.resident.offloaded and dit.warm.pipeline is None  # carried out when the job ended
    # after the job (not inside ComfyUI's loop) the kept rollout's registration goes too: no stale entry
    assert dit.warm.handles() == () and dit.warm.registration._retired == []
    torch.testing.assert_close(during, first, rtol=0, atol=0)


def test_decode_node_moves_an_offloaded_vae_back(env, files):
    vae = core_bridge.load_vae(files["paths"]["vae"], "auto")
    latent = torch.randn(1, 16, 3, files["height"] // 8, files["width"] // 8)
    before = core_bridge.decode_latent(vae, latent, chunk_frames=2)
    HeldMemory.unload_all()
    assert vae.resident.offloaded
    after = core_bridge.decode_latent(vae, latent, chunk_frames=2)
    assert not vae.resident.offloaded
    torch.testing.assert_close(after, before, rtol=0, atol=0)


def _tensor_attributes(model: torch.nn.Module) -> list[str]:
    """Tensors a module holds outside its parameters and buffers (``Module.to`` would not move them);
    per-device caches (a dict keyed by device, e.g. the RoPE tables) are fine."""
    found = []
    for name, mod in model.named_modules():
        for attr, value in vars(mod).items():
            if attr in ("_parameters", "_buffers", "_modules"):
                continue
            if isinstance(value, torch.Tensor):
                found.append(f"{name}.{attr}")
            elif isinstance(value, (list, tuple)) and any(isinstance(v, torch.Tensor) for v in value):
                found.append(f"{name}.{attr}")
            elif isinstance(value, dict) and value and not all(isinstance(k, torch.device) for k in value):
                if any(isinstance(v, torch.Tensor) for v in value.values()):
                    found.append(f"{name}.{attr}")
    return found


def test_every_model_kind_moves_whole_with_module_to(files):
    from dataclasses import replace

    from wan_core.dit import WanDiT
    from wan_core.dit.config import PRESETS
    from wan_core.dit.fuse import fuse_qkv_
    from wan_core.fp8_linear import fp8_linears_
    from wan_core.quant import swap_fp8_linears
    from wan_core.vae.taehv import TAEHV
    from wan_core.vae.wan21 import WanVAE21
    from wan_core.vae.wan22 import WanVAE22

    cfg = replace(PRESETS["wan2.1-t2v-1.3b"], dim=64, ffn_dim=128, num_heads=2, num_layers=2)
    models = {"dit": WanDiT(cfg)}
    fused = WanDiT(cfg)
    fuse_qkv_(fused)
    models["dit fused"] = fused
    fast = WanDiT(cfg)
    fp8_linears_(fast)
    models["dit fp8_fast"] = fast
    scaled = WanDiT(cfg)
    swap_fp8_linears(scaled, [n for n, m in scaled.named_modules() if isinstance(m, torch.nn.Linear)][:4])
    models["dit fp8 scaled"] = scaled
    with torch.device("meta"):  # real sizes, no memory
        models["wan vae 2.1"] = WanVAE21()
        models["wan vae 2.2"] = WanVAE22()
        models["taehv"] = TAEHV()
    for name, model in models.items():
        assert _tensor_attributes(model) == [], name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_offload_frees_the_memory_and_the_next_job_is_the_same(files, monkeypatch):
    comfy_runtime_outside(monkeypatch, QuietProgress)
    monkeypatch.setattr(rt, "torch_device", lambda: torch.device("cuda"))
    HeldMemory.held = []
    env = {
        "dit": core_bridge.load_dit(files["paths"]["dit"], "bf16", "auto", False, True),
        "taehv": core_bridge.load_taehv(files["paths"]["taehv"], "auto"),
        "info": files,
    }
    first = _sample(env)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    HeldMemory.unload_all()
    torch.cuda.synchronize()
    assert all(p.device.type == "cpu" for p in env["dit"].model.parameters())
    freed = before - torch.cuda.memory_allocated()
    assert freed >= module_nbytes(env["dit"].model)  # the weights (and the kept KV cache) left the GPU
    again = _sample(env)
    assert all(p.device.type == "cuda" for p in env["dit"].model.parameters())
    torch.testing.assert_close(again, first, rtol=1e-3, atol=1e-3)


def test_running_out_of_memory_moving_back_is_explained_and_retried(env, monkeypatch):
    from wan_core.memory import OutOfMemory

    res = env["dit"].resident
    HeldMemory.unload_all()
    real_to = torch.nn.Module.to
    fail = {"n": 1}

    moves = []

    def to(self, *a, **k):
        if self is env["dit"].model:
            moves.append(torch.device(a[0]))
            if fail["n"]:
                fail["n"] -= 1
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB.")
        return real_to(self, *a, **k)

    monkeypatch.setattr(torch.nn.Module, "to", to)
    with pytest.raises(OutOfMemory, match=r"moving Load Wan DiT .* back to the GPU"):
        with ResidentModel.using(res):
            pass
    assert res.offloaded and not res.registration.in_use  # still marked offloaded, not in use
    assert moves == [res.device, res.offload_device]  # what had reached the GPU went back: not left split
    with ResidentModel.using(res):  # the next use moves it again
        assert not res.offloaded


def test_an_offload_that_fails_never_raises_into_comfyui(env, caplog):
    res = env["dit"].resident

    def broken(inside_comfy):
        raise RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 3 GB")

    res.on_offload = broken
    HeldMemory.unload_all()  # ComfyUI's unloading loop: must not see the error
    assert res.offloaded and "offloading failed" in caplog.text and "not enough memory" in caplog.text
    with ResidentModel.using(res):  # its next use moves all of it back and registers it again
        assert not res.offloaded and res.handles()


def test_move_back_advice_fits_the_model(env, files):
    from wan_core.memory import OutOfMemory

    vae = core_bridge.load_vae(files["paths"]["vae"], "auto")
    HeldMemory.unload_all()

    def fail(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory.")

    vae.resident.model.to = fail  # this instance only
    with pytest.raises(OutOfMemory) as info:
        with ResidentModel.using(vae.resident):
            pass
    text = str(info.value)
    assert "moving Load Wan VAE" in text and "fp8" not in text  # the VAE has no fp8 weights
    assert "fp8" in " ".join(env["dit"].resident.fixes)  # a 16-bit DiT does
