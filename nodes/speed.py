"""Load Wan DiT's ``speed`` input, and the two booleans it replaced, as the pipeline's speed flags.

``speed`` (appended last, optional: a saved API workflow without it gets ``auto``):
- ``auto``: on a CUDA GPU, CUDA graphs + fused q/k/v + decode on a side stream, and ``torch.compile``
  of the DiT blocks where Triton imports (inductor's GPU code generator); on any other device none of
  them. A failing compile or graph capture falls back to eager for that model with one warning, and
  the job goes on (``StreamingPipeline._guard_compile``, ``ChunkForward``).
- ``eager``: none of them (the plain reference path, e.g. to compare or to debug).

The old ``compile`` / ``cuda_graphs`` booleans keep their positions and meanings in saved workflows:
``True`` turns that feature on whatever ``speed`` says (an explicit ``cuda_graphs`` on a device
without CUDA is an error, as it was); ``False`` leaves it to ``speed``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

SPEEDS = ("auto", "eager")

__all__ = ["SPEEDS", "SpeedFlags", "speed_flags", "triton_importable"]


@dataclass(frozen=True)
class SpeedFlags:
    """What the pipeline runs with (``StreamingPipeline``'s keywords of the same names)."""

    cuda_graphs: bool
    compile: bool
    fuse_qkv: bool
    overlap_decode: bool

    def summary(self) -> str:
        on = [name for name, flag in self._named() if flag]
        return ", ".join(on) if on else "eager (no compile, no CUDA graphs)"

    def _named(self):
        return (
            ("CUDA graphs", self.cuda_graphs),
            ("torch.compile", self.compile),
            ("fused q/k/v", self.fuse_qkv),
            ("decode overlap", self.overlap_decode),
        )


@functools.cache
def triton_importable() -> bool:
    """Whether ``import triton`` works here (torch.compile's inductor generates GPU code with it)."""
    try:
        import triton  # noqa: F401
    except Exception:  # not installed, or a broken install: compile would fail, so do not try
        return False
    return True


def speed_flags(
    speed: str, *, compile: bool, cuda_graphs: bool, device_type: str, triton: bool
) -> SpeedFlags:
    """The rule of the module docstring; ``ValueError`` for an unknown ``speed``."""
    if speed not in SPEEDS:
        raise ValueError(f"Load Wan DiT: speed must be one of {' / '.join(SPEEDS)}, got {speed!r}.")
    fast = speed == "auto" and device_type == "cuda"
    return SpeedFlags(
        cuda_graphs=bool(cuda_graphs) or fast,
        compile=bool(compile) or (fast and triton),
        fuse_qkv=fast,
        overlap_decode=fast,
    )
