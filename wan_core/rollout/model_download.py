"""Downloading one model file so that only a complete, verified file ever reaches its final name.

Steps: the folder is checked writable and roomy; the Hub's metadata of the file at the revision is
read (``huggingface_hub.get_hf_file_metadata``: ``X-Repo-Commit``, the size ``X-Linked-Size`` /
``Content-Length`` and the etag ``X-Linked-Etag`` / ``ETag``, which is the file's sha256 for LFS files
and its git blob sha1 otherwise -- huggingface_hub ``file_download.py``); ``hf_hub_download`` writes
into a staging folder beside the destination; the staged file's size and hash are compared with the
metadata; only then is it renamed to its final name (same folder: a rename, no copy). The staging
folder is removed whatever happens.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from .hub_command import staging_dir

__all__ = ["DownloadFailed", "HubFile", "download_verified"]

_SHA256 = re.compile(r"[0-9a-f]{64}")
_SHA1 = re.compile(r"[0-9a-f]{40}")


class DownloadFailed(Exception):
    """A download that did not produce a verified file: ``cause`` (what happened) and ``fix``."""

    def __init__(self, cause: str, fix: str):
        super().__init__(cause)
        self.cause, self.fix = cause, fix


@dataclass(frozen=True)
class HubFile:
    """The Hub's metadata of one file at one revision."""

    commit: str
    size: int | None
    sha256: str  # "" when the hub gave none
    git_sha1: str  # "" unless the file is stored in git (not LFS)


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


def _names(e: BaseException) -> set[str]:
    return {c.__name__ for c in type(e).__mro__}


def _explain(e: BaseException, repo: str, revision: str, folder: Path) -> DownloadFailed:
    """What a huggingface_hub / network / file-system error means and what to do about it."""
    names = _names(e)
    cause = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}".rstrip(": ")
    status = getattr(getattr(e, "response", None), "status_code", None)
    if "GatedRepoError" in names:
        fix = f"the repo is gated: accept its terms at https://huggingface.co/{repo}, then log in (`hf auth login`)"
    elif "RepositoryNotFoundError" in names or status == 401:
        fix = f"the repo {repo} was not found or needs a login: check its name, then `hf auth login`"
    elif "RevisionNotFoundError" in names:
        fix = f"the revision {revision} is not in {repo}: the preset's pin is out of date"
    elif "EntryNotFoundError" in names or "RemoteEntryNotFoundError" in names or status == 404:
        fix = f"the file is not in {repo} at {revision}: it was moved or renamed there"
    elif "OfflineModeIsEnabled" in names:
        fix = "HF_HUB_OFFLINE is set: unset it to download"
    elif isinstance(e, OSError) and e.errno == errno.ENOSPC:
        fix = f"the disk holding {folder} is full: free space there, or pick another models folder"
    elif isinstance(e, OSError) and e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = _read_only_fix(folder)
    elif status is not None and status >= 500:
        fix = f"the Hub answered with a server error ({status}): wait a few minutes and run again"
    elif "Timeout" in " ".join(names) or "Connect" in " ".join(names):
        fix = "the Hub could not be reached: check the internet connection, a proxy (HTTPS_PROXY) or HF_ENDPOINT, then run again"
    elif "LocalEntryNotFoundError" in names:
        fix = "the Hub could not be reached: check the internet connection, a proxy (HTTPS_PROXY) or HF_ENDPOINT, then run again"
    else:
        fix = "run again; if it fails the same way, download the file by hand (below)"
    return DownloadFailed(cause, fix)


def _read_only_fix(folder: Path) -> str:
    return (
        f"{folder} is not writable (a read-only models folder, or owned by another user): make it writable, "
        "pick a writable models folder, or download there as its owner"
    )


def _writable_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if e.errno in (errno.ENOTDIR, errno.EEXIST):
            fix = f"a file is in the way of the folder {folder}: the models folder must be a folder"
        else:
            fix = _read_only_fix(folder)
        raise DownloadFailed(f"cannot create {folder} ({e.strerror or e})", fix) from e
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DownloadFailed(f"cannot write to {folder}", _read_only_fix(folder))


def _hub_file(hf, repo: str, repo_path: str, revision: str) -> HubFile:
    for fn in ("hf_hub_url", "get_hf_file_metadata"):
        if not hasattr(hf, fn):
            raise DownloadFailed(
                f"the installed huggingface_hub has no {fn}(), needed to check downloads",
                "pip install -U huggingface_hub",
            )
    meta = hf.get_hf_file_metadata(hf.hf_hub_url(repo, repo_path, revision=revision))
    etag = (getattr(meta, "etag", None) or "").strip('"').lower()
    size = getattr(meta, "size", None)
    commit = getattr(meta, "commit_hash", None) or revision
    sha256 = etag if _SHA256.fullmatch(etag) else ""
    sha1 = etag if _SHA1.fullmatch(etag) else ""
    if not (sha256 or sha1) and size is None:
        raise DownloadFailed(
            f"the Hub published neither a size nor a hash for {repo}/{repo_path}: the download cannot be checked",
            "download the file by hand (below) from a source you trust",
        )
    return HubFile(commit=commit, size=size, sha256=sha256, git_sha1=sha1)


def _check(path: Path, want: HubFile, log) -> None:
    size = path.stat().st_size
    if want.size is not None and size != want.size:
        raise DownloadFailed(
            f"the downloaded file has {size} bytes, the Hub says {want.size} (commit {want.commit})",
            "the download was cut or altered on the way; nothing was kept: run again",
        )
    if want.sha256 or want.git_sha1:
        log(f"  checking the {'sha256' if want.sha256 else 'git sha1'} of {_gb(size)}")
        h = hashlib.sha256() if want.sha256 else hashlib.sha1(f"blob {size}\0".encode())
        with open(path, "rb") as f:
            while chunk := f.read(1 << 24):
                h.update(chunk)
        expected = want.sha256 or want.git_sha1
        if h.hexdigest() != expected:
            raise DownloadFailed(
                f"the downloaded file's hash is {h.hexdigest()}, the Hub publishes {expected} (commit {want.commit})",
                "the download is corrupt, or the file changed on the Hub meanwhile; nothing was kept: run again",
            )


def download_verified(repo: str, repo_path: str, revision: str, dest: Path, log=print) -> HubFile:
    """Download ``repo_path`` of ``repo`` at ``revision`` to ``dest``, checked; raises ``DownloadFailed``."""
    folder = dest.parent
    _writable_folder(folder)
    try:
        import huggingface_hub as hf
    except ImportError as e:
        raise DownloadFailed("huggingface_hub is not installed", "pip install huggingface_hub") from e
    try:
        want = _hub_file(hf, repo, repo_path, revision)
    except DownloadFailed:
        raise
    except Exception as e:
        raise _explain(e, repo, revision, folder) from e
    if want.size is not None:
        free = shutil.disk_usage(folder).free
        if free < want.size:
            raise DownloadFailed(
                f"{folder} has {_gb(free)} free, the file needs {_gb(want.size)}",
                "free space there, or pick a models folder on a larger disk",
            )
    stage = staging_dir(folder, dest.name)
    shutil.rmtree(stage, ignore_errors=True)  # a killed earlier run's leftovers
    try:  # at the commit the metadata named: a push to the branch in between cannot swap the file
        got = Path(
            hf.hf_hub_download(repo_id=repo, filename=repo_path, local_dir=str(stage), revision=want.commit)
        )
        _check(got, want, log)
        os.replace(got, dest)  # the verified file takes its final name in one step
    except DownloadFailed:
        raise
    except Exception as e:
        raise _explain(e, repo, revision, folder) from e
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        try:
            stage.parent.rmdir()  # the shared staging folder, unless another download is using it
        except OSError:
            pass
    return want
