"""Causal rollout with a multistep UniPC solve per chunk: LongLive 2.0 (Wan2.2 TI2V 5B).

NVlabs/LongLive @7860ad9 ``pipeline/causal_diffusion_inference.py``: per chunk of latent frames, a fresh
UniPC solver (``unipc_solver.py``) takes the chunk from pure noise to x0 in the steps of
``preset.schedule`` (a ``UniPCSchedule``); every step is one DiT pass over the chunk with per-frame timesteps
``int(1000 * sigma)`` that attends to the cached sink + window K/V (the same ``RollingKVCache`` and
clean context pass at t = 0 as the few-step schemes: ``CausalScheme``). No re-noising, so one noise draw
per chunk. Image-to-video (``image_stamp="clean_t0"``): latent 0 of the first chunk is the clean image
latent before and after every step, its timestep 0 (official ``_overwrite_i2v_context`` /
``_zero_i2v_context_timestep``); the context pass then runs at t = 0 everywhere.

A prompt switch takes the new prompt's cross-attention from that chunk on and keeps the cached K/V as
they are: the official pipeline resets only the cross-attention cache per chunk's prompt (its KV re-cache
``shot_clean_recache`` and multi-shot pinned sinks / RoPE offsets for scene cuts are not implemented).
"""

from __future__ import annotations

from ..conditioning import stamp_input, stamp_x0
from .base import register_scheme
from .causal import CausalScheme
from .unipc_solver import UniPCChunkSolver, UniPCPlan

__all__ = ["CausalUniPCScheme"]


@register_scheme("causal_unipc")
class CausalUniPCScheme(CausalScheme):
    title = "causal UniPC"

    def __init__(self, preset, dit, runner, options):
        super().__init__(preset, dit, runner, options)
        self.plan = UniPCPlan(preset.schedule)

    @property
    def noise_draws(self) -> int:
        return 1

    def total_steps(self, num_chunks):
        return None if num_chunks is None else num_chunks * self.plan.steps

    def generate(self, i: int):
        st, runner, plan = self.state, self.runner, self.plan
        start, n = self.video.chunk_bounds(i)
        self.before_chunk(i, start)
        noise = runner.noise(i)  # [1, B, C, n, h, w]
        y = self.image_y(start, n)
        solver = UniPCChunkSolver(plan)
        x = noise[0]
        for k in range(plan.steps):
            runner.check_interrupt()
            x_in, clean_first = stamp_input(x, st.image, start, plan.sigmas[k], noise[0])
            v = self._run(x_in, self._timesteps(plan.timesteps[k], n, clean_first), start, y)
            x = stamp_x0(solver.step(k, v, x_in), st.image, start)
            runner.step_done(i)
        self._pending = (x, y)
        return x

    def switch_prompt(self, i: int, prompt) -> None:
        """The new prompt's cross-attention from chunk ``i`` on; the cached K/V stay (no re-cache)."""
        self.runner.reset_graphs()
