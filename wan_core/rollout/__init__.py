"""Streaming rollout: schedules, presets, the chunk-by-chunk pipeline, model files, video writing.

    from wan_core.rollout import StreamingPipeline, get_preset
    from wan_core.rollout.loading import resolve_files, encode_text, build_pipeline

Call order ``start_video`` -> ``generate(i)`` -> ``finalize(i)``; schemes in ``schemes/`` (docs/ARCHITECTURE.md).
"""

from .conditioning import ImageCondition, i2v_mask
from .model_files import MissingModelFileError, ModelFile, ensure_model_file, find_model_file
from .pipeline import ChunkResult, RolloutInterrupted, RolloutState, StreamingPipeline
from .presets import DEFAULT_NEGATIVE_PROMPT, PRESETS, RolloutPreset, get_preset
from .schedulers import EulerSchedule, FewStepSchedule

__all__ = [
    "StreamingPipeline",
    "ChunkResult",
    "RolloutState",
    "RolloutInterrupted",
    "ImageCondition",
    "i2v_mask",
    "PRESETS",
    "RolloutPreset",
    "get_preset",
    "DEFAULT_NEGATIVE_PROMPT",
    "EulerSchedule",
    "FewStepSchedule",
    "ModelFile",
    "MissingModelFileError",
    "ensure_model_file",
    "find_model_file",
]
