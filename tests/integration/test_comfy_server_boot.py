"""The real ComfyUI server boots with this pack linked in, and the pack imports without errors."""

from comfy_versions import MIN_COMFYUI, version_tuple
from conftest import PACK_NAME


def test_server_answers_and_pack_imported(comfy_server, comfy):
    stats = comfy.get("/system_stats")
    # any ComfyUI from the pack's declared minimum on (CI: 0.3.75)
    assert version_tuple(stats["system"]["comfyui_version"]) >= version_tuple(MIN_COMFYUI), stats["system"]
    log = comfy_server.log_path.read_text(errors="replace")
    timing = [ln for ln in log.splitlines() if ln.rstrip().endswith(f"custom_nodes/{PACK_NAME}")]
    assert timing, f"the pack was not loaded as a custom node:\n{comfy_server.log_tail()}"
    assert all("IMPORT FAILED" not in ln for ln in timing), timing
    assert f"Cannot import {comfy_server.base}" not in log
    assert "comfy_entrypoint" not in log, "the extension entry point logged a problem"


def test_pyproject_parsed_and_web_extension_served(comfy_server, comfy):
    log = comfy_server.log_path.read_text(errors="replace")
    assert "Unable to parse pyproject.toml" not in log  # ComfyUI reads [project] / [tool.comfy] at load
    extensions = comfy.get("/extensions")
    assert "/extensions/ComfyUI-Wan-Stream/wan_stream_player.js" in extensions
    js = comfy.get("/extensions/ComfyUI-Wan-Stream/wan_stream_player.js")
    assert b"wanstream.preview" in js
