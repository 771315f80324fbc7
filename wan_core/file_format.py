"""What a file is, told by its first bytes (never by its extension).

Magic numbers used (each from the format's own specification / writer):

- safetensors: 8-byte little-endian header length ``N``, then ``N`` bytes of JSON starting with ``{``
  (huggingface/safetensors format description).
- torch zip checkpoint (``torch.save`` since 1.6): a ZIP archive (local file header ``PK\\x03\\x04``)
  holding ``<archive>/data.pkl``; TorchScript archives hold ``<archive>/constants.pkl`` / ``code/``.
- legacy torch checkpoint / plain pickle: pickle protocol 2..5 starts with ``\\x80`` + protocol byte.
- GGUF: ``GGUF``; NumPy: ``\\x93NUMPY``; HDF5: ``\\x89HDF\\r\\n\\x1a\\n``; PNG ``\\x89PNG``; JPEG ``\\xff\\xd8\\xff``;
  GIF ``GIF8``; WebP ``RIFF....WEBP``; MP4/MOV ``....ftyp``; gzip ``\\x1f\\x8b``; zstd ``\\x28\\xb5\\x2f\\xfd``;
  xz ``\\xfd7zXZ\\x00``; 7z ``7z\\xbc\\xaf\\x27\\x1c``; tar ``ustar`` at offset 257;
  Git LFS pointer: text starting ``version https://git-lfs.github.com/spec/v1``.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Found", "sniff", "SAFETENSORS", "TORCH_ZIP", "PICKLE"]

SAFETENSORS = "safetensors"
TORCH_ZIP = "torch_zip"
PICKLE = "pickle"  # legacy torch.save format or a plain pickle stream
# the safetensors library refuses headers above 100 MB (safetensors/src/tensor.rs, MAX_HEADER_SIZE)
MAX_SAFETENSORS_HEADER = 100_000_000
_HEAD = 512

_IMAGES_AND_MEDIA = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"GGUF", "a GGUF file (llama.cpp / ComfyUI-GGUF quantized weights)"),
    (b"\x93NUMPY", "a NumPy .npy array"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file (e.g. Keras .h5 weights)"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x28\xb5\x2f\xfd", "a zstd archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"%PDF", "a PDF document"),
)


@dataclass(frozen=True)
class Found:
    """``kind``: SAFETENSORS / TORCH_ZIP / PICKLE for weight containers, else "other" / "empty".
    ``what``: a few words for messages ("an HTML page", "a ZIP archive that is not a torch file ...")."""

    kind: str
    what: str
    size: int

    @property
    def is_weights(self) -> bool:
        return self.kind in (SAFETENSORS, TORCH_ZIP, PICKLE)


def _printable(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 3:  # a bad byte, not a character cut at the end of the read
            return False
        text = head[: e.start].decode("utf-8")
    return bool(text) and all(c.isprintable() or c in "\r\n\t" for c in text)


def _text_kind(head: bytes) -> str:
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff \r\n\t")
    low = text[:200].lower()
    quote = text[:80].replace("\n", " ").replace("\r", " ").strip()
    if low.startswith("version https://git-lfs.github.com/spec"):
        return "a Git LFS pointer (a small text stub, not the file itself)"
    if low.startswith(("<!doctype html", "<html", "<head", "<body")) or "<html" in low:
        return f"an HTML page (e.g. a login or error page saved instead of the file: {quote!r})"
    if low.startswith("<?xml") or low.startswith("<"):
        return f"an XML/HTML text ({quote!r})"
    if low.startswith(("{", "[")):
        return f"a JSON text ({quote!r})"
    return f"a text file ({quote!r})"


def _zip_kind(path: Path) -> tuple[str, str]:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError, NotImplementedError) as e:
        return TORCH_ZIP, f"a damaged ZIP archive ({e})"  # torch.load reports the damage precisely
    if any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
        return TORCH_ZIP, "a torch.save checkpoint (ZIP)"
    if any(n.endswith("/constants.pkl") for n in names):
        return "other", "a TorchScript archive (a program, not a weights file)"
    shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
    return "other", f"a ZIP archive that is not a torch checkpoint (it holds: {shown or 'nothing'})"


def sniff(path: str | os.PathLike) -> Found:
    """What ``path`` holds, from its first bytes. Raises ``OSError`` only when it cannot be read."""
    p = Path(path)
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(_HEAD)
    if size == 0:
        return Found("empty", "an empty file (0 bytes)", 0)
    if len(head) >= 9:
        n = int.from_bytes(head[:8], "little")
        if head[8:9] == b"{" and 2 <= n <= MAX_SAFETENSORS_HEADER:
            return Found(SAFETENSORS, "a safetensors file", size)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        kind, what = _zip_kind(p)
        return Found(kind, what, size)
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return Found(PICKLE, f"a pickle stream (protocol {head[1]})", size)
    for magic, what in _IMAGES_AND_MEDIA:
        if head.startswith(magic):
            return Found("other", what, size)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return Found("other", "a WebP image", size)
    if head[4:8] == b"ftyp":
        return Found("other", "an MP4/MOV video", size)
    if len(head) > 262 and head[257:262] == b"ustar":
        return Found("other", "a tar archive", size)
    if _printable(head):
        return Found("other", _text_kind(head), size)
    shown = head[:16].hex(" ")
    return Found("other", f"unrecognized binary data (first bytes: {shown})", size)
