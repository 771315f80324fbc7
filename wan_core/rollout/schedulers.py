"""Flow-matching noise schedules and the samplers built on them.

Two sampling schemes live here, both in "flow" parameterization (the DiT predicts
``v = noise - x0`` so that ``x_t = (1 - sigma) * x0 + sigma * noise`` and ``x0 = x_t - sigma * v``):

* ``FewStepSchedule`` -- the autoregressive few-step scheme of Self-Forcing / CausVid / LongLive /
  Rolling Forcing / Causal Forcing / Krea realtime: for every chunk, for every step ``k``: predict
  ``x0`` from the noisy chunk at timestep ``t_k``; if not the last step, re-noise ``x0`` to the
  next timestep with fresh noise, ``(1 - s_next) * x0 + s_next * noise`` (a re-noise, not an Euler
  step). After the last step the chunk is run once more, clean, at ``context_noise`` to write its
  K/V into the cache.  The sigma table is the one Self-Forcing trains with: 1000 train steps,
  ``sigma_k = linspace(1, 0, 1001)[:-1]`` ("extra one step", ``sigma_min = 0``), shifted by
  ``s * sigma / (1 + (s - 1) * sigma)``, ``t = 1000 * sigma``.  A step list given in "train
  step" units (``[1000, 750, 500, 250]``) is either *warped* through that table
  (``t = table[1000 - step]`` -> ``[1000, 937.5, 833.3, 625]`` for shift 5) or used as is
  (CausVid); the sigma of any timestep is the table entry nearest to it, as the reference code
  looks it up.

* ``EulerSchedule`` -- the many-step bidirectional sampler for base Wan checkpoints (one chunk =
  the whole video) with classifier-free guidance. Base Wan ships UniPC; we use a first-order
  flow-matching Euler sampler on the same shifted sigmas (``sigma_i = shift(linspace(1, 0, n+1))``,
  ``x <- x + (sigma_{i+1} - sigma_i) * v``), which converges to the same ODE solution with a
  somewhat higher step count for equal quality (documented, not hidden).

Everything here is host-side constants computed once (lists of floats); the per-step math takes
device tensors and never syncs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = [
    "NUM_TRAIN_TIMESTEPS",
    "shift_sigma",
    "train_sigma_table",
    "nearest_table_sigma",
    "warp_steps",
    "FewStepSchedule",
    "EulerSchedule",
    "flow_to_x0",
    "renoise",
]

NUM_TRAIN_TIMESTEPS = 1000


def shift_sigma(sigma: float | torch.Tensor, shift: float) -> float | torch.Tensor:
    """Timestep shift of flow matching (SD3 / Wan): ``s * sigma / (1 + (s - 1) * sigma)``."""
    return shift * sigma / (1 + (shift - 1) * sigma)


def train_sigma_table(shift: float, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> torch.Tensor:
    """The shifted sigma of every train step, float64 ``[num_train_timesteps]``, from 1 down to 1/N.

    ``linspace(1, 0, N + 1)[:-1]`` (Self-Forcing's ``FlowMatchScheduler(sigma_min=0,
    extra_one_step=True).set_timesteps(N, training=True)``), then shifted.
    """
    base = torch.linspace(1.0, 0.0, num_train_timesteps + 1, dtype=torch.float64)[:-1]
    return shift_sigma(base, shift)


def nearest_table_sigma(
    timestep: float, shift: float, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS
) -> float:
    """Sigma of ``timestep`` as the reference code finds it: the table entry with the nearest ``t``.

    ``timestep <= 0`` is the clean sample (sigma 0); the table itself never reaches 0.
    """
    if timestep <= 0:
        return 0.0
    table = train_sigma_table(shift, num_train_timesteps)
    idx = int(torch.argmin((table * num_train_timesteps - float(timestep)).abs()))
    return float(table[idx])


def warp_steps(
    steps: Sequence[float], shift: float, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS
) -> list[float]:
    """Map a step list in train-step units onto the shifted timestep table (Self-Forcing warping).

    ``[1000, 750, 500, 250]`` with shift 5 -> ``[1000.0, 937.5, 833.33.., 625.0]``.
    """
    table = torch.cat(
        [
            train_sigma_table(shift, num_train_timesteps) * num_train_timesteps,
            torch.zeros(1, dtype=torch.float64),
        ]
    )
    out = []
    for s in steps:
        idx = num_train_timesteps - int(round(float(s)))
        if not 0 <= idx <= num_train_timesteps:
            raise ValueError(f"denoising step {s} is outside [0, {num_train_timesteps}]")
        out.append(float(table[idx]))
    return out


def flow_to_x0(x_t: torch.Tensor, v: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """``x0 = x_t - sigma * v`` computed in fp32 and returned in ``x_t``'s dtype."""
    return (x_t.float() - sigma * v.float()).to(x_t.dtype)


def renoise(x0: torch.Tensor, noise: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """``(1 - sigma) * x0 + sigma * noise`` (fp32 math, ``x0``'s dtype out)."""
    return ((1 - sigma) * x0.float() + sigma * noise.float()).to(x0.dtype)


@dataclass(frozen=True)
class FewStepSchedule:
    """The few-step autoregressive denoising schedule of one chunk.

    ``steps`` are in train-step units (``[1000, 750, 500, 250]``); ``warp`` maps them through the
    shifted table (Self-Forcing) or uses them as timesteps directly (CausVid). ``context_noise`` is
    the timestep of the clean K/V-writing pass after the last step (0 in every published config).
    """

    steps: tuple[float, ...] = (1000.0, 750.0, 500.0, 250.0)
    shift: float = 5.0
    warp: bool = True
    context_noise: float = 0.0
    num_train_timesteps: int = NUM_TRAIN_TIMESTEPS

    def __post_init__(self) -> None:
        if len(self.steps) == 0:
            raise ValueError("FewStepSchedule needs at least one denoising step")
        if any(b >= a for a, b in zip(self.steps, self.steps[1:])):
            raise ValueError(f"denoising steps must be strictly decreasing, got {list(self.steps)}")
        if self.warp and any(float(s) == 0 for s in self.steps):
            raise ValueError("with warp=True the step list must not contain 0 (Self-Forcing drops it)")

    @property
    def timesteps(self) -> list[float]:
        """What the DiT's time embedding sees at each step."""
        if self.warp:
            return warp_steps(self.steps, self.shift, self.num_train_timesteps)
        return [float(s) for s in self.steps if float(s) > 0]

    @property
    def sigmas(self) -> list[float]:
        """Noise level of each step (table lookup, as the reference code does)."""
        return [nearest_table_sigma(t, self.shift, self.num_train_timesteps) for t in self.timesteps]

    @property
    def context_sigma(self) -> float:
        return nearest_table_sigma(self.context_noise, self.shift, self.num_train_timesteps)

    def __len__(self) -> int:
        return len(self.timesteps)


@dataclass(frozen=True)
class EulerSchedule:
    """Many-step flow-matching Euler schedule with shift (base Wan, bidirectional, CFG)."""

    num_steps: int = 50
    shift: float = 5.0
    num_train_timesteps: int = NUM_TRAIN_TIMESTEPS

    def __post_init__(self) -> None:
        if self.num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {self.num_steps}")

    @property
    def sigmas(self) -> list[float]:
        """``num_steps + 1`` sigmas from 1 down to 0 (shifted)."""
        base = torch.linspace(1.0, 0.0, self.num_steps + 1, dtype=torch.float64)
        return [float(s) for s in shift_sigma(base, self.shift)]

    @property
    def timesteps(self) -> list[float]:
        """The ``num_steps`` timesteps the model sees (``1000 * sigma_i``, last sigma 0 excluded)."""
        return [s * self.num_train_timesteps for s in self.sigmas[:-1]]

    def step(self, x: torch.Tensor, v: torch.Tensor, i: int) -> torch.Tensor:
        """One Euler step ``x + (sigma_{i+1} - sigma_i) * v`` (fp32 math)."""
        s = self.sigmas
        return (x.float() + (s[i + 1] - s[i]) * v.float()).to(x.dtype)
