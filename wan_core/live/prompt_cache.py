"""``EncodedPrompts``: the embeddings of the last few distinct prompt lines of a live stream, kept
on the device (least recently used first out), so an endless stream of new lines keeps memory flat."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch

__all__ = ["EncodedPrompts"]


class EncodedPrompts:
    """``encode(text) -> [1, L, D]`` with the last ``capacity`` distinct texts' results kept."""

    def __init__(self, encode: Callable[[str], torch.Tensor], capacity: int = 16):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._encode, self.capacity = encode, capacity
        self._kept: OrderedDict[str, torch.Tensor] = OrderedDict()

    def __call__(self, text: str) -> torch.Tensor:
        emb = self._kept.pop(text, None)
        if emb is None:
            emb = self._encode(text)
        self._kept[text] = emb
        while len(self._kept) > self.capacity:
            self._kept.popitem(last=False)
        return emb

    def __len__(self) -> int:
        return len(self._kept)
