"""``python -m wan_core generate`` with the Rolling Forcing and Krea (KV recompute) presets on tiny files:
the tiny Self-Forcing generator saved under each preset's file name (RF: the same ``.pt`` layout; Krea:
a ``model.``-prefixed safetensors export)."""

import shutil

import pytest
import torch
from safetensors.torch import save_file
from tiny_models import make_tiny_models

from wan_core.__main__ import main


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    make_tiny_models(d, families=("t2v",))
    dm = d / "diffusion_models"
    shutil.copy(dm / "self_forcing_dmd.pt", dm / "rolling_forcing_dmd.pt")
    sd = torch.load(dm / "self_forcing_dmd.pt", weights_only=True)["generator"]
    save_file({k: v.contiguous() for k, v in sd.items()}, str(dm / "krea-realtime-video-14b.safetensors"))
    return d


@pytest.mark.parametrize(
    "preset,frames,decoder,chunks",
    [("rolling-forcing-1.3b", 21, "taehv", 2), ("krea-realtime-14b", 33, "vae", 3)],
)
def test_generate_with_scheme_presets(models_dir, tmp_path, capsys, preset, frames, decoder, chunks):
    av = pytest.importorskip("av")
    out = tmp_path / "v.mp4"
    rc = main(
        [
            "generate", "--preset", preset, "--prompt", "a red fox running through snow",
            "--models-dir", str(models_dir), "--frames", str(frames), "--height", "32", "--width", "48",
            "--out", str(out), "--decoder", decoder,
        ]
    )  # fmt: skip
    assert rc == 0
    text = capsys.readouterr().out
    assert text.count("chunk ") == chunks and f"wrote {frames} frames" in text
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == frames
