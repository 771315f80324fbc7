"""Output files that are replaced, never lost.

A writer writes into a temporary file beside its destination, ``.<name>.<pid>.partial`` (hidden, in
the destination's folder: the same file system, so the final rename is atomic), and renames it over
the destination only when the file is complete. Until then the destination (an older video of the
same name) is untouched, so a failed, interrupted or killed run leaves it exactly as it was.

- ``os.replace`` is POSIX ``rename(2)``: a reader sees the old file or the new one, never a mix. The
  data is flushed to disk (``fsync``) before the rename, so a crash just after it cannot leave an
  empty new file (delayed allocation on ext4 / xfs).
- The new file takes the older file's permission bits (a rename would otherwise give it the umask's).
- A run killed with SIGKILL (or a power loss) leaves its ``.partial`` file. The next writer for the
  same destination removes the partial files whose process is gone (``os.kill(pid, 0)`` fails with
  ``ProcessLookupError``); partial files of running processes (another run writing the same name)
  are left alone.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

__all__ = ["AtomicOutput", "PARTIAL_SUFFIX", "partial_path", "stale_partials", "remove_stale_partials"]

PARTIAL_SUFFIX = ".partial"


def partial_path(dest: str | os.PathLike, pid: int | None = None, seq: int = 0) -> Path:
    """The temporary file of ``dest`` for process ``pid`` (default: this one): ``.<name>.<pid>.partial``
    (``.<name>.<pid>-<seq>.partial`` for a second writer of the same destination in one process)."""
    dest = Path(dest)
    tag = f"{pid or os.getpid()}" + (f"-{seq}" if seq else "")
    return dest.with_name(f".{dest.name}.{tag}{PARTIAL_SUFFIX}")


def _pid_of(partial: Path, dest_name: str) -> int | None:
    middle = partial.name[len(dest_name) + 2 : -len(PARTIAL_SUFFIX)]  # "<pid>" or "<pid>-<seq>"
    pid = middle.split("-", 1)[0]
    return int(pid) if pid.isdecimal() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OSError:
        return True
    return True


def stale_partials(dest: str | os.PathLike) -> list[Path]:
    """Partial files of ``dest`` left by processes that no longer run."""
    dest = Path(dest)
    if not dest.parent.is_dir():
        return []
    prefix = f".{dest.name}."
    found = []
    for p in dest.parent.iterdir():
        if not (p.name.startswith(prefix) and p.name.endswith(PARTIAL_SUFFIX)):
            continue
        pid = _pid_of(p, dest.name)
        if pid is not None and pid != os.getpid() and not _alive(pid):
            found.append(p)
    return sorted(found)


def remove_stale_partials(dest: str | os.PathLike) -> list[Path]:
    """Remove the partial files of ``dest`` whose process is gone; returns the removed paths."""
    removed = []
    for p in stale_partials(dest):
        with contextlib.suppress(FileNotFoundError):  # another run cleaned it meanwhile
            p.unlink()
            removed.append(p)
    return removed


class AtomicOutput:
    """One destination file written through its partial file.

    ``tmp``: where the writer writes. ``commit()`` puts the finished file at ``dest`` (replacing an
    older file only now); ``discard()`` removes the partial file and leaves ``dest`` untouched. Creating
    it makes the destination's folder and removes stale partial files of that destination
    (``removed_stale``)."""

    def __init__(self, dest: str | os.PathLike):
        self.dest = Path(dest)
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        self.removed_stale = remove_stale_partials(self.dest)
        seq = 0
        while (tmp := partial_path(self.dest, seq=seq)).exists():
            seq += 1  # a second writer of the same destination in this process
        self.tmp = tmp
        self.tmp.touch(exist_ok=False)  # claimed: a concurrent writer in this process picks another name
        self.committed = False
        self.discarded = False

    def commit(self) -> Path:
        """fsync the partial file, take the older file's permission bits, rename it over ``dest``."""
        if self.committed:
            return self.dest
        if self.discarded:
            raise RuntimeError(f"{self.tmp} was discarded; nothing to commit")
        fd = os.open(self.tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.chmod(self.tmp, stat.S_IMODE(self.dest.stat().st_mode))
        os.replace(self.tmp, self.dest)
        self.committed = True
        _fsync_folder(self.dest.parent)
        return self.dest

    def discard(self) -> None:
        """Remove the partial file (the destination stays as it was). Never raises."""
        if self.committed:
            return
        self.discarded = True
        with contextlib.suppress(OSError):
            self.tmp.unlink(missing_ok=True)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every file system lets a folder be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
