"""Where a video may be written: the supported extensions and the up-front check of a destination
(no torch here: the request validation imports it before anything heavy)."""

from __future__ import annotations

import importlib.util
import os
import stat
from pathlib import Path

from .atomic_file import PARTIAL_SUFFIX

__all__ = ["VIDEO_EXTENSIONS", "OutputPathError", "check_output_path", "webp_fallback", "pyav_installed"]

# extension -> PyAV container format (None: animated WebP, written by webp_anim)
VIDEO_EXTENSIONS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".webp": None}
_NAME_MAX = 255 - len(f"..{2**22}-99{PARTIAL_SUFFIX}")  # the partial file's name must fit too


class OutputPathError(ValueError):
    """A destination no writer can create; ``code``: folder | extension | name_too_long | not_regular |
    read_only | parent_file | not_writable | fallback_exists."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


def pyav_installed() -> bool:
    """Whether PyAV can be found (without importing it: this check runs before anything heavy)."""
    return importlib.util.find_spec("av") is not None


def webp_fallback(path: Path) -> Path:
    """The animated WebP written instead of an mp4 / mov / mkv ``path`` when PyAV is missing."""
    return path.with_suffix(".webp")


def check_output_path(path: str | os.PathLike, *, pyav: bool | None = None) -> Path:
    """The video destination ``path`` (``~`` expanded) if a writer can create it: a supported
    extension (.mp4 / .mov / .mkv / .webp), a file name (not a folder), a folder that exists or can
    be created and is writable, not an existing read-only file; without PyAV (``pyav``: whether it is
    installed, found if None) the WebP written instead of an mp4 must not replace an existing file.
    Raises ``ValueError`` saying what is wrong. Creates nothing."""
    p = Path(os.path.expanduser(os.fspath(path)))
    if p.name in ("", ".", "..") or str(path).endswith(("/", os.sep)):
        raise OutputPathError(
            f"output {str(path)!r} names a folder, not a video file: add a file name, e.g. out.mp4", "folder"
        )
    ext = p.suffix.lower()
    if ext not in VIDEO_EXTENSIONS:
        what = f"extension {ext!r}" if ext else "no extension"
        raise OutputPathError(
            f"unsupported video {what} for {p}: use .mp4 (or .mov / .mkv) or .webp", "extension"
        )
    if len(p.name.encode()) > _NAME_MAX:
        raise OutputPathError(
            f"output file name is too long ({len(p.name.encode())} bytes; at most {_NAME_MAX})",
            "name_too_long",
        )
    if p.is_dir():
        raise OutputPathError(
            f"output {p} is a folder: name a file in it, e.g. {p / ('out' + ext)}", "folder"
        )
    if p.exists() and not p.is_file():
        raise OutputPathError(f"output {p} exists and is not a regular file", "not_regular")
    if p.is_file() and (
        not os.access(p, os.W_OK) or not p.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    ):
        raise OutputPathError(
            f"output {p} exists and is read-only, so it is not replaced: make it writable (chmod u+w) or "
            "pick another file name",
            "read_only",
        )
    folder = p.parent
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputPathError(
            f"cannot create the output folder {folder}: {existing} is a file, not a folder", "parent_file"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        where = f"folder {existing}" + ("" if existing == folder else f" (where {folder} would be created)")
        raise OutputPathError(f"cannot write {p}: {where} is not writable", "not_writable")
    if VIDEO_EXTENSIONS[ext] is not None and not (pyav_installed() if pyav is None else pyav):
        alt = webp_fallback(p)
        if alt.exists() or alt.is_symlink():
            raise OutputPathError(
                f"PyAV (`av`) is not installed, so {p.name} would be written as the animated WebP {alt}, and "
                f"that file exists: pick another name, output .webp explicitly, or `pip install av`",
                "fallback_exists",
            )
    return p
