"""ComfyUI entry point of the Wan Stream node pack.

ComfyUI imports this file as a package (``custom_nodes/<pack>/__init__.py``) and registers the nodes
through ``comfy_entrypoint`` (the ``comfy_api.latest`` extension route; this module deliberately
exports no ``NODE_CLASS_MAPPINGS``, which would switch ComfyUI to the legacy route). Outside ComfyUI
(pytest, ``python -m wan_core``) this file imports nothing ComfyUI-specific.
"""

import os
import sys

WEB_DIRECTORY = "./web"

_PACK_DIR = os.path.dirname(os.path.abspath(__file__))
if _PACK_DIR not in sys.path:
    # the nodes import the model code as the top-level package ``wan_core``
    sys.path.append(_PACK_DIR)

try:
    import comfy_api.latest  # noqa: F401  (present only inside a running ComfyUI)
except ImportError:
    comfy_entrypoint = None
else:
    from .nodes.extension import comfy_entrypoint  # noqa: F401

__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
