"""Inputs kept for saved workflows only: their place and meaning stay (``widgets_values`` of a saved
UI workflow are positional, API files name them), but a new node does not show them.

``legacy(input)`` marks an input ``advanced`` in the node definition. Front ends that know the flag
keep such widgets behind "Show Advanced"; for the others the pack's ``web/wan_stream_legacy_widgets.js``
hides a marked widget while it holds its default value (a saved workflow that set it shows it).
"""

from __future__ import annotations

__all__ = ["legacy"]


def legacy(inp):
    """``inp`` (a ``comfy_api`` input) marked as kept for saved workflows; returned for chaining."""
    extra = getattr(inp, "extra_dict", None)
    if isinstance(extra, dict):
        extra["advanced"] = True
    return inp
