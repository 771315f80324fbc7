"""Prompt cleaning as the official Wan text path does it (clean='whitespace').

``ftfy.fix_text`` (when ftfy is installed; ComfyUI does not ship it, results differ only for
mojibake), HTML unescape twice, strip, collapse every whitespace run to one space.
"""

from __future__ import annotations

import html

try:  # the official code uses the `regex` package (transformers depends on it); same \s semantics
    import regex as _re
except ImportError:  # pragma: no cover - regex is present wherever transformers is
    import re as _re

try:
    import ftfy
except ImportError:  # pragma: no cover - depends on the install
    ftfy = None

__all__ = ["clean_prompt", "HAS_FTFY"]

HAS_FTFY = ftfy is not None
_WHITESPACE = _re.compile(r"\s+")


def clean_prompt(text: str) -> str:
    if ftfy is not None:
        text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return _WHITESPACE.sub(" ", text).strip()
