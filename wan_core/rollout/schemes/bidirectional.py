"""Bidirectional Wan: base Wan2.1 (T2V / I2V 14B), Wan2.2 TI2V 5B and the Wan2.2 A14B dual expert.

The whole video is one chunk: every frame attends to every frame, no KV cache. Flow-matching Euler
(``schedulers.EulerSchedule``) with classifier-free guidance ``v = v_u + s (v_c - v_u)`` (skipped at
scale 1). A14B: the DiT's ``select(t)`` picks the high-noise expert for ``t >= boundary * 1000``, the
low-noise one after; ``guidance_scale_high`` is the high-noise expert's scale.
"""

from __future__ import annotations

import torch

from ..conditioning import stamp_input, stamp_x0
from .base import RolloutScheme, register_scheme

__all__ = ["BidirectionalScheme"]


@register_scheme("bidirectional")
class BidirectionalScheme(RolloutScheme):
    title = "bidirectional"
    whole_video = True

    @property
    def uses_negative_prompt(self) -> bool:
        p = self.preset
        return p.guidance_scale != 1.0 or (p.guidance_scale_high or 1.0) != 1.0

    def total_steps(self, num_chunks):
        return self.preset.euler.num_steps

    def refuse_switch(self) -> None:
        raise ValueError("prompt switching needs an autoregressive preset")

    def _expert(self, tk: float) -> int:
        """Index into ``experts`` (``(high, low)``) for timestep ``tk``."""
        if len(self.experts) == 1:
            return 0
        return 0 if self.dit.select(tk) is self.experts[0] else 1

    def generate(self, i: int) -> torch.Tensor:
        st, p, runner, video = self.state, self.preset, self.runner, self.video
        sched = p.euler
        t_frames = video.num_latent_frames
        noise = runner.noise(0)[0]
        y = self.image_y(0, t_frames)
        x = noise
        sigmas = sched.sigmas
        for k, tk in enumerate(sched.timesteps):
            runner.check_interrupt()
            e = self._expert(tk)
            scale = p.guidance_scale
            if e == 0 and len(self.experts) == 2 and p.guidance_scale_high is not None:
                scale = p.guidance_scale_high
            model = self.experts[e]
            x_in, clean_first = stamp_input(x, st.image, 0, sigmas[k], noise)
            if clean_first:
                t = torch.full((video.batch, t_frames), float(tk), device=runner.device)
                t[:, 0] = 0.0
            else:
                t = torch.full((video.batch,), tk, device=runner.device)
            v = runner.call(model, x_in, t, st.prompt.cross[e], y=y)
            if st.prompt.uncond is not None and scale != 1.0:
                v_u = runner.call(model, x_in, t, st.prompt.uncond[e], y=y)
                v = v_u + scale * (v - v_u)
            x = sched.step(x_in, v, k)
            runner.step_done(0)
        return stamp_x0(x, st.image, 0)
