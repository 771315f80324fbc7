"""Messages for weight files that cannot be used: what was found, and what to do.

``torch.load(weights_only=True)`` refuses a pickle that needs code with a ``pickle.UnpicklingError``
whose text wraps the unpickler's own sentence (torch/serialization.py ``_get_wo_message``; the
sentences come from torch/_weights_only_unpickler.py):

- ``Unsupported global: GLOBAL <module>.<name> was not an allowed global by default.``
- ``Trying to load unsupported GLOBAL <module>.<name> whose module <module> is blocked.``
  (``sys``, ``os``, ``posix``, ``nt``, ... are blocked)
- ``Trying to call reduce for unrecognized function <f>`` / ``Can only create new object ... but got <c>``
  / ``Can only build Tensor, Parameter, OrderedDict or types allowlisted ... but got <t>``
- ``... must be imported to load ...`` (nested tensors, DTensors)

Anything else it raises (``Unsupported operand``, ``String is too long``, ``EOFError``, ...) is damage.
``torch.serialization.get_unsafe_globals_in_checkpoint`` (torch >= 2.5) lists every global a zip
checkpoint names, read statically (nothing is imported or run).
"""

from __future__ import annotations

import io
import pickletools
import re
import zipfile
from pathlib import Path

from .file_format import TORCH_ZIP, Found

__all__ = [
    "not_weights_message",
    "pickle_failure_message",
    "read_failure_message",
    "damaged_message",
    "refused_globals",
]

_REFUSALS = (
    re.compile(r"(Unsupported global: GLOBAL (?P<name>\S+) was not an allowed global by default\.)"),
    re.compile(r"(Trying to load unsupported GLOBAL (?P<name>\S+) whose module \S+ is blocked\.)"),
    re.compile(
        r"(Trying to call reduce for unrecognized function (?P<name>[^\n]+?))(?: which belongs to|\n|$)"
    ),
    re.compile(r"(Can only create new object for [^\n]*? but got (?P<name>[^\n]+))"),
    re.compile(r"(Can only build Tensor, Parameter, OrderedDict [^\n]*? but got (?P<name>[^\n]+))"),
    re.compile(r"(``(?P<name>\S+)`` must be imported to load [^\n]+)"),
)

_NOT_WEIGHTS_FIX = {
    "Git LFS": "fetch the real file (`git lfs pull` in the clone, or download it from the repo's resolve/ URL)",
    "HTML": "download the file again; a gated repo needs you to log in and accept its licence first",
    "GGUF": "this pack reads .safetensors and torch .pt/.pth files: pick a safetensors version of the model",
    "TorchScript": "export the weights (model.state_dict()) to .safetensors with a trusted tool",
}


def not_weights_message(path: Path, found: Found) -> str:
    if found.kind == "empty":
        return (
            f"{path}: the file is empty (0 bytes): a download or copy that did not finish. "
            "Delete it and download it again."
        )
    fix = next((v for k, v in _NOT_WEIGHTS_FIX.items() if k in found.what), None)
    fix = fix or "pick the model's weights file (.safetensors, or a torch .pt / .pth / .bin checkpoint)"
    return f"{path}: not a weights file: it is {found.what}, {found.size} bytes. Fix: {fix}."


def damaged_message(path: Path, found: Found, detail: str) -> str:
    return (
        f"{path}: cannot read this file ({found.what}; {detail}). It is truncated or corrupt: "
        "delete it and download it again."
    )


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return f"{type(e).__name__}: {line}" if line else type(e).__name__


_STRING_OPS = {
    "SHORT_BINUNICODE",
    "BINUNICODE",
    "BINUNICODE8",
    "UNICODE",
    "SHORT_BINSTRING",
    "BINSTRING",
    "STRING",
}


def _scan(stream: io.BufferedIOBase, max_pickles: int) -> tuple[list[str], str | None]:
    """Globals named by up to ``max_pickles`` consecutive pickles, read statically with ``pickletools``
    (nothing is imported or run), and the damage found (``None``: every pickle read reached STOP)."""
    names: list[str] = []
    for _ in range(max_pickles):
        if not stream.peek(1)[:1]:
            break  # clean end of the stream between pickles
        strings: list[str] = []
        try:
            for op, arg, _pos in pickletools.genops(stream):
                if op.name in _STRING_OPS and isinstance(arg, (str, bytes)):
                    strings = [*strings[-1:], arg if isinstance(arg, str) else arg.decode("latin-1")]
                elif op.name in ("GLOBAL", "INST") and isinstance(arg, str):
                    names.append(arg.replace(" ", ".", 1))
                elif op.name == "STACK_GLOBAL" and len(strings) == 2:
                    names.append(".".join(strings))
        except Exception as e:  # ValueError "pickle exhausted before seeing STOP", unknown opcodes, ...
            return names, f"its pickle data breaks off or is garbled ({e})"
    return names, None


# protocol-2 pickles spell Python 3 modules the Python 2 way (pickle's _compat_pickle mapping)
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


def _allowed_globals() -> set[str]:
    try:  # the default allowlist of weights_only (torch >= 2.4)
        from torch import _weights_only_unpickler

        return set(_weights_only_unpickler._get_allowed_globals())
    except Exception:
        return set()


def refused_globals(path: Path, found: Found) -> tuple[list[str], str | None]:
    """(globals the file names that weights_only refuses, damage) from a static read of its pickles:
    ``data.pkl`` of a torch zip, or the first four pickles of a legacy torch file (magic number,
    protocol, system info, the object; its raw tensor data follows) / a plain pickle."""
    try:
        if found.kind == TORCH_ZIP:
            with zipfile.ZipFile(path) as z:
                entry = next((n for n in z.namelist() if n == "data.pkl" or n.endswith("/data.pkl")), None)
                if entry is None:
                    return [], "it has no data.pkl"
                data = z.read(entry)  # checks the entry's CRC
            names, damage = _scan(io.BufferedReader(io.BytesIO(data)), 1)
        else:
            with open(path, "rb") as f:
                names, damage = _scan(f, 4)
    except Exception as e:  # zipfile.BadZipFile, OSError, zlib.error, ...
        return [], f"its archive is damaged ({e})"
    allowed = _allowed_globals()
    names = [
        _PY2_MODULES.get(n.split(".", 1)[0], n.split(".", 1)[0]) + n[len(n.split(".", 1)[0]) :] for n in names
    ]
    refused = [n for n in dict.fromkeys(names) if n not in allowed]
    return refused, damage


def pickle_failure_message(path: Path, found: Found, e: BaseException) -> str:
    """Message for an ``UnpicklingError`` of ``torch.load(weights_only=True)``."""
    text = str(e)
    refused, damage = refused_globals(path, found)
    sentence = name = ""
    for pattern in _REFUSALS:
        m = pattern.search(text)
        if m:
            sentence, name = m.group(1).strip(), m.group("name").strip()
            break
    if damage is None and (sentence or refused):
        shown = ", ".join(f"`{n}`" for n in refused) if refused else f"`{name}`"
        said = f' torch.load(weights_only=True) stopped with: "{sentence}"' if sentence else ""
        return (
            f"{path}: refusing to unpickle this file: it is not a plain weights file. Loading it would "
            f"import or call {shown}, which a weights file never needs.{said} Only plain tensor "
            "checkpoints are read. Do not load it with weights_only=False unless you trust its source "
            "completely; get a .safetensors version of the model instead (or convert the file with a "
            "trusted tool)."
        )
    inner = [
        part.strip()
        for part in text.split("\n\n")
        if part.strip()
        and not part.strip().startswith(("Weights only load failed", "Check the documentation"))
    ]
    detail = sentence or (inner[-1].splitlines()[0] if inner else _first_line(e))
    damage = f"; {damage}" if damage else ""
    return damaged_message(path, found, f"torch.load(weights_only=True): {detail}{damage}")


def read_failure_message(path: Path, found: Found, e: BaseException) -> str:
    """Message for any other exception ``torch.load`` / safetensors raised on ``path``."""
    return damaged_message(path, found, _first_line(e))
