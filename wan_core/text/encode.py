"""The official Wan text path: clean -> tokenize (EOS, no BOS, <= 512) -> UMT5 with the key mask ->
keep the first ``seq_len`` rows of each prompt.

The DiT zero-pads each prompt's rows to ``text_len`` (512) itself; ``pad_embeddings`` does that for
callers who want one ``[B, 512, 4096]`` tensor. This gives the same tensor as official Wan and
ComfyUI for prompts of at most 511 tokens (longer ones are truncated here, as official; ComfyUI
would instead feed all tokens).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ..memory import TEXT_LOAD_FIXES, explain_oom
from .tokenizer import UMT5Tokenizer
from .umt5 import UMT5Encoder

__all__ = ["EncodedPrompts", "encode_prompts", "encode_prompts_detailed", "pad_embeddings", "TEXT_LEN"]

log = logging.getLogger("wan_core.text")

TEXT_LEN = 512  # Wan's text context length (official text_len)


@dataclass
class EncodedPrompts:
    embeddings: list[torch.Tensor]  # per prompt [L_i, dim], L_i = tokens incl. EOS
    seq_lens: list[int]
    dropped: list[int]  # tokens cut by truncation, per prompt
    warnings: list[str] = field(default_factory=list)  # one line per truncated prompt, for the user


def truncation_warning(index: int, total_tokens: int, text_len: int) -> str:
    return (
        f"prompt {index + 1} has {total_tokens} tokens but the text encoder takes {text_len - 1} "
        f"(+ end token): the last {total_tokens - (text_len - 1)} tokens are ignored. Shorten the prompt."
    )


@torch.inference_mode()
@explain_oom(
    lambda encoder, tokenizer, prompts, *a, **k: (
        f"encoding {1 if isinstance(prompts, str) else len(prompts)} prompt(s) with UMT5",
        next(encoder.parameters()).device,
        list(TEXT_LOAD_FIXES),
    )
)
def encode_prompts_detailed(
    encoder: UMT5Encoder,
    tokenizer: UMT5Tokenizer,
    prompts: Sequence[str] | str,
    text_len: int = TEXT_LEN,
    out_device: str | torch.device | None = None,
) -> EncodedPrompts:
    """Encode ``prompts`` in one batch (padded to the longest prompt; padding keys are masked, so the
    kept rows equal a 512-padded run). Returns embeddings on ``out_device`` (default: the encoder's)."""
    if isinstance(prompts, str):
        prompts = [prompts]
    if not prompts:
        return EncodedPrompts([], [], [])
    tokens = tokenizer(prompts, max_length=text_len, padding="longest")
    device = encoder.device
    hidden = encoder(tokens.ids.to(device), tokens.mask.to(device))  # [B, L, dim]
    out_device = device if out_device is None else torch.device(out_device)
    # copies, so the batch tensor [B, L, dim] is freed
    embeddings = [hidden[i, :n].to(out_device, copy=True) for i, n in enumerate(tokens.seq_lens)]
    warnings = []
    for i, cut in enumerate(tokens.dropped):
        if cut:
            msg = truncation_warning(i, text_len - 1 + cut, text_len)
            log.warning(msg)
            warnings.append(msg)
    return EncodedPrompts(embeddings, tokens.seq_lens, tokens.dropped, warnings)


def encode_prompts(
    encoder: UMT5Encoder,
    tokenizer: UMT5Tokenizer,
    prompts: Sequence[str] | str,
    text_len: int = TEXT_LEN,
    out_device: str | torch.device | None = None,
) -> list[torch.Tensor]:
    """``[Tensor [L_i, dim]]`` per prompt (official ``T5EncoderModel.__call__`` output)."""
    return encode_prompts_detailed(encoder, tokenizer, prompts, text_len, out_device).embeddings


def pad_embeddings(embeddings: Sequence[torch.Tensor], text_len: int = TEXT_LEN) -> torch.Tensor:
    """``[Tensor [L_i, dim]] -> [B, text_len, dim]`` with zero rows after each prompt's tokens."""
    if not embeddings:
        raise ValueError("pad_embeddings: no embeddings given")
    first = embeddings[0]
    out = first.new_zeros(len(embeddings), text_len, first.shape[-1])
    for i, e in enumerate(embeddings):
        if e.shape[0] > text_len:
            raise ValueError(f"prompt {i + 1} has {e.shape[0]} rows, more than text_len={text_len}")
        out[i, : e.shape[0]] = e
    return out
