"""The new families' released DiT key layouts (``tests/data/keys/*_generator.txt``, written by
``tools/make_family_key_manifests.py`` from the official ``CausalWanModel`` at real size on the meta device):
planned onto our ``WanDiT`` at real size (every key mapped, shapes equal, the right config), and synthetic
files with those key names in each release's container loaded strictly.

Containers: LongLive 2.0 ``model_bf16.pt`` -> ``{"generator": {model.*}}`` (``load_generator_checkpoint``
unwraps ``generator`` / ``model``); Reward Forcing ``rewardforcing.pt`` -> the bare ``{model.*}`` state
dict (``inference.py`` loads it whole); Causal Forcing(++) -> ``{"generator", "generator_ema"}``."""

import json
from pathlib import Path

import pytest
import torch
from official_ref import randomize_

from wan_core.dit import PRESETS, WanDiT, WanDiTConfig
from wan_core.dit.loader import build_meta_dit, load_dit, plan_dit_load

KEYS = Path(__file__).parent / "data" / "keys"
LAYOUTS = {
    "longlive2_5b_generator": ("wan2.2-ti2v-5b", "generator"),
    "reward_forcing_1.3B_generator": ("wan2.1-t2v-1.3b", None),
    "causal_forcing_1.3B_generator": ("wan2.1-t2v-1.3b", "both"),
}


def _read(name):
    rows = {}
    for line in (KEYS / f"{name}.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            k, s = line.split("\t")
            rows[k] = tuple(json.loads(s))
    return rows


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_real_size_layout_plans_onto_wandit(name):
    shapes = _read(name)
    want = PRESETS[LAYOUTS[name][0]]
    plan = plan_dit_load(shapes, {k: torch.bfloat16 for k in shapes})
    assert plan.config == want and not plan.unexpected
    assert "model." in plan.format or "wrapper" in plan.format
    sd = build_meta_dit(plan).state_dict()
    assert set(plan.mapping) == set(sd) and set(plan.mapping.values()) == set(shapes)
    assert all(tuple(sd[n].shape) == shapes[k] for n, k in plan.mapping.items())


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_synthetic_release_file_loads_strictly(tmp_path, name):
    """A tiny DiT with the release's 30 layers, its keys renamed exactly as in the manifest, in the
    release's container: loads strictly, equal to the source."""
    shapes = _read(name)
    preset, sets = LAYOUTS[name]
    real = PRESETS[preset]
    cfg = WanDiTConfig(
        dim=128, ffn_dim=64, num_heads=1, num_layers=real.num_layers, in_dim=real.in_dim, out_dim=real.out_dim,
        model_type=real.model_type,
    )  # fmt: skip
    src = randomize_(WanDiT(cfg), seed=3, std=0.05).eval()
    state = {"model." + k: v for k, v in src.state_dict().items()}
    assert set(state) == set(shapes), sorted(set(state) ^ set(shapes))[:4]
    path = tmp_path / "release.pt"
    if sets is None:
        torch.save(state, path)
    elif sets == "generator":
        torch.save({"generator": state}, path)
    else:
        torch.save({"generator": state, "generator_ema": state, "critic": {"w": torch.zeros(1)}}, path)
    got = load_dit(path, dtype=torch.float32)
    assert got.config == cfg
    assert all(torch.equal(got.state_dict()[k], v) for k, v in src.state_dict().items())
