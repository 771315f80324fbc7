"""ComfyUI entry point of the Wan Stream node pack.

ComfyUI imports this file as a package (``custom_nodes/<pack>/__init__.py``) and registers the nodes
through ``comfy_entrypoint`` (the ``comfy_api.latest`` extension route; this module deliberately
exports no ``NODE_CLASS_MAPPINGS``, which would switch ComfyUI to the legacy route). Outside ComfyUI
(pytest, ``python -m wan_core``) this file imports nothing ComfyUI-specific.

``comfy_api.latest`` first shipped in ComfyUI 0.3.48 (2025-08-01; 0.3.47 has no ``comfy_api/latest``
and does not call ``comfy_entrypoint``). In an older ComfyUI the pack registers no nodes and says so:
one error line in ComfyUI's log (the version found, the version needed, how to update) and, through
the web extension in ``web_comfyui_too_old/``, the same text as a notice in the browser.
"""

import logging
import os
import sys

MIN_COMFYUI = "0.3.48"  # = [tool.comfy] requires-comfyui in pyproject.toml (a test keeps them equal)
TOO_OLD_ROUTE = "/wanstream/comfyui_too_old"

_PACK_DIR = os.path.dirname(os.path.abspath(__file__))
if _PACK_DIR not in sys.path:
    # the nodes import the model code as the top-level package ``wan_core``
    sys.path.append(_PACK_DIR)


def _inside_comfyui() -> bool:
    # ComfyUI's main.py has imported these before it loads any custom node
    return "folder_paths" in sys.modules and "comfy" in sys.modules


def _comfyui_version() -> str:
    try:
        import comfyui_version  # ComfyUI's root module (2025 on); older ones have none

        return str(comfyui_version.__version__)
    except Exception:
        return "unknown"


def too_old_message(found: str) -> str:
    return (
        f"Wan Stream needs ComfyUI {MIN_COMFYUI} or newer (the comfy_api.latest node API); this ComfyUI is "
        f"{found}, so no Wan Stream node is loaded. Update ComfyUI and restart it: ComfyUI-Manager -> "
        "'Update ComfyUI'; a git install: `git pull` in the ComfyUI folder, then "
        "`python -m pip install -r requirements.txt` with ComfyUI's Python; the Windows portable build: "
        "update/update_comfyui.bat; ComfyUI Desktop updates itself on restart."
    )


def _announce_too_old() -> None:
    """The log line, and the route the browser notice (``web_comfyui_too_old/``) reads its text from."""
    message = too_old_message(_comfyui_version())
    logging.error("[Wan Stream] %s", message)
    try:
        from aiohttp import web
        from server import PromptServer

        async def too_old(_request):
            return web.json_response({"message": message, "requires": MIN_COMFYUI})

        PromptServer.instance.routes.get(TOO_OLD_ROUTE)(too_old)
    except Exception as e:  # the log line above is the message then
        logging.warning("[Wan Stream] could not add the browser notice: %s", e)


try:
    import comfy_api.latest  # noqa: F401  (present only inside a running ComfyUI >= 0.3.48)
except ImportError as e:
    if _inside_comfyui() and e.name not in ("comfy_api", "comfy_api.latest"):
        raise  # comfy_api.latest is there but failed to import: ComfyUI's own error, shown as it is
    comfy_entrypoint = None
    if _inside_comfyui():
        _announce_too_old()
        WEB_DIRECTORY = "./web_comfyui_too_old"  # the notice only: the player has no node to attach to
    else:
        WEB_DIRECTORY = "./web"
else:
    WEB_DIRECTORY = "./web"
    from .nodes.extension import comfy_entrypoint  # noqa: F401

__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
