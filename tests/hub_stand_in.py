"""An in-process stand-in for the ``huggingface_hub`` module (tests put it in ``sys.modules``): the
test's own ``hf_hub_download`` plus the two metadata functions the downloader checks files with,
answering from ``content(repo_id, filename) -> bytes`` (size, sha256 etag, a fixed commit)."""

from __future__ import annotations

import hashlib
import types

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def hub_module(hf_hub_download, content) -> types.SimpleNamespace:
    def hf_hub_url(repo_id, filename, revision=None):
        return (repo_id, filename, revision or "main")

    def get_hf_file_metadata(url):
        data = content(url[0], url[1])
        return types.SimpleNamespace(
            commit_hash=COMMIT, etag=hashlib.sha256(data).hexdigest(), size=len(data), location=str(url)
        )

    def pinned_download(repo_id, filename, local_dir, revision=None):
        """The test's ``hf_hub_download``, served only at the commit the metadata named (or ``main``)."""
        if revision not in (None, "main", COMMIT):
            raise FileNotFoundError(f"{repo_id} has no revision {revision}")
        return hf_hub_download(repo_id=repo_id, filename=filename, local_dir=local_dir)

    return types.SimpleNamespace(
        hf_hub_download=pinned_download, hf_hub_url=hf_hub_url, get_hf_file_metadata=get_hf_file_metadata
    )
