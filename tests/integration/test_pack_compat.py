"""The pack's declared ComfyUI minimum, what it does in an older ComfyUI, its Registry metadata and
its template folder (no ComfyUI needed: the ComfyUI modules the entry point looks at are stand-ins)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import sys
import types
from pathlib import Path

import pytest
from comfy_versions import MIN_COMFYUI, version_tuple
from PIL import Image
from workflow_files import TEMPLATES, WORKFLOWS

ROOT = Path(__file__).resolve().parents[2]
tomllib = pytest.importorskip("tomllib")  # Python >= 3.11


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _load_pack(name: str):
    spec = importlib.util.spec_from_file_location(
        name, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _Routes:
    """aiohttp.web.RouteTableDef's ``get`` decorator, as ComfyUI's ``PromptServer.instance.routes``."""

    def __init__(self):
        self.got = {}

    def get(self, path):
        def add(handler):
            self.got[path] = handler
            return handler

        return add


@pytest.fixture
def old_comfyui(monkeypatch):
    """The modules ComfyUI 0.3.47 has loaded when it imports a custom node: no ``comfy_api.latest``."""
    routes = _Routes()
    server = types.ModuleType("server")
    server.PromptServer = types.SimpleNamespace(instance=types.SimpleNamespace(routes=routes))
    version = types.ModuleType("comfyui_version")
    version.__version__ = "0.3.47"
    for name, mod in {
        "folder_paths": types.ModuleType("folder_paths"),
        "comfy": types.ModuleType("comfy"),
        "server": server,
        "comfyui_version": version,
    }.items():
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setitem(sys.modules, "comfy_api", None)  # import comfy_api.latest -> ImportError
    monkeypatch.setitem(sys.modules, "comfy_api.latest", None)
    return routes


def test_too_old_comfyui_says_which_version_is_needed_and_how_to_update(old_comfyui, caplog):
    with caplog.at_level(logging.ERROR):
        pack = _load_pack("wanstream_pack_in_old_comfyui")
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    line = errors[0]
    assert f"ComfyUI {MIN_COMFYUI} or newer" in line and "this ComfyUI is 0.3.47" in line
    assert "Update ComfyUI" in line and "git pull" in line and "requirements.txt" in line
    assert not hasattr(pack, "NODE_CLASS_MAPPINGS")
    # the browser gets the same text: the notice extension instead of the player, and its route
    web = ROOT / pack.WEB_DIRECTORY
    assert web.is_dir() and web.resolve() != (ROOT / "web").resolve()
    script = next(web.glob("*.js")).read_text()
    assert pack.TOO_OLD_ROUTE in script
    reply = asyncio.run(old_comfyui.got[pack.TOO_OLD_ROUTE](None))
    assert reply.status == 200
    body = json.loads(reply.text)
    assert body["requires"] == MIN_COMFYUI and line == f"[Wan Stream] {body['message']}"


def test_a_broken_comfy_api_is_not_called_too_old(old_comfyui, monkeypatch, caplog):
    """comfy_api.latest present but failing on a module of its own: that error, not the update advice."""
    broken = types.ModuleType("comfy_api")
    broken.__path__ = []  # a package whose ``latest`` fails to import ``torchaudio``

    class _Finder:
        def find_spec(self, name, path=None, target=None):
            if name == "comfy_api.latest":
                raise ModuleNotFoundError("No module named 'torchaudio'", name="torchaudio")

    monkeypatch.setitem(sys.modules, "comfy_api", broken)
    monkeypatch.delitem(sys.modules, "comfy_api.latest")
    monkeypatch.setattr(sys, "meta_path", [_Finder(), *sys.meta_path])
    with caplog.at_level(logging.ERROR), pytest.raises(ModuleNotFoundError, match="torchaudio"):
        _load_pack("wanstream_pack_broken_comfy_api")
    assert not [r for r in caplog.records if "Wan Stream" in r.getMessage()]


def test_outside_comfyui_the_entry_point_logs_nothing(caplog):
    with caplog.at_level(logging.WARNING):
        pack = _load_pack("wanstream_pack_outside_comfyui")
    assert pack.comfy_entrypoint is None and pack.WEB_DIRECTORY == "./web"
    assert not [r for r in caplog.records if "Wan Stream" in r.getMessage()]


def test_declared_minimum_is_one_number():
    """requires-comfyui (Registry / ComfyUI-Manager), the entry point's check and the README agree."""
    assert _pyproject()["tool"]["comfy"]["requires-comfyui"] == f">={MIN_COMFYUI}"
    assert version_tuple(MIN_COMFYUI) == (0, 3, 48)  # the first release with comfy_api.latest
    assert f"ComfyUI {MIN_COMFYUI} or newer" in (ROOT / "README.md").read_text()


def test_registry_metadata():
    meta = _pyproject()
    comfy = meta["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"]
    icon = ROOT / comfy["Icon"]  # repo-relative until the pack has a public repository
    with Image.open(icon) as im:
        assert im.format == "PNG" and im.width <= 800 and im.height <= 400  # the Registry's limits
    assert (ROOT / meta["project"]["license"]["file"]).is_file()
    # a repository URL only once it is a real one (docs/comfyui.md, "Registry")
    assert "Repository" not in meta["project"].get("urls", {})


def test_templates_come_from_one_folder_each_with_its_thumbnail():
    """ComfyUI lists and serves every one of these folder names as the pack's templates: only
    ``workflows/`` (the product's folder) exists (a second one would list each template twice)."""
    for other in ("example", "examples", "workflow", "example_workflows"):
        assert not (ROOT / other).exists(), other
    assert sorted(p.stem for p in WORKFLOWS.glob("*.json")) == sorted(TEMPLATES)
    for name in TEMPLATES:
        with Image.open(WORKFLOWS / f"{name}.jpg") as im:
            assert im.format == "JPEG" and im.size == (1024, 768)
            colors = im.convert("L").getextrema()
        assert colors[1] - colors[0] > 100, f"{name}.jpg is blank"
