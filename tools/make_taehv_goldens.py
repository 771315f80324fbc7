"""Make the TAEHV golden files in ``tests/data/taehv/`` with the reference implementation.

The reference is madebyollin/taehv ``taehv.py`` (not on PyPI and not vendored here): pass the path of a
copy of it. For each architecture (taew2_1: 16 channels; taew2_2: 48 channels with patch 2;
taew2_2_super: the Super decoder) this builds the reference ``TAEHV`` with the reference's own blocks
at narrow widths (encoder 6, decoder 12/8/4/4 instead of 64 and 256/128/64/64; layer order and
indices as in the reference constructor), fills it with seeded random weights rounded to fp16, runs
the reference ``decode_video`` and ``encode_video`` (parallel; checked equal to the reference's
sequential / streaming mode) on seeded inputs, and saves weights (fp16), inputs (fp16) and outputs
(fp32) to ``<out>/<name>.safetensors`` (config and this command line in its metadata).

    python tools/make_taehv_goldens.py --taehv /tmp/taehv_ref.py --out tests/data/taehv
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

ENC_W = 6
DEC_W = (12, 8, 4, 4)
ARCHS = {
    # name: (latent channels, patch size, variant, latent T/h/w, frames F/H/W)
    "taew2_1": (16, 1, None, (3, 2, 3), (5, 16, 24)),
    "taew2_2": (48, 2, None, (2, 2, 2), (5, 32, 32)),
    "taew2_2_super": (48, 2, "super", (2, 2, 2), (1, 32, 32)),
}


def load_reference(path: str):
    spec = importlib.util.spec_from_file_location("taehv_reference", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["taehv_reference"] = mod
    spec.loader.exec_module(mod)
    return mod


def narrow_reference(ref, latent_channels: int, patch_size: int, variant):
    """The reference TAEHV with its encoder / decoder rebuilt from its own blocks at narrow widths."""
    model = ref.TAEHV(
        checkpoint_path=None, patch_size=patch_size, latent_channels=latent_channels, arch_variant=variant
    )
    c, w, n = model.image_channels * patch_size**2, ENC_W, DEC_W
    enc = [ref.conv(c, w), nn.ReLU(inplace=True)]
    for stride in (2, 2, 1):
        enc += [ref.TPool(w, stride), ref.conv(w, w, stride=2, bias=False)]
        enc += [ref.MemBlock(w, w) for _ in range(3)]
    enc.append(ref.conv(w, latent_channels))
    model.encoder = nn.Sequential(*enc)
    if variant == "super":
        dec = [nn.Conv2d(latent_channels, n[0], 1, bias=False)]
        for i, t in enumerate((1, 2, 2)):
            dec += [ref.SuperMemBlock(n[i]) for _ in range(3)]
            dec += [
                ref.conv(n[i], n[i + 1] * 4),
                nn.ReLU(inplace=True),
                nn.PixelShuffle(2),
                ref.TGrow(n[i + 1], t),
            ]
        dec.append(ref.conv(n[3], c))
    else:
        dec = [ref.Clamp(), ref.conv(latent_channels, n[0]), nn.ReLU(inplace=True)]
        for i, t in enumerate((1, 2, 2)):
            dec += [ref.MemBlock(n[i], n[i]) for _ in range(3)]
            dec += [nn.Upsample(scale_factor=2), ref.TGrow(n[i], t), ref.conv(n[i], n[i + 1], bias=False)]
        dec += [nn.ReLU(inplace=True), ref.conv(n[3], c)]
    model.decoder = nn.Sequential(*dec)
    return model


def fill_weights(model: nn.Module, seed: int) -> None:
    """Seeded weights ~ N(0, 0.64/fan_in) (biases N(0, 0.1^2), output bias 0.5), rounded to fp16 values."""
    g = torch.Generator().manual_seed(seed)
    last_bias = f"decoder.{len(model.decoder) - 1}.bias"
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("bias"):
                v = torch.randn(p.shape, generator=g) * 0.1 + (0.5 if name == last_bias else 0.0)
            else:
                fan_in = math.prod(p.shape[1:])
                v = torch.randn(p.shape, generator=g) * (0.8 / math.sqrt(fan_in))
            p.copy_(v.half().float())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--taehv", required=True, help="path to the reference taehv.py")
    ap.add_argument("--out", default="tests/data/taehv")
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    ref = load_reference(args.taehv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    for k, (name, (lc, p, variant, (t, h, w), (f, fh, fw))) in enumerate(ARCHS.items()):
        model = narrow_reference(ref, lc, p, variant).eval()
        fill_weights(model, args.seed + k)
        g = torch.Generator().manual_seed(args.seed + 100 + k)
        latents = torch.randn(1, t, lc, h, w, generator=g).half()  # NTCHW, as the reference takes
        frames = torch.rand(1, f, 3, fh, fw, generator=g).half()  # NTCHW in [0, 1]
        with torch.no_grad():
            decoded = model.decode_video(latents.float(), parallel=True, show_progress_bar=False)
            decoded_seq = model.decode_video(latents.float(), parallel=False, show_progress_bar=False)
            encoded = model.encode_video(frames.float(), parallel=True, show_progress_bar=False)
            encoded_seq = model.encode_video(frames.float(), parallel=False, show_progress_bar=False)
        d_err = (decoded - decoded_seq).abs().max().item()
        e_err = (encoded - encoded_seq).abs().max().item()
        clamped = ((decoded <= 0) | (decoded >= 1)).float().mean().item()
        print(
            f"{name}: decoded {tuple(decoded.shape)} (clamped {clamped:.1%}, parallel vs sequential {d_err:.1e}), "
            f"encoded {tuple(encoded.shape)} (parallel vs sequential {e_err:.1e})"
        )
        assert d_err < 1e-5 and e_err < 1e-5
        config = dict(
            latent_channels=lc,
            patch_size=p,
            variant=variant or "base",
            encoder_width=ENC_W,
            decoder_widths=DEC_W,
        )
        tensors = {f"state_dict.{k2}": v.half().contiguous() for k2, v in model.state_dict().items()}
        tensors["latents"] = latents  # [1, T, C, h, w] fp16
        tensors["decoded"] = decoded.float().contiguous()  # [1, 4T-3, 3, H, W] fp32 in [0, 1]
        tensors["frames"] = frames  # [1, F, 3, H, W] fp16 in [0, 1]
        tensors["encoded"] = encoded.float().contiguous()  # [1, ceil(F/4), C, h, w] fp32
        command = "python tools/make_taehv_goldens.py " + " ".join(sys.argv[1:])
        save_file(
            tensors, out / f"{name}.safetensors", metadata={"config": json.dumps(config), "command": command}
        )


if __name__ == "__main__":
    main()
