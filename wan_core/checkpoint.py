"""Reading weight files of every format users have, and loading them strictly into a module.

One place knows about file containers (``.safetensors``, pickled ``.pt/.pth/.bin/.ckpt`` read with
``weights_only=True``, sharded folders with an ``*.index.json``), training-dict wrappers
(``generator_ema`` / ``generator`` / ``state_dict`` / ``model``, FSDP name mangling) and which kind of
model a set of keys belongs to. The model loaders (DiT, VAE, text, CLIP) map names on top of it.

Tensors are read lazily, one at a time, so a loader can convert each to its target dtype without
holding a full fp32 copy of the model in RAM.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import torch

__all__ = [
    "CheckpointError",
    "Checkpoint",
    "open_checkpoint",
    "load_state_dict",
    "detect_kind",
    "expect_kind",
    "load_into",
    "KIND_NAMES",
]

SAFETENSORS_EXT = (".safetensors", ".sft")
PICKLE_EXT = (".pt", ".pth", ".bin", ".ckpt")

# Wrappers that training code saves around the real state dict, in order of preference.
# Self-Forcing / CausVid save {"generator", "critic", "generator_ema"}: the EMA weights are the ones
# their demos use.
_WRAPPER_KEYS = ("generator_ema", "generator", "state_dict", "model_state_dict", "module", "model", "ema")
# Name mangling added by FSDP / activation checkpointing / torch.compile.
_MANGLING = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")

KIND_NAMES = {
    "wan_dit": "a Wan DiT (diffusion model, for 'Load Wan DiT' / models/diffusion_models)",
    "wan_vae": "a Wan VAE (for 'Load Wan VAE' / models/vae)",
    "taehv": "a TAEHV tiny video autoencoder (for 'Load TAEHV' / models/vae_approx)",
    "umt5": "a UMT5-XXL text encoder (for 'Encode UMT5 Prompt' / models/text_encoders)",
    "clip_vision": "a CLIP vision encoder (for 'I2V Control Encode' / models/clip_vision)",
    "unknown": "no model this pack knows",
}


class CheckpointError(ValueError):
    """A weight file that cannot be used: the message names the file, what was found and the fix."""


# ----------------------------------------------------------------------------------------------
# kind detection


def _any_suffix(keys: Iterable[str], *suffixes: str) -> bool:
    return any(k.endswith(s) for k in keys for s in suffixes)


def detect_kind(keys: Iterable[str]) -> str:
    """Which model family a set of state-dict keys belongs to (prefixes and renamings tolerated).

    Returns one of ``KIND_NAMES``.
    """
    keys = list(keys)
    if _any_suffix(keys, "head.modulation", "scale_shift_table") and _any_suffix(
        keys, "patch_embedding.weight", "patch_embedding.bias"
    ):
        return "wan_dit"
    if _any_suffix(keys, "condition_embedder.time_proj.weight"):
        return "wan_dit"  # diffusers WanTransformer3DModel
    if _any_suffix(keys, "decoder.middle.0.residual.0.gamma", "decoder.mid_block.resnets.0.norm1.gamma"):
        return "wan_vae"
    if _any_suffix(keys, "decoder.22.bias", "decoder.22.weight"):
        return "taehv"
    if _any_suffix(keys, "DenseReluDense.wi_1.weight", "ffn.fc1.weight") or (
        _any_suffix(keys, "token_embedding.weight") and _any_suffix(keys, "pos_embedding.embedding.weight")
    ):
        return "umt5"
    if _any_suffix(keys, "layer_norm1.weight", "attn.to_qkv.weight", "attn.in_proj_weight") and _any_suffix(
        keys, "patch_embedding.weight", "embeddings.class_embedding", "cls_embedding", "class_embedding"
    ):
        return "clip_vision"
    return "unknown"


# ----------------------------------------------------------------------------------------------
# containers


def _unwrap(obj: object, path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """Find the tensor dict inside a pickled training checkpoint. Returns (dict, where-it-was)."""
    where = ""
    for _ in range(4):
        if not isinstance(obj, Mapping):
            break
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj), where or "top level"
        for key in _WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner:
                obj, where = inner, (f"{where}['{key}']" if where else f"['{key}']")
                break
        else:
            tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
            if tensors:
                return tensors, where or "top level"
            break
    raise CheckpointError(
        f"{path}: no tensors found. Expected a state dict, or a training checkpoint holding one under "
        f"one of {list(_WRAPPER_KEYS)}."
    )


def _demangle(name: str) -> str:
    for m in _MANGLING:
        name = name.replace(m, "")
    return name


class Checkpoint:
    """Lazy view of the tensors of one weight file or sharded folder.

    ``keys()`` lists the (de-mangled) names; ``get(name, dtype)`` reads one tensor.
    ``metadata`` holds the safetensors header metadata (merged over shards).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.metadata: dict[str, str] = {}
        self.source = ""  # e.g. "['generator_ema']" for training dicts
        self._readers: dict[str, Callable[[], torch.Tensor]] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._dtypes: dict[str, torch.dtype] = {}
        self._open()

    # -- opening ------------------------------------------------------------------------------
    def _open(self) -> None:
        p = self.path
        if not p.exists():
            raise CheckpointError(f"{p}: file not found. Put the model file there or pick another file.")
        if p.is_dir():
            index = sorted(p.glob("*.index.json"))
            if index:
                self._open_index(index[0])
                return
            shards = sorted([*p.glob("*.safetensors"), *p.glob("*.pth"), *p.glob("*.pt"), *p.glob("*.bin")])
            if not shards:
                raise CheckpointError(
                    f"{p}: folder holds no *.safetensors / *.pt / *.pth / *.bin weight files."
                )
            for s in shards:
                self._open_file(s)
            return
        if p.name.endswith(".index.json"):
            self._open_index(p)
            return
        self._open_file(p)

    def _open_index(self, index_path: Path) -> None:
        try:
            weight_map = json.loads(index_path.read_text())["weight_map"]
        except (OSError, ValueError, KeyError) as e:
            raise CheckpointError(f"{index_path}: not a valid sharded-checkpoint index ({e}).") from e
        for shard in sorted(set(weight_map.values())):
            shard_path = index_path.parent / shard
            if not shard_path.exists():
                raise CheckpointError(
                    f"{index_path}: shard '{shard}' listed in the index is missing. Download every shard."
                )
            self._open_file(shard_path)

    def _open_file(self, p: Path) -> None:
        name = p.name.lower()
        if name.endswith(SAFETENSORS_EXT):
            self._open_safetensors(p)
        elif name.endswith(PICKLE_EXT):
            self._open_pickle(p)
        else:
            # sniff: safetensors begins with an 8-byte little-endian header length then '{'
            with open(p, "rb") as f:
                head = f.read(9)
            if len(head) == 9 and head[8:9] == b"{":
                self._open_safetensors(p)
            elif zipfile.is_zipfile(p):
                self._open_pickle(p)
            else:
                raise CheckpointError(
                    f"{p}: unknown weight file type. Use a .safetensors, .pt, .pth or .bin file."
                )

    def _open_safetensors(self, p: Path) -> None:
        from safetensors import safe_open

        try:
            f = safe_open(str(p), framework="pt", device="cpu")
            meta = f.metadata() or {}
            keys = list(f.keys())
        except Exception as e:  # safetensors raises its own error types
            raise CheckpointError(
                f"{p}: cannot read as safetensors ({e}). The file is truncated or corrupt: download it again."
            ) from e
        self.metadata.update(meta)
        size = p.stat().st_size
        for k in keys:
            sl = f.get_slice(k)
            self._add(k, tuple(sl.get_shape()), _st_dtype(sl.get_dtype()), _SafeReader(f, k, p))
        # safetensors checks offsets lazily; verify the data section covers every tensor now
        header_len = int.from_bytes(open(p, "rb").read(8), "little")
        try:
            header = json.loads(open(p, "rb").read(8 + header_len)[8:])
        except ValueError as e:
            raise CheckpointError(f"{p}: corrupt safetensors header ({e}). Download the file again.") from e
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        if 8 + header_len + end > size:
            raise CheckpointError(
                f"{p}: file is truncated ({size} bytes, header promises {8 + header_len + end}). "
                "Download it again."
            )

    def _open_pickle(self, p: Path) -> None:
        try:
            obj = torch.load(str(p), map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(p))
        except pickle.UnpicklingError as e:
            raise CheckpointError(
                f"{p}: refusing to unpickle this file: it needs arbitrary code to load "
                f"({str(e).splitlines()[0][:200]}). Only plain tensor checkpoints are read "
                "(torch.load(weights_only=True)); convert it to .safetensors with a trusted tool."
            ) from e
        except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
            raise CheckpointError(
                f"{p}: cannot read this .pt/.pth file ({str(e).splitlines()[0][:200]}). "
                "It is truncated or corrupt: download it again."
            ) from e
        tensors, where = _unwrap(obj, p)
        self.source = where
        for k, t in tensors.items():
            self._add(k, tuple(t.shape), t.dtype, (lambda t=t: t))

    def _add(self, key: str, shape, dtype, reader) -> None:
        key = _demangle(key)
        self._readers[key] = reader
        self._shapes[key] = shape
        self._dtypes[key] = dtype

    # -- access -------------------------------------------------------------------------------
    def keys(self) -> list[str]:
        return list(self._readers)

    def __contains__(self, key: str) -> bool:
        return key in self._readers

    def __len__(self) -> int:
        return len(self._readers)

    def shape(self, key: str) -> tuple[int, ...]:
        return self._shapes[key]

    def dtype(self, key: str) -> torch.dtype:
        return self._dtypes[key]

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return dict(self._shapes)

    def get(
        self, key: str, dtype: torch.dtype | None = None, device: str | torch.device = "cpu"
    ) -> torch.Tensor:
        t = self._readers[key]()
        if dtype is not None and t.dtype != dtype:
            t = t.to(dtype)
        return t.to(device)

    def items(self) -> Iterator[tuple[str, torch.Tensor]]:
        for k in self._readers:
            yield k, self.get(k)

    @property
    def kind(self) -> str:
        return detect_kind(self._readers)

    def describe(self) -> str:
        return f"{self.path} (detected: {KIND_NAMES[self.kind]}; {len(self)} tensors)"


class _SafeReader:
    def __init__(self, handle, key: str, path: Path):
        self.handle, self.key, self.path = handle, key, path

    def __call__(self) -> torch.Tensor:
        try:
            return self.handle.get_tensor(self.key)
        except Exception as e:
            raise CheckpointError(
                f"{self.path}: cannot read tensor '{self.key}' ({e}). Download the file again."
            ) from e


_ST_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": getattr(torch, "float8_e4m3fn", None),
    "F8_E5M2": getattr(torch, "float8_e5m2", None),
}


def _st_dtype(name: str) -> torch.dtype:
    dt = _ST_DTYPES.get(name)
    if dt is None:
        raise CheckpointError(f"unsupported safetensors dtype {name}")
    return dt


def open_checkpoint(path: str | os.PathLike) -> Checkpoint:
    return Checkpoint(path)


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Eagerly read every tensor (small files and tests; loaders should use ``open_checkpoint``)."""
    ck = open_checkpoint(path)
    return dict(ck.items())


def expect_kind(ck: Checkpoint, expected: str, what: str) -> None:
    """Raise a clear error when ``ck`` is not a checkpoint of kind ``expected``.

    ``what`` names the loader, e.g. "Load Wan DiT".
    """
    kind = ck.kind
    if kind == expected:
        return
    hint = "" if kind == "unknown" else f" Use it with {KIND_NAMES[kind]} instead."
    sample = ", ".join(ck.keys()[:4])
    raise CheckpointError(
        f"{what}: {ck.path} is not {KIND_NAMES[expected]}; detected {KIND_NAMES[kind]} "
        f"(first keys: {sample}).{hint}"
    )


# ----------------------------------------------------------------------------------------------
# strict loading into a module built on the meta device


def load_into(
    module: torch.nn.Module,
    tensors: Mapping[str, Callable[[], torch.Tensor]],
    path: str | os.PathLike,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
    keep_dtype: Callable[[str, torch.Tensor], bool] | None = None,
) -> torch.nn.Module:
    """Load ``tensors`` (module-name -> zero-arg reader) strictly into ``module``.

    The module may live on the ``meta`` device; each tensor is read, converted to ``dtype`` (unless
    ``keep_dtype(name, tensor)`` says to keep it, e.g. fp8 weights and their fp32 scales) and assigned,
    one at a time. Missing / unexpected keys and shape mismatches raise ``CheckpointError`` naming them.
    """
    expected = dict(module.state_dict(keep_vars=True))
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[:5]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:5]})")
        raise CheckpointError(
            f"{path}: keys do not match {type(module).__name__}: {'; '.join(parts)}. "
            "The file is of another model variant or an unsupported format."
        )
    for name, ref in expected.items():
        t = tensors[name]()
        if tuple(t.shape) != tuple(ref.shape):
            raise CheckpointError(
                f"{path}: tensor '{name}' has shape {tuple(t.shape)}, the model expects {tuple(ref.shape)}. "
                "The file belongs to another model size or variant."
            )
        if dtype is not None and t.is_floating_point() and not (keep_dtype and keep_dtype(name, t)):
            t = t.to(dtype)
        t = t.to(device)
        _assign(module, name, t, is_param=isinstance(ref, torch.nn.Parameter))
    return module


def _assign(module: torch.nn.Module, name: str, value: torch.Tensor, is_param: bool) -> None:
    *parents, leaf = name.split(".")
    m = module
    for p in parents:
        m = getattr(m, p)
    if is_param:
        setattr(m, leaf, torch.nn.Parameter(value, requires_grad=False))
    else:
        m._buffers[leaf] = value
