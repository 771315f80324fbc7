"""Load any Wan 2.1 / 2.2 DiT checkpoint users have into ``WanDiT`` (or ``DualExpertDiT`` for A14B).

Formats are detected from the keys (see ``keymap``): official (bare keys, single file or sharded folder
with ``diffusion_pytorch_model.safetensors.index.json``), ComfyUI repackaged (``model.diffusion_model.``),
training wrappers (``model.``: Self-Forcing / CausVid / LongLive ``.pt`` dicts holding the weight sets
``generator`` and ``generator_ema``, chosen by ``weights``; Krea realtime 14B safetensors), diffusers ``WanTransformer3DModel``. Weights may be fp32 / bf16 / fp16,
plain fp8 (e4m3fn / e5m2) or fp8 "scaled" (legacy ``scale_weight`` + ``scaled_fp8`` marker, or new
``weight_scale`` / ``input_scale`` / ``comfy_quant``): fp8 Linear weights stay fp8 in
``ScaledFP8Linear`` with their scale.

The config comes from the key shapes; the model is built on the meta device and filled strictly,
tensor by tensor, in the target dtype (no full-precision copy of the model is ever held).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..attention import resolve_backend
from ..checkpoint import Checkpoint, CheckpointError, expect_kind, load_into, open_checkpoint
from ..file_format import PICKLE, SAFETENSORS, TORCH_ZIP, sniff
from ..memory import DIT_LOAD_FIXES, describe_load, explain_oom
from ..quant import is_fp8, split_quant_keys, swap_fp8_linears
from .config import WanDiTConfig, config_from_shapes, preset_name_for, unsupported_family
from .keymap import (
    BUNDLED_PREFIXES,
    WEIGHT_CHOICES,
    WEIGHT_SETS,
    diffusers_to_official,
    is_diffusers,
    strip_prefix,
    weight_set_wrappers,
)
from .model import DualExpertDiT, WanDiT

__all__ = ["DiTLoadPlan", "plan_dit_load", "build_meta_dit", "load_dit", "weight_set_of", "A14B_SUBFOLDERS"]

WHAT = "Load Wan DiT"
A14B_SUBFOLDERS = ("high_noise_model", "low_noise_model")  # official Wan2.2 A14B folder
DIFFUSERS_SUBFOLDERS = ("transformer", "transformer_2")  # diffusers WanPipeline: high, low noise
_FP8_FORMATS = ("float8_e4m3fn", "float8_e5m2")


@dataclass
class DiTLoadPlan:
    """How a checkpoint's keys become ``WanDiT`` parameters (computed from names/shapes/dtypes only)."""

    config: WanDiTConfig
    format: str  # e.g. "comfyui (model.diffusion_model.) + fp8 scaled (legacy scale_weight)"
    mapping: dict[str, str]  # model parameter name -> checkpoint key
    fp8_layers: list[str]  # Linear layers kept in fp8 (ScaledFP8Linear)
    unit_scales: list[str] = field(default_factory=list)  # fp8 layers without a stored scale (scale 1)
    ignored: list[str] = field(default_factory=list)  # quantization markers / input scales
    unexpected: list[str] = field(default_factory=list)  # checkpoint keys with no place in the model

    def describe(self) -> str:
        preset = preset_name_for(self.config)
        c = self.config
        size = preset or f"dim {c.dim}, {c.num_layers} layers, in {c.in_dim} / out {c.out_dim}"
        return f"{self.format} Wan DiT, {c.model_type} ({size})"


def _quant_format(keys: list[str], dtypes: dict[str, torch.dtype]) -> str:
    if any(k == "scaled_fp8" or k.endswith(".scaled_fp8") for k in keys):
        return "fp8 scaled (legacy scale_weight)"
    if any(k.endswith((".weight_scale", ".comfy_quant")) for k in keys):
        return "fp8 scaled (weight_scale / comfy_quant)"
    if any(is_fp8(dt) for dt in dtypes.values()):
        return "fp8 (unscaled)"
    return ""


def plan_dit_load(
    shapes: dict[str, tuple[int, ...]],
    dtypes: dict[str, torch.dtype] | None = None,
    head_dim: int = 128,
) -> DiTLoadPlan:
    """Detect format and config from checkpoint key names, shapes and dtypes; map every key."""
    keys = list(shapes)
    dtypes = dtypes or {}
    prefix, fmt = strip_prefix(keys)
    names: dict[str, str] = {}  # official-style name -> checkpoint key
    bundled = [k for k in keys if prefix and k.startswith(BUNDLED_PREFIXES)]
    for k in keys:
        if k not in bundled:
            names[k[len(prefix) :] if prefix and k.startswith(prefix) else k] = k
    diffusers = is_diffusers(list(names))
    unexpected: list[str] = []
    if diffusers:
        converted = {}
        for n, k in names.items():
            o = diffusers_to_official(n)
            if o is None and not n.endswith("scaled_fp8"):
                unexpected.append(k)
            else:
                converted[o if o is not None else n] = k
        names = converted
    fmt_name = ("diffusers" if diffusers else fmt) + (f" ({prefix})" if prefix else "")
    quant = _quant_format(list(names), {n: dtypes.get(k, torch.float32) for n, k in names.items()})
    if quant:
        fmt_name += " + " + quant
    if bundled:
        fmt_name += " (all-in-one: bundled VAE / text encoders ignored)"

    scales, drop = split_quant_keys(list(names))
    ignored = [names[d] for d in drop] + bundled
    scale_keys = {names[s] for s in scales.values()}
    mapping: dict[str, str] = {}
    for n, k in names.items():
        if k in ignored or k in scale_keys:
            continue
        mapping[n] = k
    # fp8 Linear weights stay fp8 (every 2-D ``.weight`` of the DiT is a Linear's); other fp8 tensors
    # (Conv3d patch embedding, norms, modulation) are upcast to the target dtype.
    fp8_layers = sorted(
        n[: -len(".weight")]
        for n, k in mapping.items()
        if n.endswith(".weight") and is_fp8(dtypes.get(k, torch.float32)) and len(shapes[k]) == 2
    )
    unit_scales = []
    for layer in fp8_layers:
        if layer in scales:
            mapping[f"{layer}.weight_scale"] = names[scales[layer]]
        else:
            unit_scales.append(layer)
    stray = [names[s] for layer, s in scales.items() if layer not in fp8_layers]
    unexpected += stray  # a scale for a weight that is not fp8

    official_shapes = {n: tuple(shapes[k]) for n, k in mapping.items()}
    config = config_from_shapes(official_shapes, head_dim=head_dim)
    return DiTLoadPlan(config, fmt_name, mapping, fp8_layers, unit_scales, ignored, unexpected)


def build_meta_dit(plan: DiTLoadPlan) -> WanDiT:
    """The model of ``plan`` on the meta device (fp8 Linears swapped in); no memory used."""
    with torch.device("meta"):
        model = WanDiT(plan.config)
    swap_fp8_linears(model, plan.fp8_layers)
    return model


def _container(path: Path) -> str:
    """The container the file's first bytes show (the extension is not trusted)."""
    if path.is_dir():
        return "folder"
    try:
        found = sniff(path)
    except OSError:
        return "unreadable"
    labels = {
        SAFETENSORS: "safetensors",
        TORCH_ZIP: "pickle (torch zip .pt/.pth)",
        PICKLE: "pickle (legacy .pt/.pth)",
    }
    return labels.get(found.kind, found.what)


def _open(path: Path, weights: str = "auto", prefer: str = "generator_ema") -> Checkpoint:
    try:
        ck = open_checkpoint(path, weight_set_wrappers(weights, prefer))
    except CheckpointError as e:
        if weights != "auto":  # a training dict without the requested set: name the sets it holds
            held = _held_weight_sets(path)
            if held:
                raise CheckpointError(
                    f"{WHAT}: {path} holds the weight set(s) {held}, not {weights!r}. Choose weights "
                    f"{' / '.join(repr(w) for w in held)} or 'auto'."
                ) from None
        raise CheckpointError(
            f"{WHAT}: cannot read {path} (format: {_container(path)}; expected a Wan DiT checkpoint): {e}"
        ) from e
    expect_kind(ck, "wan_dit", WHAT)
    if weights != "auto" and not ck.source.startswith(f"['{weights}']"):
        raise CheckpointError(
            f"{WHAT}: {path} holds one set of weights ({ck.source or 'top level'}), not a training "
            f"checkpoint with {' / '.join(WEIGHT_SETS)}; weights {weights!r} does not apply: choose 'auto'."
        )
    return ck


def _held_weight_sets(path: Path) -> list[str]:
    """The weight sets a training dict holds (read through the auto order: generator_ema, generator)."""
    try:
        source = open_checkpoint(path, weight_set_wrappers("auto")).source
    except CheckpointError:
        return []
    held = [w for w in WEIGHT_SETS if source.startswith(f"['{w}']")]
    if held == ["generator_ema"]:  # auto found the EMA set; the file may hold the other one too
        try:
            if open_checkpoint(path, ("generator",)).source.startswith("['generator']"):
                held.append("generator")
        except CheckpointError:
            pass
    return held


def weight_set_of(ck: Checkpoint) -> str:
    """The weight set a checkpoint was read from, for the load message."""
    for w in WEIGHT_SETS:
        if ck.source.startswith(f"['{w}']"):
            return w
    return "the file's only set"


def _head_dim_from_config(path: Path) -> int:
    cfg_file = (path if path.is_dir() else path.parent) / "config.json"
    if cfg_file.is_file():
        try:
            c = json.loads(cfg_file.read_text())
        except ValueError:
            return 128
        if "dim" in c and "num_heads" in c:
            return int(c["dim"]) // int(c["num_heads"])
        if "attention_head_dim" in c:
            return int(c["attention_head_dim"])
    return 128


def _check_quant_metadata(ck: Checkpoint, plan: DiTLoadPlan) -> None:
    confs = []
    for k in plan.ignored:
        if k.endswith(".comfy_quant"):
            try:
                confs.append((k, json.loads(bytes(ck.get(k).to(torch.uint8).tolist()).decode())))
            except (ValueError, UnicodeDecodeError) as e:
                raise CheckpointError(f"{WHAT}: {ck.path}: unreadable quantization config '{k}' ({e})") from e
    meta = ck.metadata.get("_quantization_metadata")
    if meta:
        try:
            confs += list(json.loads(meta).get("layers", {}).items())
        except ValueError as e:
            raise CheckpointError(f"{WHAT}: {ck.path}: unreadable _quantization_metadata ({e})") from e
    for k, conf in confs:
        f = conf.get("format") if isinstance(conf, dict) else None
        if f is not None and f not in _FP8_FORMATS:
            raise CheckpointError(
                f"{WHAT}: {ck.path}: layer '{k}' is quantized as '{f}'; this loader reads fp8 "
                f"({', '.join(_FP8_FORMATS)}) only. Use an fp8, bf16 or fp16 file."
            )


def _default_dtype(ck: Checkpoint, plan: DiTLoadPlan) -> torch.dtype:
    """The file's main float dtype (matrices first, then any non-fp8 tensor), else bf16."""
    floats = [k for k in plan.mapping.values() if ck.dtype(k).is_floating_point and not is_fp8(ck.dtype(k))]
    for keys in ([k for k in floats if len(ck.shape(k)) >= 2], floats):
        counts = Counter(ck.dtype(k) for k in keys)
        if counts:
            return counts.most_common(1)[0][0]
    return torch.bfloat16


def _scale_reader(ck: Checkpoint, key: str) -> Callable[[], torch.Tensor]:
    def read():
        t = ck.get(key).float()
        if t.numel() != 1:
            raise CheckpointError(
                f"{WHAT}: {ck.path}: '{key}' holds {t.numel()} scales; only per-tensor fp8 scales are supported"
            )
        return t.reshape(())

    return read


def _load_single(
    path: Path,
    dtype: torch.dtype | None,
    device,
    backend: str,
    head_dim: int | None,
    weights: str = "auto",
    prefer: str = "generator_ema",
) -> WanDiT:
    ck = _open(path, weights, prefer)
    shapes = ck.shapes()
    dtypes = {k: ck.dtype(k) for k in ck.keys()}
    family = unsupported_family([k.split("diffusion_model.")[-1].removeprefix("model.") for k in shapes])
    if family:
        raise CheckpointError(
            f"{WHAT}: {path} is a {family} model (extra modules this pack does not implement); expected a "
            "Wan 2.1/2.2 T2V, I2V, FLF2V, TI2V or A14B DiT."
        )
    try:
        plan = plan_dit_load(shapes, dtypes, head_dim or _head_dim_from_config(path))
    except ValueError as e:
        raise CheckpointError(f"{WHAT}: {path}: detected a Wan DiT but cannot read its layout ({e}).") from e
    where = f" {ck.source}" if ck.source else ""
    desc = f"{path}{where} (detected: {plan.describe()})"
    if plan.unexpected:
        raise CheckpointError(
            f"{WHAT}: {desc}: {len(plan.unexpected)} unknown keys, e.g. {plan.unexpected[:5]}. Expected only "
            "Wan DiT weights; the file is another variant or was modified."
        )
    _check_quant_metadata(ck, plan)
    try:
        model = build_meta_dit(plan)
    except ValueError as e:
        raise CheckpointError(f"{WHAT}: {desc}: {e}") from e
    target = dtype or _default_dtype(ck, plan)
    readers: dict[str, Callable[[], torch.Tensor]] = {}
    for name, key in plan.mapping.items():
        readers[name] = (
            _scale_reader(ck, key) if name.endswith(".weight_scale") else (lambda k=key: ck.get(k))
        )
    for layer in plan.unit_scales:
        readers[f"{layer}.weight_scale"] = lambda: torch.ones((), dtype=torch.float32)

    fp8_weights = {f"{layer}.weight" for layer in plan.fp8_layers}

    def keep(name: str, t: torch.Tensor) -> bool:  # fp8 Linear weights and their fp32 scales
        return name in fp8_weights or name.endswith(".weight_scale")

    try:
        load_into(model, readers, desc, dtype=target, device=device, keep_dtype=keep)
    except CheckpointError as e:
        raise CheckpointError(f"{WHAT}: {e}") from e
    model.attn_backend = backend
    model.weight_set = weight_set_of(ck)
    model.load_format = (
        plan.format if ck.source in ("", "top level") else f"{plan.format}, weights {ck.source}"
    )
    return model.eval()


def _expert_paths(paths: Sequence[Path]) -> tuple[Path, Path]:
    a, b = paths
    na, nb = a.as_posix().lower(), b.as_posix().lower()
    if "low" in na and "high" in nb and "high" not in na:
        return b, a
    return a, b


@explain_oom(describe_load("DiT", DIT_LOAD_FIXES))
def load_dit(
    path_or_paths: str | os.PathLike | Sequence[str | os.PathLike],
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
    attention: str = "auto",
    head_dim: int | None = None,
    weights: str = "auto",
    prefer: str = "generator_ema",
) -> WanDiT | DualExpertDiT:
    """Load a Wan DiT from a file or folder; Wan2.2 A14B from two files (high-noise, low-noise; told
    apart by 'high'/'low' in their names, else in that order), a folder holding ``high_noise_model/``
    and ``low_noise_model/``, or a diffusers pipeline folder (``transformer/`` = high noise,
    ``transformer_2/`` = low noise, ``boundary_ratio`` from ``model_index.json``). ``dtype=None`` keeps the file's main float dtype (fp8 weights stay fp8
    either way). ``attention``: "auto" | "sdpa" | "sage" | "flash", resolved once here.
    ``head_dim``: only for non-released sizes (every Wan release uses 128; a ``config.json`` next to
    the weights is read when present).
    ``weights``: the weight set of a training checkpoint holding several (``generator`` /
    ``generator_ema``); "auto" takes ``prefer`` when the file holds it, else the other set, and any file
    with a single set as it is (callers that know the model family pass its official set as ``prefer``:
    ``RolloutPreset.weight_set``). An explicit set a file does not hold is refused, naming the sets it
    holds. ``model.weight_set`` tells which was read."""
    if weights not in WEIGHT_CHOICES:
        raise ValueError(f"{WHAT}: weights must be one of {list(WEIGHT_CHOICES)}, got {weights!r}")
    if prefer not in WEIGHT_SETS:
        raise ValueError(f"{WHAT}: prefer must be one of {list(WEIGHT_SETS)}, got {prefer!r}")
    backend = resolve_backend(attention, device)
    boundary = None
    if isinstance(path_or_paths, (str, os.PathLike)):
        path = Path(path_or_paths)
        paths = None
        for names in (A14B_SUBFOLDERS, DIFFUSERS_SUBFOLDERS):
            if path.is_dir() and all((path / s).exists() for s in names):
                paths = [path / s for s in names]
                boundary = _boundary_from_model_index(path)
                break
        if paths is None:
            if path.is_dir() and (path / "transformer").is_dir() and not any(path.glob("*.safetensors")):
                path = path / "transformer"  # diffusers pipeline folder, one transformer
            return _load_single(path, dtype, device, backend, head_dim, weights, prefer)
    else:
        paths = [Path(p) for p in path_or_paths]
        if len(paths) == 1:
            return _load_single(paths[0], dtype, device, backend, head_dim, weights, prefer)
        if len(paths) != 2:
            raise CheckpointError(f"{WHAT}: give one DiT file/folder, or two for A14B; got {len(paths)}")
    high_path, low_path = _expert_paths(paths)
    high = _load_single(high_path, dtype, device, backend, head_dim, weights, prefer)
    low = _load_single(low_path, dtype, device, backend, head_dim, weights, prefer)
    if high.config != low.config:
        raise CheckpointError(
            f"{WHAT}: {high_path} and {low_path} are different models ({high.config.model_type} vs "
            f"{low.config.model_type}); expected the two experts of one Wan2.2 A14B model"
        )
    if boundary is None:
        boundary = 0.9 if high.config.model_type == "i2v" else 0.875
    dual = DualExpertDiT(high, low, boundary)
    dual.weight_set = high.weight_set
    return dual


def _boundary_from_model_index(folder: Path) -> float | None:
    """diffusers ``model_index.json`` may carry ``boundary_ratio`` (Wan2.2 A14B pipelines)."""
    f = folder / "model_index.json"
    if f.is_file():
        try:
            value = json.loads(f.read_text()).get("boundary_ratio")
        except ValueError:
            return None
        if isinstance(value, (int, float)):
            return float(value)
    return None
