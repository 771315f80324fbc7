"""The DiT and UMT5 loaders never hold a full fp32 copy of the model in RAM; fp8 weights stay 1 byte.

Synthetic fp32 / fp8-scaled checkpoints with the real key layouts (a few hundred MB) are written
tensor by tensor, then loaded in a fresh subprocess that reports its resident memory: ``VmRSS`` right
before loading (torch and the loaders imported, one tiny model built on meta to pull in torch's lazy
imports) and the peak (``ru_maxrss``) after.

What the peak holds: safetensors memory-maps the file, and every page a reader touches stays counted
in RSS while the file is open (file-backed, reclaimable page cache). A loader that reads every tensor
therefore adds up to the file size on top of what it allocates. So the test bounds the peak increase
*beyond the file size*: a tensor-by-tensor loader allocates the bf16 model (0.5 x fp32) plus one
tensor; a loader that holds the fp32 state dict in RAM allocates >= 1.0 x fp32 on top. Two naive
loaders are run through the same measurement to show that the bound fails for them: reading the whole
file into memory (``safetensors.torch.load(bytes)``), and building the model in fp32 on the CPU before
casting it. (``safetensors.torch.load_file`` + ``.to(bf16)`` is *not* among them: its tensors are
views of the same mmapped pages, so it allocates only the bf16 copies, measured equal to the loader.)
Tensors that need no conversion (fp8 weights, bf16 tensors of a bf16 target) stay views on the mmapped
file too: the fp8 model costs no anonymous memory at all until its pages are read.
"""

import json
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from wan_core.dit import WanDiT, WanDiTConfig

ROOT = Path(__file__).resolve().parents[1]
FP8 = torch.float8_e4m3fn
PREFIX = "model.diffusion_model."  # ComfyUI layout (the fp8-scaled files ship this way)
# 3 blocks of dim 1024 / ffn 4096: ~60 M parameters, ~240 MB in fp32
CFG = WanDiTConfig(dim=1024, ffn_dim=4096, num_heads=8, num_layers=3)
BOUND = 0.75  # allowed allocation beyond the mmapped file, as a fraction of the fp32 model
_ST_NAMES = {torch.float32: "F32", torch.bfloat16: "BF16", FP8: "F8_E4M3"}


def meta_shapes() -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = WanDiT(CFG)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def is_block_linear_weight(name: str) -> bool:
    return (
        name.startswith("blocks.")
        and name.endswith(".weight")
        and ".norm" not in name
        and (".ffn." in name or ".self_attn." in name or ".cross_attn." in name)
    )


def write_safetensors(path: Path, tensors: list[tuple[str, tuple[int, ...], torch.dtype]], make) -> int:
    """Write a .safetensors file one tensor at a time (``make(name, shape, dtype)`` builds each), so
    the writer never holds the model either. Returns the file size."""
    header, offset = {}, 0
    for name, shape, dtype in tensors:
        n = torch.Size(shape).numel() * dtype.itemsize
        header[name] = {"dtype": _ST_NAMES[dtype], "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob)
        for name, shape, dtype in tensors:
            t = make(name, shape, dtype).contiguous()
            assert t.dtype == dtype and tuple(t.shape) == shape
            f.write(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return path.stat().st_size


def _random(name, shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g) * 0.02


@pytest.fixture(scope="module")
def fp32_file(tmp_path_factory):
    shapes = meta_shapes()
    path = tmp_path_factory.mktemp("loadmem") / "dit_fp32.safetensors"
    specs = [(k, s, torch.float32) for k, s in shapes.items()]
    seeds = {k: i for i, k in enumerate(shapes)}
    size = write_safetensors(path, specs, lambda n, s, d: _random(n, s, seeds[n]))
    fp32_bytes = sum(torch.Size(s).numel() * 4 for s in shapes.values())
    assert fp32_bytes > 200e6 and size >= fp32_bytes
    return path, fp32_bytes


@pytest.fixture(scope="module")
def fp8_file(tmp_path_factory):
    """ComfyUI legacy fp8-scaled layout: block Linear weights fp8 + ``scale_weight``, the rest bf16."""
    shapes = meta_shapes()
    path = tmp_path_factory.mktemp("loadmem") / "dit_fp8_scaled.safetensors"
    specs = [(PREFIX + "scaled_fp8", (2,), FP8)]
    for k, s in shapes.items():
        if is_block_linear_weight(k):
            specs += [
                (PREFIX + k, s, FP8),
                (PREFIX + k[: -len(".weight")] + ".scale_weight", (), torch.float32),
            ]
        else:
            specs.append((PREFIX + k, s, torch.bfloat16))
    seeds = {k: i for i, (k, _, _) in enumerate(specs)}

    def make(name, shape, dtype):
        if name.endswith(".scale_weight"):
            return torch.tensor(0.02 / 2.0)
        return _random(name, shape, seeds[name]).to(dtype)

    write_safetensors(path, specs, make)
    return path, shapes


CHILD = textwrap.dedent(
    """
    import json, resource, sys
    import torch
    import safetensors.torch
    from wan_core.dit import WanDiT, WanDiTConfig
    from wan_core.dit.loader import build_meta_dit, load_dit, plan_dit_load
    from wan_core.quant import is_fp8
    from wan_core.text import UMT5Config, UMT5Encoder, load_umt5
    from wan_core.text.loader import umt5_config_from_shapes, umt5_key_map

    def status_bytes(field):
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024

    def rss_now():
        return status_bytes("VmRSS")

    def reset_peak():
        # the peak is a high-water mark since process start: reset it (Linux clear_refs "5" resets
        # VmHWM) so that a transient peak while importing never counts as the loader's
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    def dequantized_bf16(sd, plan):
        out = {}
        for name, key in plan.mapping.items():
            t = sd[key]
            if is_fp8(t.dtype):
                t = t.to(torch.bfloat16) * sd[key[: -len(".weight")] + ".scale_weight"].to(torch.bfloat16)
            out[name] = t.to(torch.bfloat16)
        return out

    def naive_load(path, mode):
        # "read": the whole file read into RAM, every tensor made, then converted to bf16
        # "fp32_model": the model built in fp32 on the CPU, filled from the file, then cast to bf16
        sd = safetensors.torch.load(open(path, "rb").read()) if mode == "read" else safetensors.torch.load_file(path)
        plan = plan_dit_load({k: tuple(v.shape) for k, v in sd.items()})  # plain model, no fp8 kept
        if mode == "fp32_model":
            model = WanDiT(plan.config)
            model.load_state_dict({n: t.float() for n, t in dequantized_bf16(sd, plan).items()} if any(
                is_fp8(t.dtype) for t in sd.values()) else {n: sd[k] for n, k in plan.mapping.items()})
            return model.to(torch.bfloat16)
        model = build_meta_dit(plan)
        model.load_state_dict(dequantized_bf16(sd, plan), assign=True)
        return model

    def naive_umt5(path):  # the whole file read into RAM, then converted
        sd = safetensors.torch.load(open(path, "rb").read())
        key_map, _ = umt5_key_map(list(sd))
        with torch.device("meta"):
            model = UMT5Encoder(umt5_config_from_shapes({n: tuple(sd[k].shape) for n, k in key_map.items()}))
        model.load_state_dict({n: sd[k].to(torch.bfloat16) for n, k in key_map.items()}, assign=True)
        return model

    # warm-up: the first module built on meta imports more of torch (sympy & co, ~160 MB RSS) once
    with torch.device("meta"):
        UMT5Encoder(UMT5Config(vocab_size=8, dim=8, attn_dim=8, ffn_dim=8, num_heads=2, num_layers=1))
        WanDiT(WanDiTConfig(dim=32, ffn_dim=32, num_heads=2, num_layers=1, text_dim=8, freq_dim=8))

    mode, path = sys.argv[1], sys.argv[2]
    peak_was_reset = reset_peak()
    before = rss_now()
    if mode == "loader":
        model = load_dit(path, dtype=torch.bfloat16)
    elif mode == "umt5_loader":
        model = load_umt5(path, dtype=torch.bfloat16)
    elif mode == "umt5_read":
        model = naive_umt5(path)
    else:
        model = naive_load(path, mode)
    peak = status_bytes("VmHWM") if peak_was_reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    params = list(model.state_dict().items())
    report = {
        "before": before,
        "peak": peak,
        "param_bytes": sum(t.numel() * t.element_size() for _, t in params),
        "dtypes": {n: str(t.dtype) for n, t in params},
    }
    print("REPORT " + json.dumps(report))
    """
)


def measure(mode: str, path: Path) -> dict:
    r = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(path)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr[-4000:]
    line = next(x for x in r.stdout.splitlines() if x.startswith("REPORT "))
    rep = json.loads(line[len("REPORT ") :])
    rep["file"] = path.stat().st_size
    rep["extra"] = rep["peak"] - rep["before"] - rep["file"]  # allocated beyond the touched file pages
    return rep


def _mb(x):
    return f"{x / 2**20:.0f} MB"


def test_fp32_file_loads_to_bf16_without_an_fp32_copy(fp32_file):
    path, fp32_bytes = fp32_file
    rep = measure("loader", path)
    print(
        f"loader: peak +{_mb(rep['peak'] - rep['before'])}, beyond file {_mb(rep['extra'])}, fp32 {_mb(fp32_bytes)}"
    )
    assert set(rep["dtypes"].values()) == {"torch.bfloat16"}
    assert rep["param_bytes"] == fp32_bytes // 2
    assert rep["extra"] < BOUND * fp32_bytes, (
        f"loading allocated {_mb(rep['extra'])} beyond the {_mb(rep['file'])} file; the fp32 model is "
        f"{_mb(fp32_bytes)}: the loader holds (most of) a full-precision copy"
    )


@pytest.mark.parametrize("naive", ["read", "fp32_model"])
def test_the_bound_catches_loaders_that_hold_an_fp32_copy(fp32_file, naive):
    path, fp32_bytes = fp32_file
    rep = measure(naive, path)
    print(f"{naive}: peak +{_mb(rep['peak'] - rep['before'])}, beyond file {_mb(rep['extra'])}")
    assert rep["param_bytes"] == fp32_bytes // 2  # same result ...
    assert rep["extra"] > BOUND * fp32_bytes  # ... but the measurement sees the fp32 copy


def test_fp8_scaled_file_keeps_one_byte_weights(fp8_file):
    path, shapes = fp8_file
    linear = {k for k in shapes if is_block_linear_weight(k)}
    n_fp8 = sum(torch.Size(shapes[k]).numel() for k in linear)
    n_rest = sum(torch.Size(s).numel() for k, s in shapes.items() if k not in linear)
    expected = n_fp8 * 1 + n_rest * 2 + len(linear) * 4  # fp8 weights, bf16 rest, fp32 scales
    assert n_fp8 > 3 * n_rest  # the Linear weights are the bulk of the model

    rep = measure("loader", path)
    print(
        f"fp8 loader: peak +{_mb(rep['peak'] - rep['before'])}, beyond file {_mb(rep['extra'])}, model {_mb(expected)}"
    )
    dtypes = rep["dtypes"]
    assert {dtypes[k] for k in linear} == {"torch.float8_e4m3fn"}
    assert {dtypes[k[: -len(".weight")] + ".weight_scale"] for k in linear} == {"torch.float32"}
    assert {d for k, d in dtypes.items() if k not in linear and not k.endswith(".weight_scale")} == {
        "torch.bfloat16"
    }
    assert rep["param_bytes"] == expected
    # fp8 weights are not even copied; dequantizing them to bf16 (2 bytes a weight) would need > 1x
    assert rep["extra"] < expected, f"allocated {_mb(rep['extra'])} for a {_mb(expected)} model"

    naive = measure("read", path)
    print(f"fp8 naive (dequantized): beyond file {_mb(naive['extra'])}")
    assert naive["extra"] > expected


# UMT5 in the official Wan layout (``models_t5_umt5-xxl-enc-bf16.pth`` names), ~40 M parameters
UMT5_VOCAB, UMT5_DIM, UMT5_FFN, UMT5_HEADS, UMT5_LAYERS = 8192, 1024, 2048, 16, 3


def umt5_shapes() -> dict[str, tuple[int, ...]]:
    d, f = UMT5_DIM, UMT5_FFN
    shapes = {"token_embedding.weight": (UMT5_VOCAB, d)}
    for i in range(UMT5_LAYERS):
        b = f"blocks.{i}."
        shapes[b + "norm1.weight"] = (d,)
        shapes.update({b + f"attn.{x}.weight": (d, d) for x in "qkvo"})
        shapes[b + "norm2.weight"] = (d,)
        shapes[b + "ffn.gate.0.weight"] = (f, d)
        shapes[b + "ffn.fc1.weight"] = (f, d)
        shapes[b + "ffn.fc2.weight"] = (d, f)
        shapes[b + "pos_embedding.embedding.weight"] = (32, UMT5_HEADS)
    shapes["norm.weight"] = (d,)
    return shapes


def test_umt5_fp32_file_loads_to_bf16_without_an_fp32_copy(tmp_path):
    shapes = umt5_shapes()
    manifest = (Path(__file__).parent / "data" / "keys" / "umt5_xxl_encoder_official.txt").read_text()
    layout = {line.split("\t")[0] for line in manifest.splitlines() if line and not line.startswith("#")}
    first_layers = {k for k in layout if not k.startswith("blocks.") or int(k.split(".")[1]) < UMT5_LAYERS}
    assert set(shapes) == first_layers  # the real key layout, cut to UMT5_LAYERS blocks
    path = tmp_path / "umt5_fp32.safetensors"
    seeds = {k: i for i, k in enumerate(shapes)}
    write_safetensors(
        path, [(k, s, torch.float32) for k, s in shapes.items()], lambda n, s, d: _random(n, s, seeds[n])
    )
    fp32_bytes = sum(torch.Size(s).numel() * 4 for s in shapes.values())

    rep = measure("umt5_loader", path)
    print(
        f"umt5 loader: peak +{_mb(rep['peak'] - rep['before'])}, beyond file {_mb(rep['extra'])}, fp32 {_mb(fp32_bytes)}"
    )
    assert set(rep["dtypes"].values()) == {"torch.bfloat16"}
    assert rep["param_bytes"] == fp32_bytes // 2
    assert rep["extra"] < BOUND * fp32_bytes

    naive = measure("umt5_read", path)
    print(f"umt5 naive (read): beyond file {_mb(naive['extra'])}")
    assert naive["param_bytes"] == fp32_bytes // 2
    assert naive["extra"] > BOUND * fp32_bytes
