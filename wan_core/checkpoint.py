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
import math
import os
import pickle
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import torch

from .file_errors import not_weights_message, pickle_failure_message, read_failure_message
from .file_format import PICKLE, SAFETENSORS, TORCH_ZIP, Found, sniff

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


def _unwrap(
    obj: object, path: Path, wrappers: tuple[str, ...] = _WRAPPER_KEYS
) -> tuple[dict[str, torch.Tensor], str]:
    """Find the tensor dict inside a pickled training checkpoint. Returns (dict, where-it-was)."""
    where = ""
    for _ in range(4):
        if not isinstance(obj, Mapping):
            break
        obj = {k: v for k, v in obj.items() if isinstance(k, str)}  # names are strings; drop the rest
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj), where or "top level"
        for key in wrappers:
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
        f"one of {list(wrappers)}."
    )


def _demangle(name: str) -> str:
    for m in _MANGLING:
        name = name.replace(m, "")
    return name


class Checkpoint:
    """Lazy view of the tensors of one weight file or sharded folder.

    ``keys()`` lists the (de-mangled) names; ``get(name, dtype)`` reads one tensor.
    ``metadata`` holds the safetensors header metadata (merged over shards).
    ``wrappers``: keys of training-dict wrappers to look inside, in order of preference.
    Every failure to read is a ``CheckpointError`` naming the file, what was found and what to do.
    """

    def __init__(self, path: str | os.PathLike, wrappers: tuple[str, ...] = _WRAPPER_KEYS):
        self.path = Path(path)
        self.metadata: dict[str, str] = {}
        self.source = ""  # e.g. "['generator_ema']" for training dicts
        self._wrappers = wrappers
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
            shards = sorted(
                s
                for s in [*p.glob("*.safetensors"), *p.glob("*.pth"), *p.glob("*.pt"), *p.glob("*.bin")]
                if s.is_file()
            )
            if not shards:
                held = sorted(c.name for c in p.iterdir())[:8]
                raise CheckpointError(
                    f"{p}: is a folder and holds no *.safetensors / *.pt / *.pth / *.bin weight files "
                    f"(it holds: {', '.join(held) or 'nothing'}). Pick the weight file itself, or a folder "
                    "of shards with its *.index.json."
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
            raw = index_path.read_bytes()
            if not _nests_within(raw, _INDEX_DEPTH):
                raise ValueError(f"JSON nested deeper than {_INDEX_DEPTH} levels, or unpaired brackets")
            weight_map = json.loads(raw)["weight_map"]
            shards = sorted(set(weight_map.values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
            raise CheckpointError(f"{index_path}: not a valid sharded-checkpoint index ({e}).") from e
        for shard in shards:
            shard_path = index_path.parent / str(shard)
            if not shard_path.is_file():
                raise CheckpointError(
                    f"{index_path}: shard '{shard}' listed in the index is missing. Download every shard."
                )
            self._open_file(shard_path)

    def _open_file(self, p: Path) -> None:
        """Open by content: the first bytes say the container, the extension is not trusted."""
        try:
            found = sniff(p)
        except OSError as e:
            raise CheckpointError(
                f"{p}: cannot read the file ({e.strerror or e}). Check that it exists and is readable."
            ) from e
        if found.kind == SAFETENSORS:
            self._open_safetensors(p, found)
        elif found.kind in (TORCH_ZIP, PICKLE):
            self._open_pickle(p, found)
        else:
            raise CheckpointError(not_weights_message(p, found))

    def _open_safetensors(self, p: Path, found: Found) -> None:
        entries = _safetensors_entries(p, found)  # checks the header before the library maps the file
        from safetensors import safe_open

        try:
            f = safe_open(str(p), framework="pt", device="cpu")
            meta = f.metadata() or {}
            keys = list(f.keys())
        except Exception as e:  # safetensors raises its own error types
            raise CheckpointError(read_failure_message(p, found, e)) from e
        self.metadata.update(meta)
        for k in keys:
            shape, dtype = entries[k]
            self._add(k, shape, dtype, _SafeReader(f, k, p))

    def _open_pickle(self, p: Path, found: Found) -> None:
        try:
            if p.name.endswith(".safetensors"):  # torch.load (2.14) reads such a *path* as safetensors
                with open(p, "rb") as f:
                    obj = torch.load(f, map_location="cpu", weights_only=True)
            else:
                obj = torch.load(str(p), map_location="cpu", weights_only=True, mmap=found.kind == TORCH_ZIP)
        except pickle.UnpicklingError as e:
            raise CheckpointError(pickle_failure_message(p, found, e)) from e
        except Exception as e:  # RuntimeError, EOFError, zip / struct / memory errors of a damaged file
            raise CheckpointError(read_failure_message(p, found, e)) from e
        tensors, where = _unwrap(obj, p, self._wrappers)
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


# JSON nesting: a safetensors header is {name: {"shape": [..], "data_offsets": [..]}} (3 levels); an
# index is {"metadata": {..}, "weight_map": {..}}, metadata free-form (a few levels, 8 is generous)
_HEADER_DEPTH, _INDEX_DEPTH = 3, 8
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_EMPTY_PAIR = re.compile(rb"\[\]|\{\}")
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")


def _nests_within(raw: bytes, depth: int) -> bool:
    """Whether the JSON text ``raw`` nests at most ``depth`` arrays / objects deep (checked before
    ``json.loads``, whose recursion a deep text exhausts). Strings are blanked, every other byte but
    the brackets dropped, then innermost pairs removed once per allowed level, at C speed."""
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    for _ in range(depth):
        if not brackets:
            return True
        brackets = _EMPTY_PAIR.sub(b"", brackets)
    return not brackets


def _bad_header(p: Path, why: str) -> CheckpointError:
    return CheckpointError(
        f"{p}: a safetensors file with a bad header ({why}). It is corrupt or was not written by a "
        "safetensors writer: delete it and download it again."
    )


def _safetensors_entries(p: Path, found: Found) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """``{name: (shape, dtype)}`` from the header, checked against the file size (format: 8-byte
    little-endian header length, JSON ``{name: {dtype, shape, data_offsets: [begin, end]}}``, data)."""
    with open(p, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if 8 + n > found.size:
            raise CheckpointError(
                f"{p}: file is truncated ({found.size} bytes; its safetensors header alone needs {8 + n}). "
                "Delete it and download it again."
            )
        raw = f.read(n)
    if not _nests_within(raw, _HEADER_DEPTH):
        why = f"JSON nested deeper than the {_HEADER_DEPTH} levels of a safetensors header, or unpaired brackets"
        raise _bad_header(p, why)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise _bad_header(p, f"not valid JSON: {e}") from e
    if not isinstance(header, dict):
        raise _bad_header(p, "not a JSON object")
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise _bad_header(p, "__metadata__ is not a string-to-string map")
    entries, end = {}, 0
    for name, e in header.items():
        if not isinstance(e, dict):
            raise _bad_header(p, f"entry {name!r} is not an object")
        dtype, shape, offsets = e.get("dtype"), e.get("shape"), e.get("data_offsets")
        if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
            raise _bad_header(p, f"tensor {name!r} has shape {shape!r}")
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(o, int) for o in offsets)
            and 0 <= offsets[0] <= offsets[1]
        ):
            raise _bad_header(p, f"tensor {name!r} has data_offsets {offsets!r}")
        torch_dtype = _ST_DTYPES.get(dtype) if isinstance(dtype, str) else None
        if torch_dtype is None:
            raise CheckpointError(
                f"{p}: tensor {name!r} has dtype {dtype!r}, which this pack cannot read (it reads "
                f"{', '.join(k for k, v in _ST_DTYPES.items() if v is not None)}). Use a bf16 / fp16 / fp8 file."
            )
        nbytes = math.prod(shape) * torch_dtype.itemsize
        if offsets[1] - offsets[0] != nbytes:
            raise _bad_header(
                p,
                f"tensor {name!r} {dtype}{shape} needs {nbytes} bytes, its offsets span {offsets[1] - offsets[0]}",
            )
        entries[name] = (tuple(shape), torch_dtype)
        end = max(end, offsets[1])
    if 8 + n + end > found.size:
        raise CheckpointError(
            f"{p}: file is truncated ({found.size} bytes, header promises {8 + n + end}). "
            "Delete it and download it again."
        )
    return entries


def open_checkpoint(path: str | os.PathLike, wrappers: tuple[str, ...] = _WRAPPER_KEYS) -> Checkpoint:
    """The checked reader of every weight file (see ``Checkpoint``)."""
    return Checkpoint(path, wrappers)


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
