"""Schedules against the published numbers and the official Wan sigma code; oracle sampling."""

import importlib

import pytest
import torch

from wan_core.rollout.schedulers import (
    EulerSchedule,
    FewStepSchedule,
    flow_to_x0,
    nearest_table_sigma,
    renoise,
    shift_sigma,
    train_sigma_table,
    warp_steps,
)


def test_self_forcing_warped_steps_match_published_values():
    # FACTS section 3: [1000, 750, 500, 250] warped with shift 5 -> [1000, 937.5, 833.33, 625]
    got = warp_steps([1000, 750, 500, 250], shift=5.0)
    assert got == pytest.approx([1000.0, 937.5, 2500 / 3, 625.0], abs=1e-9)
    sched = FewStepSchedule()
    assert sched.sigmas == pytest.approx([1.0, 0.9375, 2.5 / 3, 0.625], abs=1e-12)
    assert sched.context_sigma == 0.0


def test_table_is_self_forcing_training_table():
    table = train_sigma_table(5.0)
    assert table.shape == (1000,)
    assert float(table[0]) == 1.0
    base = 1 - torch.arange(1000, dtype=torch.float64) / 1000
    assert torch.allclose(table, 5 * base / (1 + 4 * base))


def test_causvid_unwarped_steps_use_nearest_table_sigma():
    sched = FewStepSchedule(steps=(1000, 757, 522), shift=8.0, warp=False)
    assert sched.timesteps == [1000.0, 757.0, 522.0]
    table = train_sigma_table(8.0)
    for t, s in zip(sched.timesteps, sched.sigmas):
        # the chosen entry is the nearest timestep of the table, and close to t/1000
        assert s in table.tolist()
        assert abs(s - t / 1000) <= float((table[:-1] - table[1:]).max())


def test_bad_step_lists_are_rejected():
    with pytest.raises(ValueError, match="decreasing"):
        FewStepSchedule(steps=(500, 750))
    with pytest.raises(ValueError, match="must not contain 0"):
        FewStepSchedule(steps=(1000, 0), warp=True)
    with pytest.raises(ValueError, match="outside"):
        warp_steps([1200], 5.0)


def test_euler_sigmas_match_official_wan_sampling_sigmas():
    from official_ref import _ensure_bare_wan_package

    _ensure_bare_wan_package()
    fm = importlib.import_module("wan.utils.fm_solvers")
    for steps, shift in ((50, 5.0), (40, 12.0), (7, 3.0)):
        ref = fm.get_sampling_sigmas(steps, shift)
        got = EulerSchedule(num_steps=steps, shift=shift).sigmas
        assert len(got) == steps + 1 and got[-1] == 0.0
        assert got[:-1] == pytest.approx(list(ref), abs=1e-12)


def test_oracle_velocity_lands_on_the_data_point():
    # a model that predicts the exact flow v = noise - x0 for a fixed x0: both samplers must return x0
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 4, 3, 5, 6, generator=g)

    # Euler: x_sigma = (1-sigma) x0 + sigma n => v = (x - x0) / sigma is exact along the straight path
    sched = EulerSchedule(num_steps=6, shift=5.0)
    x = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    for i, s in enumerate(sched.sigmas[:-1]):
        v = (x - x0.double()) / s
        x = sched.step(x, v, i)
    assert torch.allclose(x, x0.double(), atol=1e-10)

    # few-step: predict x0 from v, re-noise with fresh noise; the last x0 equals x0
    fs = FewStepSchedule()
    noise = torch.randn(x0.shape, generator=g)
    xt = renoise(x0, noise, fs.sigmas[0])
    for k, s in enumerate(fs.sigmas):
        v = (xt - x0) / s
        pred = flow_to_x0(xt, v, s)
        assert torch.allclose(pred, x0, atol=1e-5)
        if k + 1 < len(fs.sigmas):
            xt = renoise(pred, torch.randn(x0.shape, generator=g), fs.sigmas[k + 1])


def test_shift_and_lookup_edges():
    assert shift_sigma(0.0, 5.0) == 0.0 and shift_sigma(1.0, 5.0) == 1.0
    assert nearest_table_sigma(0, 5.0) == 0.0
    assert nearest_table_sigma(1000, 5.0) == 1.0
