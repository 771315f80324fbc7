"""Every preset's rollout reproduces its golden latents exactly (CPU, fp32, tiny random weights).

The goldens (``tests/data/rollout_goldens.safetensors``) were recorded by ``tools/make_rollout_goldens.py``
from the pipeline before it was split into plug-in schemes; the cases are in ``rollout_golden_cases.py``
(window + sink, prompt switches, RoPE modes, I2V / TI2V, Krea, Rolling Forcing, A14B, CFG, endless, ...).
A refactor of the rollout must keep every case ``torch.equal``. Regenerate the file only for an intended
change of the numbers, and say so in the commit.
"""

import functools
import json
from pathlib import Path

import pytest
import torch
from rollout_golden_cases import CASES, run_case
from safetensors import safe_open

from wan_core.rollout import PRESETS

DATA = Path(__file__).parent / "data" / "rollout_goldens.safetensors"


@functools.cache
def _stored() -> tuple[list[str], dict[str, torch.Tensor]]:
    with safe_open(str(DATA), framework="pt") as f:
        return json.loads(f.metadata()["cases"]), {k: f.get_tensor(k) for k in f.keys()}


@functools.cache
def _run(name: str) -> dict[str, torch.Tensor]:
    return run_case(name)


def _golden(name: str) -> dict[str, torch.Tensor]:
    cases, tensors = _stored()
    want = {k[len(name) + 1 :]: v for k, v in tensors.items() if k.startswith(name + "/")}
    if name not in cases or not want:
        pytest.fail(
            f"case {name!r} has no goldens in {DATA.name}: record it with tools/make_rollout_goldens.py"
        )
    return want


def _compare(name: str, got: dict, want: dict, keys) -> None:
    missing = sorted(k for k in keys if k not in got)
    extra = sorted(k for k in keys if k in got and k not in want)
    assert not missing and not extra, f"{name}: not produced {missing}, not in the goldens {extra}"
    problems = []
    for k in sorted(keys, key=lambda k: (len(k), k)):
        a, b = got[k], want[k]
        if a.shape != b.shape or a.dtype != b.dtype:
            problems.append(f"{k}: got {tuple(a.shape)} {a.dtype}, golden {tuple(b.shape)} {b.dtype}")
        elif not torch.equal(a, b):
            d = (a.double() - b.double()).abs()
            problems.append(
                f"{k}: max |diff| {d.max().item():.3e} (golden max |x| {b.double().abs().max().item():.3e}), "
                f"{int((d > 0).sum())} of {d.numel()} values differ"
            )
    assert not problems, f"{name} ({CASES[name].what}) differs from its goldens:\n  " + "\n  ".join(problems)


def test_file_holds_exactly_the_defined_cases():
    cases, tensors = _stored()
    assert sorted(cases) == sorted(CASES), "tools/make_rollout_goldens.py records the cases; rerun it"
    for name in cases:
        assert any(k.startswith(name + "/") and "chunk" in k for k in tensors), f"{name}: no latents stored"


def test_every_preset_has_a_golden_case():
    covered = {c.preset for c in CASES.values()}
    assert set(PRESETS) <= covered, f"presets without a golden case: {sorted(set(PRESETS) - covered)}"


@pytest.mark.parametrize("name", list(CASES))
def test_rollout_equals_golden(name):
    want = _golden(name)
    got = _run(name)
    _compare(name, got, want, [k for k in set(got) | set(want) if k != "progress"])


@pytest.mark.parametrize("name", list(CASES))
def test_progress_equals_golden(name):
    """The progress callback's (steps done, total or -1, chunk) sequence is unchanged too."""
    want = _golden(name)
    _compare(name, _run(name), want, ["progress"])
