"""Plain-Python parts of the pack (no ComfyUI needed): the entry point stays importable outside
ComfyUI and registers through one route only; prompt switches; conditioning invariants."""

import ast
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from nodes.payloads import PromptSegment, StreamConditioning  # noqa: E402
from nodes.prompt_schedule import parse_prompt_switches  # noqa: E402


def test_entry_point_imports_outside_comfyui():
    spec = importlib.util.spec_from_file_location(
        "wanstream_pack_under_test", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.comfy_entrypoint is None  # no comfy_api here
    assert (ROOT / mod.WEB_DIRECTORY).is_dir()
    assert not hasattr(mod, "NODE_CLASS_MAPPINGS")


def test_single_registration_route():
    """No module of the pack exports NODE_CLASS_MAPPINGS (ComfyUI would switch to the legacy route)."""
    files = [ROOT / "__init__.py", *sorted((ROOT / "nodes").glob("*.py"))]
    for f in files:
        tree = ast.parse(f.read_text())
        names = {
            t.id
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign)
            for t in node.targets
            if isinstance(t, ast.Name)
        }
        assert "NODE_CLASS_MAPPINGS" not in names, f
    assert "comfy_entrypoint" in (ROOT / "nodes" / "extension.py").read_text()


def test_prompt_switches_parse():
    got = parse_prompt_switches("a fox in snow", "\n# comment\n 6: the fox jumps\n3:  a river \n")
    assert got == [(0, "a fox in snow"), (3, "a river"), (6, "the fox jumps")]


@pytest.mark.parametrize(
    ("positive", "switches", "message"),
    [
        ("", "", "positive prompt is empty"),
        ("x", "three: y", "is not '<start chunk>: <prompt>'"),
        ("x", "0: y", "chunk 0"),
        ("x", "2: y\n2: z", "two prompt switches start at chunk 2"),
    ],
)
def test_prompt_switch_errors(positive, switches, message):
    with pytest.raises(ValueError, match=message):
        parse_prompt_switches(positive, switches)


def test_conditioning_schedule_lookup():
    ctx = torch.zeros(1, 4, 8)
    cond = StreamConditioning(
        segments=(PromptSegment(0, "a", ctx), PromptSegment(3, "b", ctx), PromptSegment(5, "c", ctx))
    )
    assert [cond.segment_for_chunk(i).text for i in range(7)] == ["a", "a", "a", "b", "b", "c", "c"]
    with pytest.raises(ValueError, match="chunk 0"):
        StreamConditioning(segments=(PromptSegment(1, "a", ctx),))


def test_encode_prompt_on_cpu_for_small_gpus_shares_the_cache(tmp_path, monkeypatch):
    """The node's ``device`` input: cpu loads and runs UMT5 on the CPU in bf16 although ComfyUI's device is
    a GPU (faked: no CUDA here); the embeddings come back fp32 on the CPU like the GPU path's, and a
    later ``auto`` run of the same prompts is served from the cache (the key holds no device)."""
    from tiny_models import _umt5_file

    import wan_core.text as text
    from nodes import comfy_runtime as rt
    from nodes import core_bridge

    path = tmp_path / "umt5_xxl_fp16.safetensors"
    _umt5_file(path, fp8=False)
    gpu = torch.device("cuda", 0)
    freed, loads = [], []
    monkeypatch.setattr(rt, "torch_device", lambda: gpu)
    monkeypatch.setattr(rt, "free_memory_for", lambda p, device: freed.append(device))
    monkeypatch.setattr(rt, "release_memory", lambda: None)
    real_dtype = rt.compute_dtype  # ComfyUI's bf16 check for the fake GPU
    monkeypatch.setattr(rt, "compute_dtype", lambda p, d: torch.bfloat16 if d == gpu else real_dtype(p, d))
    monkeypatch.setattr(core_bridge, "_PROMPT_CACHE", None)
    real_load = text.load_umt5

    def spy_load(p, dtype=None, device="cpu"):
        loads.append((torch.device(device), dtype))
        return real_load(p, dtype=dtype, device=device)

    monkeypatch.setattr(text, "load_umt5", spy_load)
    schedule = [(0, "a red fox"), (2, "a white wolf")]
    cond = core_bridge.encode_prompt_schedule(str(path), schedule, "", precision="auto", device="cpu")
    assert loads == [(torch.device("cpu"), torch.bfloat16)] and freed == [torch.device("cpu")]
    for seg in cond.segments:
        assert seg.context.dtype == torch.float32 and seg.context.device.type == "cpu"
        assert seg.context.shape[0] == 1 and seg.context.abs().sum() > 0
    assert not torch.equal(cond.segments[0].context, cond.segments[1].context)
    again = core_bridge.encode_prompt_schedule(str(path), schedule, "", precision="auto", device="auto")
    assert len(loads) == 1, "the same prompts must come from the cache whatever device encoded them"
    for a, b in zip(cond.segments, again.segments):
        assert torch.equal(a.context, b.context) and torch.equal(a.negative_context, b.negative_context)
    assert core_bridge.text_encoder_device("auto") == gpu
    with pytest.raises(ValueError, match="device must be one of auto, cpu"):
        core_bridge.text_encoder_device("cuda:1")
