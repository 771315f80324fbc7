"""``comfy_runtime.hold_memory`` and ``WarmRollout`` against ComfyUI's real model management (the
``comfy`` package of the ComfyUI the integration tests boot, imported in a subprocess with ``--cpu``):
what the pack keeps between jobs is listed as a loaded model; other models loading leave it; ComfyUI
unloading everything (``POST /free``) calls its release exactly once and leaves ComfyUI's list
consistent, also when other models are unloaded in the same loop; a loaded model of the pack
(``ResidentModel``) is offloaded by ComfyUI and registered again when used (letting go of the handle inside that
loop would run ComfyUI's dead-model clean-up in the middle of it); dropping the handle unregisters it."""

import subprocess
import sys
import textwrap

from conftest import COMFY_DIR, ROOT

SCRIPT = textwrap.dedent(
    r"""
    import gc, importlib.util, sys
    sys.argv = ["main.py", "--cpu"]
    import comfy.options
    comfy.options.enable_args_parsing()
    import torch
    import comfy.model_management as mm
    import comfy.model_patcher as mp

    # the pack's nodes package under another name (ComfyUI has a top-level module "nodes" of its own)
    spec = importlib.util.spec_from_file_location(
        "wanstream_nodes", PACK + "/nodes/__init__.py", submodule_search_locations=[PACK + "/nodes"]
    )
    pkg = importlib.util.module_from_spec(spec)
    sys.modules["wanstream_nodes"] = pkg
    spec.loader.exec_module(pkg)
    import wanstream_nodes.comfy_runtime as rt
    from wanstream_nodes.warm_rollout import WarmRollout

    dev = mm.get_torch_device()

    def other_model(n):
        m = mp.ModelPatcher(torch.nn.Linear(n, n), load_device=dev, offload_device=torch.device("cpu"))
        mm.load_models_gpu([m])
        return m

    # 1. registered as a loaded model of its size, without asking ComfyUI to free anything (the memory
    #    is already allocated); another model loading leaves it
    released = []
    # (on a GPU ``load_models_gpu`` frees ~1 GB of headroom first: neither it nor free_memory may run)
    free_calls = []
    real_free, real_load = mm.free_memory, mm.load_models_gpu
    mm.free_memory = lambda *a, **k: (free_calls.append("free_memory"), real_free(*a, **k))[1]
    mm.load_models_gpu = lambda *a, **k: (free_calls.append("load_models_gpu"), real_load(*a, **k))[1]
    h = rt.hold_memory(64 << 20, dev, lambda: released.append(1))
    assert free_calls == [], free_calls
    mm.free_memory, mm.load_models_gpu = real_free, real_load
    assert h is not None and h in mm.loaded_models(), mm.loaded_models()
    assert h.model_size() == 64 << 20 and h.loaded_size() == 64 << 20
    a = other_model(8)
    assert h in mm.loaded_models() and a in mm.loaded_models() and released == []

    # 2. ComfyUI unloads everything: released once, every entry gone, no error
    b = other_model(16)
    mm.unload_all_models()
    assert released == [1], released
    assert mm.current_loaded_models == [], mm.current_loaded_models
    mm.unload_all_models()
    assert released == [1]

    # 3. dropping the handle unregisters it without a release call
    h2 = rt.hold_memory(1 << 20, dev, lambda: released.append(2))
    assert h2 in mm.loaded_models()
    del h2
    gc.collect()
    assert all(getattr(m.model, "model", None).__class__.__name__ != "WanStreamKeptMemory" for m in mm.current_loaded_models)
    assert released == [1]

    # 4. WarmRollout on the real registry: kept after a job, freed by ComfyUI between jobs (its
    #    handle let go outside ComfyUI's unloading loop), freed at the end of a job it ran during
    class FakePipe:
        def __init__(self):
            self.state = object()
            self.released = 0
        def held_nbytes(self):
            return 32 << 20
        def release(self):
            self.released += 1
            self.state = None

    def held_sizes():  # keeps no reference to the handles
        return [m.model.model_size() for m in mm.current_loaded_models if m.model.model.__class__.__name__ == "WanStreamKeptMemory"]

    warm = WarmRollout()
    p1 = warm.acquire("k", FakePipe)
    c = other_model(4)
    warm.keep(dev)
    assert held_sizes() == [32 << 20]
    assert warm.acquire("k", FakePipe) is p1 and warm.reuses == 1
    warm.keep(dev)
    assert held_sizes() == [32 << 20]
    d = other_model(5)  # unloaded in the same loop as ours, after it
    mm.unload_all_models()
    assert warm.pipeline is None and p1.released == 1 and mm.current_loaded_models == []
    p2 = warm.acquire("k", FakePipe)
    assert p2 is not p1 and warm.builds == 2
    warm.keep(dev)
    p2b = warm.acquire("k", FakePipe)
    mm.unload_all_models()  # during a job: it keeps running on it
    assert warm.pipeline is p2b and p2b.released == 0
    warm.keep(dev)
    assert warm.pipeline is None and p2b.released == 1
    gc.collect()
    assert mm.current_loaded_models == []

    # 5. a loaded model (ResidentModel): registered with its size; ComfyUI unloading it calls its
    #    offload (and on_offload) once; using it registers it again; an unload while it runs waits
    from wanstream_nodes.resident_model import ResidentModel, module_nbytes

    offloaded = []
    net = torch.nn.Linear(32, 32)
    res = ResidentModel(net, dev, "Load Wan DiT (test)", on_offload=lambda inside: offloaded.append(inside))
    res.register()
    assert held_sizes() == [module_nbytes(net)]
    names = [m.model.model.held_name for m in mm.current_loaded_models]
    assert names == ["Load Wan DiT (test)"], names
    e = other_model(6)
    mm.unload_all_models()
    assert res.offloaded and offloaded == [True] and mm.current_loaded_models == []  # inside ComfyUI's loop
    with ResidentModel.using(res):
        assert not res.offloaded and held_sizes() == [module_nbytes(net)]
        mm.unload_all_models()  # while it runs
        assert not res.offloaded
    assert res.offloaded and offloaded == [True, False]  # the deferred one: after the block, not inside
    with ResidentModel.using(res):
        pass
    assert held_sizes() == [module_nbytes(net)]
    del res
    gc.collect()
    assert held_sizes() == []  # a dropped model is forgotten

    # 6. making room (free_memory_bytes, its device-independent part): with memory short, ComfyUI
    #    unloads the other registered models but not those in keep
    gone = []
    k = rt.hold_memory(1 << 20, dev, lambda: gone.append("kept"))
    o = rt.hold_memory(2 << 20, dev, lambda: gone.append("other"))
    real_free_mem = mm.get_free_memory
    mm.get_free_memory = lambda dev=None, torch_free_too=False: (0, 0) if torch_free_too else 0
    try:
        rt._free_memory_bytes(mm, 1 << 20, dev, keep=(k,))
    finally:
        mm.get_free_memory = real_free_mem
    assert gone == ["other"], gone
    assert held_sizes() == [1 << 20]
    del k, o
    gc.collect()
    print("HELD-MEMORY-OK")
    """
)


def test_hold_memory_with_comfyui_model_management():
    code = f"PACK = {str(ROOT)!r}\n" + SCRIPT
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=COMFY_DIR, capture_output=True, text=True, timeout=300,
        env={"PYTHONPATH": f"{COMFY_DIR}:{ROOT}", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert r.returncode == 0 and "HELD-MEMORY-OK" in r.stdout, r.stdout[-3000:] + r.stderr[-6000:]
    # errors in weakref finalizers (ComfyUI's clean-up of dead models) are printed, not raised
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr, r.stderr[-6000:]
