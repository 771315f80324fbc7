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
