"""Multistep UniPC (B(h) = e^h - 1, data prediction, order 2) in flow-matching form, for one chunk.

The solver LongLive 2.0 runs per chunk (NVlabs/LongLive @7860ad9 ``pipeline/causal_diffusion_inference.py``:
a fresh ``FlowUniPCMultistepScheduler(num_train_timesteps=1000, shift=1)`` per chunk,
``set_timesteps(steps, shift=5)``; the class is Wan2.2's ``wan/utils/fm_solvers_unipc.py``, whose defaults
are ``solver_order=2``, ``predict_x0=True``, ``solver_type="bh2"``, ``lower_order_final=True``,
``final_sigmas_type="zero"``). Facts used (read from that code, nothing copied):

- sigmas: ``linspace(sigma_max, 0, steps + 1)[:-1]`` with ``sigma_max = 1 - 1/1000`` (the training table's
  first entry, float32), shifted ``s * sigma / (1 + (s - 1) * sigma)``, then a final 0; kept as float32.
  The timesteps the DiT sees are ``int64(1000 * sigma)`` (truncated, from the float64 sigmas).
- flow parameterization: ``alpha = 1 - sigma``; the data prediction of a step is ``x0 = x - sigma * v``
  at the step's own sigma; ``lambda = log(alpha / sigma)``.
- step k: the corrector (UniC, using the previous step's order) first refines the sample the DiT just saw,
  from the previous corrected sample, ``x0`` of step k-1 (and k-2) and the new ``x0`` of step k; then the
  predictor (UniP) moves the corrected sample to the next sigma with the order
  ``min(2, steps - k, k + 1)`` (warm-up and lower order at the end). The DiT always sees the predictor's
  (uncorrected) output. The last step goes to sigma 0, where the predictor returns that step's ``x0``.

Coefficients are host-side floats (float64 math on the float32 sigmas); the per-step update is a few
fused tensor ops in float32 with no host sync.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["UniPCSchedule", "UniPCPlan", "UniPCChunkSolver", "unipc_sigmas"]

NUM_TRAIN_TIMESTEPS = 1000
SOLVER_ORDER = 2


def unipc_sigmas(steps: int, shift: float, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS):
    """(sigmas as float32-exact Python floats, ``steps + 1`` ending with 0; the DiT's integer timesteps)."""
    sigma_max = float(np.float32(1.0 - 1.0 / num_train_timesteps))  # the table's first sigma, float32
    base = np.linspace(sigma_max, 0.0, steps + 1)[:-1]
    shifted = shift * base / (1 + (shift - 1) * base)  # float64
    timesteps = [float(int(s * num_train_timesteps)) for s in shifted]  # int64 truncation
    sigmas = [float(np.float32(s)) for s in shifted] + [0.0]
    return sigmas, timesteps


@dataclass(frozen=True)
class UniPCSchedule:
    """A chunk's UniPC solve: ``num_steps`` steps at ``shift`` (a preset's ``schedule`` with sampler "unipc")."""

    num_steps: int = 4
    shift: float = 5.0
    num_train_timesteps: int = NUM_TRAIN_TIMESTEPS
    context_noise: float = 0.0  # timestep of the clean context pass
    warp: bool = False  # (the few-step schedule's fields, for code that reads any schedule)
    final_t0_step: bool = False

    def __post_init__(self) -> None:
        if self.num_steps < 1:
            raise ValueError(f"UniPC needs at least one step, got {self.num_steps}")

    @property
    def timesteps(self) -> list[float]:
        """What the DiT's time embedding sees at each step (integers)."""
        return unipc_sigmas(self.num_steps, self.shift, self.num_train_timesteps)[1]

    @property
    def steps(self) -> tuple[float, ...]:
        return tuple(self.timesteps)

    @property
    def sigmas(self) -> list[float]:
        """``num_steps + 1`` float32 sigmas, the last 0."""
        return unipc_sigmas(self.num_steps, self.shift, self.num_train_timesteps)[0]

    def __len__(self) -> int:
        return self.num_steps


def _lam(sigma: float) -> float:
    return math.log(1.0 - sigma) - math.log(sigma) if sigma > 0 else math.inf


@dataclass(frozen=True)
class _Update:
    """``out = a_x * x + a_m * m_last + sum(a_d[j] * (m_prev[j] - m_last)) + a_t * (m_new - m_last)``."""

    a_x: float
    a_m: float
    a_d: tuple[float, ...] = ()
    a_t: float = 0.0


class UniPCPlan:
    """The predictor and corrector coefficients of one chunk's UniPC steps (host floats)."""

    def __init__(self, schedule: UniPCSchedule):
        steps = self.steps = schedule.num_steps
        self.sigmas, self.timesteps = schedule.sigmas, schedule.timesteps
        self.orders = [min(SOLVER_ORDER, steps - k, k + 1) for k in range(steps)]
        self.predictors = [self._predictor(k) for k in range(steps)]
        self.correctors = [None] + [self._corrector(k) for k in range(1, steps)]

    def _phi(self, h: float):
        hh = -h  # data prediction
        h_phi_1 = math.expm1(hh)
        return hh, h_phi_1, h_phi_1  # B(h) = e^hh - 1 (bh2)

    def _predictor(self, k: int) -> _Update:
        """Sample at sigma_k (corrected) -> sample at sigma_{k+1}."""
        s0, t = self.sigmas[k], self.sigmas[k + 1]
        if t == 0.0:  # the last step: alpha_t = 1, sigma_t = 0 -> the step's x0
            return _Update(0.0, 1.0)
        h = _lam(t) - _lam(s0)
        _, h_phi_1, b_h = self._phi(h)
        alpha_t = 1.0 - t
        a_x, a_m = t / s0, -alpha_t * h_phi_1
        if self.orders[k] == 1:
            return _Update(a_x, a_m)
        rk = (_lam(self.sigmas[k - 1]) - _lam(s0)) / h
        return _Update(a_x, a_m, (-alpha_t * b_h * 0.5 / rk,))  # rhos_p = 0.5 for order 2

    def _corrector(self, k: int) -> _Update:
        """Sample at sigma_k predicted from step k-1 -> corrected with step k's x0 (order of step k-1)."""
        s0, t = self.sigmas[k - 1], self.sigmas[k]
        h = _lam(t) - _lam(s0)
        hh, h_phi_1, b_h = self._phi(h)
        alpha_t = 1.0 - t
        a_x, a_m = t / s0, -alpha_t * h_phi_1
        order = self.orders[k - 1]
        if order == 1:
            return _Update(a_x, a_m, (), -alpha_t * b_h * 0.5)
        rk = (_lam(self.sigmas[k - 2]) - _lam(s0)) / h
        # rhos_c solves [[1, 1], [rk, 1]] rho = [b1, b2], b_i from the phi recursion
        h_phi_k = h_phi_1 / hh - 1.0
        b1 = h_phi_k / b_h
        h_phi_k = h_phi_k / hh - 1.0 / 2.0
        b2 = h_phi_k * 2.0 / b_h
        rho0 = (b1 - b2) / (1.0 - rk)
        rho1 = b1 - rho0
        return _Update(a_x, a_m, (-alpha_t * b_h * rho0 / rk,), -alpha_t * b_h * rho1)


def _apply(u: _Update, x: torch.Tensor, m_last: torch.Tensor, m_prev: list, m_new=None) -> torch.Tensor:
    out = u.a_x * x + u.a_m * m_last if u.a_x else u.a_m * m_last
    for a, m in zip(u.a_d, m_prev):
        out = out + a * (m - m_last)
    if m_new is not None and u.a_t:
        out = out + u.a_t * (m_new - m_last)
    return out


class UniPCChunkSolver:
    """One chunk's solve: ``x = solver.step(k, v, x)`` for k = 0 .. steps-1 (``x`` the sample the DiT saw
    at step k, ``v`` its flow prediction, both ``[B, C, n, h, w]``); returns the next sample (the chunk's x0
    after the last step)."""

    def __init__(self, plan: UniPCPlan):
        self.plan = plan
        self.x0s: list[torch.Tensor] = []  # data predictions of the steps so far (float32)
        self.base: torch.Tensor | None = None  # the last corrected sample (float32)

    def step(self, k: int, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        p = self.plan
        xf = x.float()
        m = xf - p.sigmas[k] * v.float()  # x0 of step k
        if k + 1 == p.steps:  # to sigma 0: the predictor returns this step's x0 (the corrector is discarded)
            return m.to(x.dtype)
        if k > 0:  # UniC: refine the sample the DiT saw
            c = p.correctors[k]
            xf = _apply(c, self.base, self.x0s[-1], self.x0s[-2:-1], m)
        self.x0s = [*self.x0s[-1:], m]
        self.base = xf
        u = p.predictors[k]
        return _apply(u, xf, m, self.x0s[-2:-1] if p.orders[k] == 2 else []).to(x.dtype)
