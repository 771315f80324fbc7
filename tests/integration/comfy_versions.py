"""What the integration tests may assume of the ComfyUI they run on: any release from the pack's
declared minimum on (``MIN_COMFYUI`` in the pack's ``__init__.py``, ``requires-comfyui`` in
``pyproject.toml``), not one version's details.

- Progress: ComfyUI 0.3.75 sends one ``progress`` message per ``ProgressBar.update``; later releases
  throttle them (at most about one per 100 ms), so a test may count on the values rising and ending
  at the total, not on one message per step.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _min_comfyui() -> str:
    tree = ast.parse((ROOT / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            getattr(t, "id", None) == "MIN_COMFYUI" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError("__init__.py has no MIN_COMFYUI")


MIN_COMFYUI = _min_comfyui()


def version_tuple(version: str) -> tuple[int, ...]:
    """'0.3.75' -> (0, 3, 75); a suffix after the numbers ('0.3.75-dev', '0.4.0rc1') is ignored."""
    parts = []
    for piece in version.strip().lstrip("v").split("."):
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        parts.append(int(digits))
        if len(digits) < len(piece):
            break
    return tuple(parts)


def assert_progress_reaches(ticks: list[dict], total: int, step: int = 1) -> None:
    """ComfyUI ``progress`` messages of one node: each ``max`` is the total, the values rise strictly
    (each a multiple of ``step``: 4 = whole chunks of 4 steps) and the last one is the total."""
    values = [t["value"] for t in ticks]
    assert values, "no progress message"
    assert all(t["max"] == total for t in ticks), ticks
    assert all(a < b for a, b in zip(values, values[1:])), f"progress not rising: {values}"
    assert all(0 < v <= total and v % step == 0 for v in values), values
    assert values[-1] == total, f"progress ends at {values[-1]} of {total}"
