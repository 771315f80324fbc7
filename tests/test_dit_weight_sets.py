"""Weight sets of training checkpoints: a LongLive-style file holding both ``generator`` and
``generator_ema`` (and a critic) loads the family's official set by default and the other on request; an
absent set is refused naming the ones the file holds; the load reports the set it read."""

import pytest
import torch
from official_ref import randomize_

from wan_core.checkpoint import CheckpointError
from wan_core.dit import WanDiT, WanDiTConfig
from wan_core.dit.loader import load_dit
from wan_core.rollout.presets import PRESETS, get_preset, official_weight_set

CFG = WanDiTConfig(dim=128, ffn_dim=64, num_heads=1, num_layers=2, text_dim=32, in_dim=16, out_dim=16)


def _sd(seed):
    return {"model." + k: v for k, v in randomize_(WanDiT(CFG), seed, std=0.05).state_dict().items()}


@pytest.fixture(scope="module")
def training_file(tmp_path_factory):
    """{generator, generator_ema (FSDP-mangled, as LongLive's EMA saves), critic}: two different DiTs."""
    gen, ema = _sd(1), _sd(2)
    ema = {k.replace("model.", "model._fsdp_wrapped_module.", 1): v for k, v in ema.items()}
    path = tmp_path_factory.mktemp("w") / "longlive_base.pt"
    torch.save({"generator": gen, "generator_ema": ema, "critic": {"w": torch.zeros(3)}}, path)
    return path, gen, {k.replace("_fsdp_wrapped_module.", ""): v for k, v in ema.items()}


def _same(model, sd):
    return all(torch.equal(model.state_dict()[k[len("model.") :]], v) for k, v in sd.items())


def test_family_default_and_explicit_choice(training_file):
    path, gen, ema = training_file
    longlive = get_preset("longlive-1.3b")
    auto = load_dit(path, dtype=torch.float32, weights="auto", prefer=longlive.weight_set)
    assert _same(auto, gen) and not _same(auto, ema)  # LongLive's inference: use_ema false
    assert auto.weight_set == "generator" and "['generator']" in auto.load_format
    other = load_dit(path, dtype=torch.float32, weights="generator_ema", prefer=longlive.weight_set)
    assert _same(other, ema) and other.weight_set == "generator_ema"
    # Self-Forcing's official choice on the same layout is the EMA
    sf = load_dit(path, dtype=torch.float32, prefer=get_preset("self-forcing-1.3b").weight_set)
    assert _same(sf, ema) and sf.weight_set == "generator_ema"
    # Load Wan DiT's auto: the family by the file name (longlive_base.pt -> generator)
    assert official_weight_set(str(path)) == "generator"
    # no family known: the loader's auto prefers the EMA (the former behaviour for every file)
    assert official_weight_set("my_finetune.pt") is None
    assert _same(load_dit(path, dtype=torch.float32), ema)


def test_auto_takes_the_only_set_there_is(tmp_path):
    only_gen = tmp_path / "causvid.pt"
    torch.save({"generator": _sd(5)}, only_gen)
    assert load_dit(only_gen, dtype=torch.float32, prefer="generator_ema").weight_set == "generator"
    flat = tmp_path / "rewardforcing.pt"
    torch.save(_sd(6), flat)
    assert load_dit(flat, dtype=torch.float32, prefer="generator").weight_set == "the file's only set"


def test_absent_or_inapplicable_set_is_refused(tmp_path):
    only_gen = tmp_path / "causvid.pt"
    torch.save({"generator": _sd(3)}, only_gen)
    with pytest.raises(
        CheckpointError, match=r"holds the weight set\(s\) \['generator'\], not 'generator_ema'"
    ):
        load_dit(only_gen, weights="generator_ema")
    assert load_dit(only_gen, dtype=torch.float32, weights="generator").weight_set == "generator"
    flat = tmp_path / "rewardforcing.pt"  # Reward Forcing's release: a bare generator state dict
    torch.save(_sd(4), flat)
    with pytest.raises(CheckpointError, match="holds one set of weights"):
        load_dit(flat, weights="generator")
    m = load_dit(flat, dtype=torch.float32)
    assert m.weight_set == "the file's only set" and "weights" not in m.load_format
    with pytest.raises(ValueError, match="weights must be one of"):
        load_dit(flat, weights="critic")


def test_official_weight_sets_of_the_families():
    want = {
        "self-forcing-1.3b": "generator_ema",  # Self-Forcing inference --use_ema
        "longlive-1.3b": "generator",  # LongLive 1.0 use_ema: false
        "longlive2-5b": "generator",  # LongLive 2.0 use_ema: false
        "causal-forcing-chunkwise-1.3b": "generator",  # README: no --use_ema
        "causal-forcing-framewise-1.3b": "generator_ema",  # README: --use_ema
        "causal-forcing-pp-2step-1.3b": "generator_ema",
        "causal-forcing-pp-1step-1.3b": "generator_ema",
    }
    for name, ws in want.items():
        assert PRESETS[name].weight_set == ws, name
        assert official_weight_set(PRESETS[name].dit.name) == ws
    assert official_weight_set("model_bf16.pt") == "generator"  # LongLive 2.0's published name
    with pytest.raises(ValueError, match="weight_set must be one of"):
        get_preset("self-forcing-1.3b").with_overrides(weight_set="ema")
