"""Prompt-embedding cache: a repeated prompt does not load the 11 GB text encoder at all.

Key = (prompt, text_len, identity of the encoder file: resolved path + size + mtime). Entries are
CPU tensors ``[L, dim]``; an optional ``cache_dir`` keeps them on disk as safetensors across runs.
``get_or_encode`` calls the loader only when some prompt misses, encodes only the missing prompts,
then drops the encoder (encode, then free).
"""

from __future__ import annotations

import gc
import hashlib
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from .encode import TEXT_LEN, encode_prompts_detailed, truncation_warning
from .tokenizer import UMT5Tokenizer
from .umt5 import UMT5Encoder

__all__ = ["PromptEmbeddingCache", "file_identity"]

_WEIGHT_SUFFIXES = (".safetensors", ".sft", ".pt", ".pth", ".bin", ".ckpt", ".json", ".model", ".gguf")


def file_identity(path: str | os.PathLike) -> str:
    """``path|size|mtime_ns`` of a weight file; for a folder, of every weight / index file in it."""
    p = Path(path).resolve()
    if p.is_dir():
        parts = [
            f"{c.name}|{c.stat().st_size}|{c.stat().st_mtime_ns}"
            for c in sorted(p.iterdir())
            if c.is_file() and c.name.endswith(_WEIGHT_SUFFIXES)
        ]
        return f"{p}/[{';'.join(parts)}]"
    st = p.stat()
    return f"{p}|{st.st_size}|{st.st_mtime_ns}"


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class PromptEmbeddingCache:
    """In-memory LRU (``max_entries``) plus optional on-disk store of prompt embeddings."""

    def __init__(self, max_entries: int = 64, cache_dir: str | os.PathLike | None = None):
        self.max_entries = max_entries
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._mem: OrderedDict[str, tuple[torch.Tensor, int]] = OrderedDict()  # key -> (emb, tokens cut)
        self.hits = self.misses = self.encoder_loads = 0
        self.last_warnings: list[str] = []

    @staticmethod
    def key(prompt: str, encoder_path: str | os.PathLike, text_len: int = TEXT_LEN) -> str:
        h = hashlib.sha256()
        for part in (file_identity(encoder_path), str(text_len), prompt):
            h.update(part.encode("utf-8", "surrogatepass"))
            h.update(b"\0")
        return h.hexdigest()

    def __len__(self) -> int:
        return len(self._mem)

    def clear(self) -> None:
        self._mem.clear()

    # -- storage ------------------------------------------------------------------------------
    def _disk_path(self, key: str) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / f"{key}.safetensors"

    def _lookup(self, key: str) -> tuple[torch.Tensor, int] | None:
        if key in self._mem:
            self._mem.move_to_end(key)
            return self._mem[key]
        path = self._disk_path(key)
        if path is not None and path.is_file():
            from safetensors import safe_open

            try:
                with safe_open(str(path), framework="pt", device="cpu") as f:
                    entry = (f.get_tensor("embedding"), int((f.metadata() or {}).get("dropped", "0")))
            except Exception:  # a broken cache file is just a miss
                return None
            self._remember(key, entry)
            return entry
        return None

    def _remember(self, key: str, entry: tuple[torch.Tensor, int]) -> None:
        self._mem[key] = entry
        self._mem.move_to_end(key)
        while len(self._mem) > self.max_entries:
            self._mem.popitem(last=False)

    def _store(self, key: str, embedding: torch.Tensor, dropped: int) -> tuple[torch.Tensor, int]:
        entry = (embedding.detach().to("cpu").contiguous(), dropped)
        self._remember(key, entry)
        path = self._disk_path(key)
        if path is not None:
            from safetensors.torch import save_file

            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            save_file({"embedding": entry[0]}, str(tmp), metadata={"dropped": str(dropped)})
            os.replace(tmp, path)
        return entry

    # -- API ----------------------------------------------------------------------------------
    def get(
        self, prompt: str, encoder_path: str | os.PathLike, text_len: int = TEXT_LEN
    ) -> torch.Tensor | None:
        entry = self._lookup(self.key(prompt, encoder_path, text_len))
        return None if entry is None else entry[0]

    def get_or_encode(
        self,
        prompts: Sequence[str],
        encoder_path: str | os.PathLike,
        load_fn: Callable[[], tuple[UMT5Encoder, UMT5Tokenizer]],
        text_len: int = TEXT_LEN,
        out_device: str | torch.device = "cpu",
    ) -> list[torch.Tensor]:
        """Embeddings ``[L_i, dim]`` for ``prompts``; ``load_fn() -> (encoder, tokenizer)`` runs only
        on a miss. Truncation warnings (new or cached) are left in ``self.last_warnings``."""
        if isinstance(prompts, str):
            prompts = [prompts]
        keys = [self.key(p, encoder_path, text_len) for p in prompts]
        found = {k: e for k in dict.fromkeys(keys) if (e := self._lookup(k)) is not None}
        missing = [k for k in dict.fromkeys(keys) if k not in found]
        self.hits += len(keys) - sum(k in missing for k in keys)
        self.misses += len(missing)
        if missing:
            miss_prompts = [prompts[keys.index(k)] for k in missing]
            encoder, tokenizer = load_fn()
            self.encoder_loads += 1
            try:
                result = encode_prompts_detailed(encoder, tokenizer, miss_prompts, text_len, out_device="cpu")
            finally:
                del encoder, tokenizer
                _free_memory()
            for k, emb, cut in zip(missing, result.embeddings, result.dropped):
                found[k] = self._store(k, emb, cut)
        self.last_warnings = [
            truncation_warning(i, text_len - 1 + found[k][1], text_len)
            for i, k in enumerate(keys)
            if found[k][1]
        ]
        return [found[k][0].to(out_device) for k in keys]
