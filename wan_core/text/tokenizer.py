"""UMT5 tokenizer: SentencePiece ids + ``</s>``, no BOS, padded with ``<pad>``, as the official Wan path.

Where it comes from, in this order (``load_tokenizer``):
1. the ``spiece_model`` uint8 tensor embedded in ComfyUI's ``umt5_xxl_*.safetensors`` files
   (the serialized SentencePiece model proto);
2. ``spiece.model`` (SentencePiece) or ``tokenizer.json`` (needs the ``tokenizers`` package) in the
   folder of the weights, its ``tokenizer/`` or ``google/umt5-xxl/`` subfolder (official Wan
   checkpoint folder), or a ``tokenizer/`` folder beside it (diffusers layout).

Truncation keeps ``</s>`` last (``max_length - 1`` text tokens + EOS), like the transformers tokenizer
with ``truncation=True``; how many tokens were cut is returned so the caller can tell the user.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..checkpoint import CheckpointError
from ..file_format import SAFETENSORS, sniff
from .clean import clean_prompt

__all__ = ["UMT5Tokenizer", "TokenizedPrompts", "load_tokenizer", "TOKENIZER_FILES"]

TOKENIZER_FILES = ("spiece.model", "tokenizer.json")
_SUBFOLDERS = ("", "tokenizer", "google/umt5-xxl", "umt5-xxl")


@dataclass
class TokenizedPrompts:
    ids: torch.Tensor  # [B, L] long
    mask: torch.Tensor  # [B, L] long, 1 = token (text + EOS), 0 = padding
    seq_lens: list[int]  # tokens per prompt, EOS included
    dropped: list[int]  # text tokens cut by truncation per prompt (0 = none)


class UMT5Tokenizer:
    """``tok(prompts, max_length=512) -> TokenizedPrompts``; ``tok.encode(text) -> ids`` (no specials)."""

    def __init__(self, encode_fn: Callable[[str], list[int]], eos_id: int, pad_id: int, source: str):
        self._encode = encode_fn
        self.eos_id, self.pad_id, self.source = eos_id, pad_id, source

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_spiece_bytes(cls, proto: bytes, source: str = "<bytes>") -> UMT5Tokenizer:
        import sentencepiece

        sp = sentencepiece.SentencePieceProcessor()
        try:
            sp.LoadFromSerializedProto(proto)
        except Exception as e:  # sentencepiece raises RuntimeError / OSError
            raise CheckpointError(f"{source}: not a valid SentencePiece model ({e}).") from e
        if sp.eos_id() < 0:
            raise CheckpointError(f"{source}: the SentencePiece model has no </s> (EOS) piece.")
        pad = sp.pad_id() if sp.pad_id() >= 0 else 0
        return cls(lambda text: list(sp.encode(text)), sp.eos_id(), pad, source)

    @classmethod
    def from_spiece_file(cls, path: str | os.PathLike) -> UMT5Tokenizer:
        try:
            proto = Path(path).read_bytes()
        except OSError as e:
            raise CheckpointError(f"{path}: cannot read the tokenizer file ({e.strerror or e}).") from e
        return cls.from_spiece_bytes(proto, str(path))

    @classmethod
    def from_tokenizer_json(cls, path: str | os.PathLike) -> UMT5Tokenizer:
        try:
            from tokenizers import Tokenizer
        except ImportError as e:
            raise CheckpointError(
                f"{path}: reading tokenizer.json needs the 'tokenizers' package (pip install tokenizers), "
                "or put spiece.model beside it."
            ) from e
        try:
            tk = Tokenizer.from_file(str(path))
        except Exception as e:  # tokenizers raises its own Exception type for bad JSON / unknown models
            raise CheckpointError(
                f"{path}: not a valid tokenizer.json ({e}). Download it again from google/umt5-xxl."
            ) from e
        eos = tk.token_to_id("</s>")
        if eos is None:
            raise CheckpointError(f"{path}: tokenizer has no '</s>' token; this is not a T5 tokenizer.")
        pad = tk.token_to_id("<pad>")
        return cls(
            lambda text: list(tk.encode(text, add_special_tokens=False).ids),
            eos,
            0 if pad is None else pad,
            str(path),
        )

    # -- use --------------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` without any special token."""
        return self._encode(text)

    def __call__(
        self,
        prompts: Sequence[str] | str,
        max_length: int = 512,
        padding: str = "longest",
        clean: bool = True,
    ) -> TokenizedPrompts:
        """Tokenize: ``clean`` (official whitespace clean), text ids + EOS, truncated to ``max_length``
        (EOS kept), padded with the pad id to the longest prompt (``padding="longest"``) or to
        ``max_length`` (``"max_length"``, the official shape)."""
        if isinstance(prompts, str):
            prompts = [prompts]
        if padding not in ("longest", "max_length"):
            raise ValueError(f"padding must be 'longest' or 'max_length', got {padding!r}")
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1 (room for </s>), got {max_length}")
        rows, dropped = [], []
        for p in prompts:
            if not isinstance(p, str):
                raise ValueError(f"prompts must be strings, got {type(p).__name__}")
            ids = self.encode(clean_prompt(p) if clean else p)
            keep = max_length - 1
            dropped.append(max(0, len(ids) - keep))
            rows.append([*ids[:keep], self.eos_id])
        width = max_length if padding == "max_length" else max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = 1
        return TokenizedPrompts(ids, mask, [len(r) for r in rows], dropped)

    def __repr__(self) -> str:
        return f"UMT5Tokenizer(source={self.source!r}, eos={self.eos_id}, pad={self.pad_id})"


def _embedded_spiece(path: Path) -> bytes | None:
    """The ``spiece_model`` byte tensor of a ComfyUI safetensors file, if any."""
    try:
        found = sniff(path)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read the file ({e.strerror or e}).") from e
    if found.kind != SAFETENSORS:
        return None  # not safetensors (e.g. the official .pth, which has no tokenizer inside)
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            if "spiece_model" not in f.keys():
                return None
            t = f.get_tensor("spiece_model")
    except Exception as e:
        raise CheckpointError(f"{path}: cannot read the embedded 'spiece_model' tokenizer ({e}).") from e
    return t.to(torch.uint8).numpy().tobytes()


def load_tokenizer(path: str | os.PathLike) -> UMT5Tokenizer:
    """Tokenizer for the UMT5 weights at ``path`` (a weight file or a folder), see module doc."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: file not found (looking for the UMT5 tokenizer).")
    if p.is_file() and p.name in TOKENIZER_FILES:
        return (
            UMT5Tokenizer.from_spiece_file(p)
            if p.suffix == ".model"
            else UMT5Tokenizer.from_tokenizer_json(p)
        )
    if p.is_file():
        proto = _embedded_spiece(p)
        if proto is not None:
            return UMT5Tokenizer.from_spiece_bytes(proto, f"{p}['spiece_model']")
        folder = p.parent
    else:
        folder = p
    searched = []
    for sub in (*(folder / s for s in _SUBFOLDERS), folder.parent / "tokenizer"):
        searched.append(str(sub))
        if (sub / "spiece.model").is_file():
            return UMT5Tokenizer.from_spiece_file(sub / "spiece.model")
    for sub in (*(folder / s for s in _SUBFOLDERS), folder.parent / "tokenizer"):
        if (sub / "tokenizer.json").is_file():
            return UMT5Tokenizer.from_tokenizer_json(sub / "tokenizer.json")
    raise CheckpointError(
        f"No UMT5 tokenizer found for {p}. Any of these works: a ComfyUI umt5_xxl_*.safetensors file "
        "(it embeds the tokenizer as 'spiece_model'), or 'spiece.model' / 'tokenizer.json' from "
        f"google/umt5-xxl put in one of: {', '.join(dict.fromkeys(searched))}."
    )
