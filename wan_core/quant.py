"""fp8 "scaled" weights as ComfyUI and Kijai ship them, kept in fp8 in memory.

Two on-disk conventions (FACTS 2(b)):
- legacy: marker key ``scaled_fp8``; per Linear ``<layer>.weight`` (float8_e4m3fn) + ``<layer>.scale_weight``
  (fp32 scalar) and optionally ``<layer>.scale_input``;
- comfy_quant: ``<layer>.weight_scale`` (+ ``<layer>.input_scale``, ``<layer>.comfy_quant`` JSON bytes).

``ScaledFP8Linear`` stores the fp8 weight and its scale; its forward dequantizes on the fly into the
activation dtype (``W = W_fp8.to(dtype) * scale``), so a 14B model stays at 1 byte per weight.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FP8_DTYPES = tuple(
    d for d in (getattr(torch, "float8_e4m3fn", None), getattr(torch, "float8_e5m2", None)) if d
)

# Keys that describe quantization and are not module parameters of the plain model.
_SCALE_SUFFIXES = (".scale_weight", ".weight_scale")
_DROP_SUFFIXES = (".scale_input", ".input_scale", ".comfy_quant")
_MARKERS = ("scaled_fp8",)


def is_fp8(dtype: torch.dtype) -> bool:
    return dtype in FP8_DTYPES


class ScaledFP8Linear(nn.Module):
    """Linear layer whose weight is fp8 with a per-tensor fp32 scale. ``x [..., in] -> [..., out]``."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        w_dtype = dtype if dtype is not None else FP8_DTYPES[0]
        self.weight = nn.Parameter(
            torch.empty(out_features, in_features, device=device, dtype=w_dtype), requires_grad=False
        )
        self.weight_scale = nn.Parameter(
            torch.ones((), device=device, dtype=torch.float32), requires_grad=False
        )
        self.bias = (
            nn.Parameter(torch.empty(out_features, device=device), requires_grad=False) if bias else None
        )

    def dequantized_weight(self, dtype: torch.dtype) -> torch.Tensor:
        return self.weight.to(dtype) * self.weight_scale.to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        return F.linear(x, self.dequantized_weight(x.dtype), bias)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, weight={self.weight.dtype}"


def fp8_layer_names(keys_to_dtype: dict[str, torch.dtype]) -> list[str]:
    """Names (without ``.weight``) of the layers stored in fp8 in a checkpoint."""
    return sorted(
        k[: -len(".weight")] for k, dt in keys_to_dtype.items() if k.endswith(".weight") and is_fp8(dt)
    )


def split_quant_keys(keys: list[str]) -> tuple[dict[str, str], list[str]]:
    """Return ({layer: scale_key}, [keys to ignore]) for a checkpoint's keys.

    ``layer`` is the module path (without ``.weight``); both scale conventions are accepted.
    """
    scales: dict[str, str] = {}
    drop: list[str] = []
    for k in keys:
        if k in _MARKERS or k.endswith(tuple("." + m for m in _MARKERS)):
            drop.append(k)
            continue
        for s in _SCALE_SUFFIXES:
            if k.endswith(s):
                scales[k[: -len(s)]] = k
                break
        else:
            if k.endswith(_DROP_SUFFIXES):
                drop.append(k)
    return scales, drop


def swap_fp8_linears(module: nn.Module, layer_names: list[str], prefix: str = "") -> int:
    """Replace the ``nn.Linear`` children named in ``layer_names`` (module paths relative to ``module``)
    by ``ScaledFP8Linear`` on the same device (meta during loading). Returns how many were swapped."""
    wanted = set(layer_names)
    swapped = 0
    for name, child in list(module.named_modules()):
        if name not in wanted:
            continue
        if not isinstance(child, nn.Linear):
            raise ValueError(
                f"fp8 weight for '{name}', which is a {type(child).__name__}, not a Linear layer"
            )
        parent_name, _, leaf = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        new = ScaledFP8Linear(
            child.in_features, child.out_features, bias=child.bias is not None, device=child.weight.device
        )
        setattr(parent, leaf, new)
        swapped += 1
    return swapped
