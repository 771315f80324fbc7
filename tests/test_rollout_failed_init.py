"""A failed ``initialize_cache`` (bad size) must not leave the previous video's state behind: a later
``generate`` asks for a new ``initialize_cache`` instead of silently continuing the old video."""

import pytest
import torch
from official_ref import randomize_

from wan_core.dit import WanDiT, WanDiTConfig
from wan_core.rollout.pipeline import StreamingPipeline
from wan_core.rollout.presets import get_preset
from wan_core.rollout.schedulers import FewStepSchedule


def test_failed_initialize_cache_releases_the_previous_video():
    dit = randomize_(WanDiT(WanDiTConfig(dim=32, ffn_dim=32, num_heads=2, num_layers=1)).eval(), 0)
    p = get_preset("self-forcing-1.3b").with_overrides(schedule=FewStepSchedule(steps=(1000, 500)))
    pipe = StreamingPipeline(dit, p)
    text = torch.randn(1, 4, 4096)
    pipe.initialize_cache(text, height=16, width=16, num_frames=9, seed=0)
    pipe.generate(0)
    pipe.finalize(0)
    with pytest.raises(ValueError, match="not a multiple of"):
        pipe.initialize_cache(text, height=30, width=16, num_frames=9, seed=1)
    assert pipe.state is None
    with pytest.raises(RuntimeError, match="initialize_cache"):
        pipe.generate(1)
    # and the pipeline is usable again
    pipe.initialize_cache(text, height=16, width=16, num_frames=9, seed=0)
    assert torch.isfinite(pipe.generate(0).latents).all()
