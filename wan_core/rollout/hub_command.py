"""The shell command that downloads one model file by hand, for the huggingface_hub that is installed.

huggingface_hub 0.34 added the ``hf`` command (``hf download REPO FILE --revision R --local-dir D``);
1.0 removed ``huggingface-cli``, which older releases have instead (same ``download`` arguments).
The command is built from the installed distribution's version and the script next to this Python,
with real paths, shell-quoted, so it can be pasted as is.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from importlib import metadata
from pathlib import Path

__all__ = ["hub_cli", "manual_download_command", "staging_dir"]

_HF_SINCE = (0, 34)


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for p in text.split(".")[:3]:
        digits = "".join(c for c in p if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def hub_cli() -> tuple[str, str]:
    """(command, how to install it): the installed huggingface_hub's download command.

    The command is the script beside ``sys.executable`` when it is not on ``PATH`` (a venv that is not
    activated); ``install`` is a pip command when huggingface_hub is missing, else ""."""
    try:
        version = _version(metadata.version("huggingface_hub"))
    except metadata.PackageNotFoundError:
        pip = f"{shlex.quote(sys.executable)} -m pip install -U huggingface_hub"
        return "hf", pip
    name = "hf" if version >= _HF_SINCE else "huggingface-cli"
    if shutil.which(name):
        return name, ""
    beside = Path(sys.executable).parent / (name + (".exe" if os.name == "nt" else ""))
    return (shlex.quote(str(beside)) if beside.is_file() else name), ""


STAGING = ".download"


def staging_dir(folder: Path, name: str) -> Path:
    """Where a download of ``name`` is staged: ``folder/.download/name/`` (same file system as its
    destination, so the final rename moves no data; one per file, so downloads do not collide)."""
    return folder / STAGING / name


def manual_download_command(repo: str, repo_path: str, revision: str, folder: Path, name: str) -> str:
    """``hf download`` into a staging folder, moved to ``folder/name``, staging removed (its parent
    too when no other download uses it)."""
    cli, install = hub_cli()
    stage = staging_dir(folder, name)
    q = shlex.quote
    steps = [
        f"{cli} download {q(repo)} {q(repo_path)} --revision {q(revision)} --local-dir {q(str(stage))}",
        f"mv {q(str(stage / repo_path))} {q(str(folder / name))}",
        f"rm -r {q(str(stage))}",
        f"{{ rmdir {q(str(stage.parent))} 2>/dev/null || true; }}",
    ]
    if install:
        steps.insert(0, install)
    return " && ".join(steps)
