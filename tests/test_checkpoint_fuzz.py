"""Fuzz of the checked reader (seeded): random bytes, truncations and bit flips of real-layout files
(torch zip training dict, legacy torch file, safetensors DiT / VAE / UMT5, a malicious zip). Opening
and reading every tensor either works or raises ``CheckpointError``; nothing else escapes and no
payload ever runs."""

from __future__ import annotations

import os
import random

import pytest
import torch
from checkpoint_payloads import ENV_FLAG, ExecPayload, legacy_torch, torch_zip
from tiny_models import make_tiny_models

from wan_core.checkpoint import CheckpointError, load_state_dict, open_checkpoint

SEED = 20261202
CASES_PER_FILE = int(os.environ.get("WANSTREAM_FUZZ_CASES", "60"))


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz_models")
    make_tiny_models(root, families=("t2v", "i2v"))
    marker = root / "payload_ran"
    taehv = load_state_dict(root / "vae_approx/taew2_1.pth")
    legacy_torch(root / "legacy.pt", taehv, ExecPayload(marker))
    torch_zip(root / "evil.pt", taehv, ExecPayload(marker))
    torch.save(taehv, root / "legacy_clean.pt", _use_new_zipfile_serialization=False)
    files = {
        "dit_zip": root / "diffusion_models/self_forcing_dmd.pt",
        "dit_safetensors": root / "diffusion_models/wan2.1_i2v_480p_14B_fp16.safetensors",
        "vae": root / "vae/wan_2.1_vae.safetensors",
        "umt5": root / "text_encoders/umt5_xxl_fp16.safetensors",
        "taehv_zip": root / "vae_approx/taew2_1.pth",
        "legacy_clean": root / "legacy_clean.pt",
        "legacy_evil": root / "legacy.pt",
        "zip_evil": root / "evil.pt",
    }
    return {k: p.read_bytes() for k, p in files.items()}, marker


def _variants(data: bytes, rng: random.Random):
    n = len(data)
    yield "empty", b""
    for cut in (1, 4, 8, 9, 64, n // 3, n // 2, n - 1):
        yield f"cut{cut}", data[:cut]
    for i in range(CASES_PER_FILE):
        kind = i % 4
        if kind == 0:
            yield f"random{i}", rng.randbytes(rng.choice((3, 17, 300, n)))
        elif kind == 1:
            yield f"cut_random{i}", data[: rng.randrange(1, n)]
        else:  # bit flips, half of them in the first 4 KiB where headers and pickles live
            buf = bytearray(data)
            span = min(n, 4096) if kind == 2 else n
            for _ in range(rng.randint(1, 8)):
                pos = rng.randrange(span)
                buf[pos] ^= 1 << rng.randrange(8)
            yield f"flip{i}", bytes(buf)


@pytest.mark.parametrize(
    "name",
    ["dit_zip", "dit_safetensors", "vae", "umt5", "taehv_zip", "legacy_clean", "legacy_evil", "zip_evil"],
)
def test_only_checkpoint_errors_escape_and_no_payload_runs(originals, tmp_path, monkeypatch, name):
    data_by_name, marker = originals
    monkeypatch.delenv(ENV_FLAG, raising=False)
    rng = random.Random(f"{SEED}-{name}")
    outcomes = {"ok": 0, "refused": 0}
    suffix = ".safetensors" if name in ("dit_safetensors", "vae", "umt5") else ".pt"
    for label, blob in _variants(data_by_name[name], rng):
        path = tmp_path / f"{label}{suffix}"
        path.write_bytes(blob)
        try:
            ck = open_checkpoint(path)
            for _key, tensor in ck.items():  # every tensor is read, not just the header
                assert isinstance(tensor, torch.Tensor)
            outcomes["ok"] += 1
        except CheckpointError as e:
            assert str(path) in str(e), str(e)
            outcomes["refused"] += 1
        path.unlink()
    assert not marker.exists() and ENV_FLAG not in os.environ
    assert outcomes["refused"] >= 9  # at least the empty file and the fixed cuts


def test_fuzz_originals_are_readable(originals, tmp_path):
    """The unmodified clean files open (so the refusals above are about the damage)."""
    data_by_name, _ = originals
    for name in ("dit_zip", "dit_safetensors", "vae", "umt5", "taehv_zip", "legacy_clean"):
        p = tmp_path / (name + (".pt" if "zip" in name or "legacy" in name else ".safetensors"))
        p.write_bytes(data_by_name[name])
        assert len(open_checkpoint(p)) > 0


@pytest.mark.parametrize("depth", [100_000, 4])
def test_a_deeply_nested_safetensors_header_is_refused(tmp_path, depth):
    """``{"a":`` and many ``[``: the JSON parser's recursion must not escape as ``RecursionError``."""
    raw = b'{"a":' + b"[" * depth
    path = tmp_path / "deep.safetensors"
    path.write_bytes(len(raw).to_bytes(8, "little") + raw)
    with pytest.raises(CheckpointError, match="nested deeper") as info:
        open_checkpoint(path)
    assert str(path) in str(info.value)


def test_a_deeply_nested_shard_index_is_refused(tmp_path):
    path = tmp_path / "model.safetensors.index.json"
    path.write_bytes(b'{"weight_map":' + b"[" * 100_000)
    with pytest.raises(CheckpointError, match="not a valid sharded-checkpoint index"):
        open_checkpoint(path)


def test_a_closed_deep_header_is_refused_too(tmp_path):
    """Well-formed JSON nested past the format's 3 levels (which ``json.loads`` would parse)."""
    raw = b'{"a":{"shape":[[[1]]],"dtype":"F32","data_offsets":[0,4]}}'
    path = tmp_path / "deep.safetensors"
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + b"\0" * 4)
    with pytest.raises(CheckpointError, match="nested deeper"):
        open_checkpoint(path)
