"""Live streams: an endless rollout steered while it runs (new prompts, blended transitions, pause,
resume, stop). Used by the ComfyUI live sampler and by ``python -m wan_core live``; see docs/live.md."""

from .blend import INTERPOLATIONS, blend_embeddings, pad_to_length
from .control import LiveControl, LiveLimits, SteeringError
from .loop import LiveLoop, LiveResult

__all__ = [
    "INTERPOLATIONS",
    "LiveControl",
    "LiveLimits",
    "LiveLoop",
    "LiveResult",
    "SteeringError",
    "blend_embeddings",
    "pad_to_length",
]
