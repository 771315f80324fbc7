"""``python -m wan_core generate`` with the new families' presets on tiny files in their released layouts:
Causal Forcing++ (a training ``.pt``), Reward Forcing (a bare ``model.``-prefixed state dict), LongLive 2.0
5B (``{"generator": ...}`` of a tiny TI2V DiT; text and image, VAE and TAEHV); and the weight-set choice."""

import pytest
import torch
from PIL import Image
from tiny_models import make_tiny_models

from wan_core.__main__ import main


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    make_tiny_models(d, families=("t2v", "ti2v"))
    dm = d / "diffusion_models"
    sf = torch.load(dm / "self_forcing_dmd.pt", weights_only=True)
    torch.save(sf, dm / "causal_forcing_pp_framewise_2step.pt")
    torch.save(sf["generator"], dm / "rewardforcing.pt")  # the release: the generator state dict itself
    # causal-forcing chunk-wise with two different weight sets: generator = sf's, generator_ema = scaled
    ema = {k: v * 0.5 for k, v in sf["generator"].items()}
    torch.save({"generator": sf["generator"], "generator_ema": ema}, dm / "causal_forcing_chunkwise.pt")
    from safetensors.torch import load_file

    ti2v = load_file(str(dm / "wan2.2_ti2v_5B_fp16.safetensors"))
    torch.save({"generator": {"model." + k: v.float() for k, v in ti2v.items()}}, dm / "longlive2_5b_bf16.pt")
    Image.new("RGB", (64, 64), (200, 60, 30)).save(d / "start.png")
    return d


def _generate(models_dir, out, preset, frames, *extra):
    return main(
        [
            "generate", "--preset", preset, "--prompt", "a red fox running through snow",
            "--models-dir", str(models_dir), "--frames", str(frames), "--out", str(out), *extra,
        ]
    )  # fmt: skip


@pytest.mark.parametrize(
    "preset,frames,size,extra,chunks",
    [
        ("causal-forcing-pp-2step-1.3b", 13, (32, 48), ("--decoder", "taehv"), 4),  # 4 latent frames
        ("reward-forcing-1.3b", 45, (32, 48), ("--decoder", "vae"), 4),  # 12 latent: the sink blends at 4
        ("longlive2-5b", 61, (64, 64), ("--decoder", "taehv"), 2),  # 16 latent frames, chunks of 8
        ("longlive2-5b", 93, (64, 64), ("--decoder", "vae", "--image", "IMAGE", "--window", "8"), 3),  # rolls
    ],
)
def test_generate_new_family_presets(models_dir, tmp_path, capsys, preset, frames, size, extra, chunks):
    av = pytest.importorskip("av")
    out = tmp_path / "v.mp4"
    extra = tuple(str(models_dir / "start.png") if e == "IMAGE" else e for e in extra)
    rc = _generate(models_dir, out, preset, frames, "--height", str(size[0]), "--width", str(size[1]), *extra)
    assert rc == 0
    text = capsys.readouterr().out
    assert text.count("chunk ") == chunks and f"wrote {frames} frames" in text
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == frames


def test_weights_flag_picks_the_set(models_dir, tmp_path, capsys):
    args = ("--height", "32", "--width", "48", "--decoder", "taehv")
    assert _generate(models_dir, tmp_path / "a.mp4", "causal-forcing-chunkwise-1.3b", 9, *args) == 0
    assert "DiT weights: generator)" in capsys.readouterr().out  # the family's official set
    rc = _generate(
        models_dir,
        tmp_path / "b.mp4",
        "causal-forcing-chunkwise-1.3b",
        9,
        *args,
        "--weights",
        "generator_ema",
    )
    assert rc == 0 and "DiT weights: generator_ema)" in capsys.readouterr().out
    rc = _generate(models_dir, tmp_path / "c.mp4", "reward-forcing-1.3b", 9, *args, "--weights", "generator")
    assert rc == 2 and "holds one set of weights" in capsys.readouterr().err
