"""Streaming rollout: schedules, presets, the chunk-by-chunk pipeline, model files, video writing."""

from .presets import PRESETS, RolloutPreset, get_preset
from .schedulers import EulerSchedule, FewStepSchedule

__all__ = ["PRESETS", "RolloutPreset", "get_preset", "EulerSchedule", "FewStepSchedule"]
