"""Where a preset's weight files live in a ComfyUI-style models folder, and how to get them.

A models folder has one sub-folder per role, as in ComfyUI: ``diffusion_models/``, ``vae/``,
``vae_approx/``, ``text_encoders/``, ``clip_vision/``. Each ``ModelFile`` names the file we look
for there (plus accepted alternative names, e.g. an fp16 instead of an fp8 text encoder) and the
Hugging Face repo / path it is published at, so ``--download`` can fetch it with
``huggingface_hub.hf_hub_download`` and a missing file produces an error that says exactly which
file, in which folder, and the command that gets it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .hub_command import manual_download_command
from .model_download import DownloadFailed, download_verified

__all__ = [
    "FOLDERS",
    "ModelFile",
    "MissingModelFileError",
    "find_model_file",
    "ensure_model_file",
    "ensure_model_files",
]

FOLDERS = ("diffusion_models", "vae", "vae_approx", "text_encoders", "clip_vision", "loras")
CLI_HINT = "re-run with --download to fetch it automatically"


class MissingModelFileError(FileNotFoundError):
    """A weight file a preset needs is not in the models folder (the message says how to get it)."""


@dataclass(frozen=True)
class ModelFile:
    """One weight file: local name in ``folder`` and where it is published on Hugging Face."""

    role: str  # what it is for: "dit", "dit_low_noise", "lora", "vae", "taehv", "text_encoder", "clip_vision"
    folder: str  # sub-folder of the models folder (one of FOLDERS)
    name: str  # the file name we save / look for
    repo: str  # Hugging Face repo id
    repo_path: str  # path of the file inside the repo
    alternatives: tuple[str, ...] = ()  # other local names accepted in the same folder
    size_hint: str = ""  # for messages ("2.8 GB")
    # the commit of ``repo`` the file is pinned to; None: the branch "main", whose commit at download
    # time is read with the file's size and hash, and the downloaded bytes are checked against them
    revision: str | None = None

    def __post_init__(self) -> None:
        if self.folder not in FOLDERS:
            raise ValueError(f"unknown models sub-folder {self.folder!r}; expected one of {FOLDERS}")

    @property
    def hub_revision(self) -> str:
        return self.revision or "main"

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo}/resolve/{self.hub_revision}/{self.repo_path}"

    def download_command(self, models_dir: str | os.PathLike) -> str:
        """A shell command (for the installed huggingface_hub) that puts the file where it is looked for."""
        folder = Path(models_dir).absolute() / self.folder
        return manual_download_command(self.repo, self.repo_path, self.hub_revision, folder, self.name)


def find_model_file(models_dir: str | os.PathLike, spec: ModelFile) -> Path | None:
    """The first existing file among ``spec.name`` and ``spec.alternatives`` in its folder."""
    folder = Path(models_dir) / spec.folder
    for name in (spec.name, *spec.alternatives):
        p = folder / name
        if p.is_file():
            return p
    return None


def _where(models_dir: str | os.PathLike, spec: ModelFile, preset: str) -> str:
    folder = Path(models_dir) / spec.folder
    alts = f" (or one of: {', '.join(spec.alternatives)})" if spec.alternatives else ""
    size = f", {spec.size_hint}" if spec.size_hint else ""
    for_preset = f" for preset {preset!r}" if preset else ""
    return (
        f"{spec.role} file{for_preset}: {spec.name}{alts} is not in {folder}/.\n"
        f"  It is published at {spec.url}{size}."
    )


def _missing_message(models_dir: str | os.PathLike, spec: ModelFile, preset: str, hint: str) -> str:
    return (
        f"missing {_where(models_dir, spec, preset)}\n"
        f"  Fix: {hint}, or download it yourself:\n"
        f"    {spec.download_command(models_dir)}"
    )


def _failed_message(models_dir: str | os.PathLike, spec: ModelFile, preset: str, e: DownloadFailed) -> str:
    return (
        f"download failed: {_where(models_dir, spec, preset)}\n"
        f"  What happened: {e.cause}. Nothing was kept in {Path(models_dir) / spec.folder}/.\n"
        f"  Fix: {e.fix}. Or download it yourself:\n"
        f"    {spec.download_command(models_dir)}"
    )


def _download(models_dir: str | os.PathLike, spec: ModelFile, log) -> Path:
    dest = Path(models_dir) / spec.folder / spec.name
    size = f" ({spec.size_hint})" if spec.size_hint else ""
    log(f"downloading {spec.repo}/{spec.repo_path} @ {spec.hub_revision} -> {dest}{size}")
    got = download_verified(spec.repo, spec.repo_path, spec.hub_revision, dest, log=log)
    checked = (
        f"sha256 {got.sha256}" if got.sha256 else (f"git sha1 {got.git_sha1}" if got.git_sha1 else "size")
    )
    log(f"  verified {spec.name} (commit {got.commit}, {checked})")
    return dest


def ensure_model_files(
    models_dir: str | os.PathLike,
    specs: list[ModelFile],
    *,
    download: bool = False,
    preset: str = "",
    log=print,
    hint: str = CLI_HINT,
) -> list[Path]:
    """Paths of ``specs`` (same order), downloading the missing ones when ``download`` is set.

    Raises ``MissingModelFileError`` listing every missing file at once (name, folder, source and a
    command that fetches it), or every download that failed with its cause and fix. Downloads that
    succeeded are kept."""
    found = [find_model_file(models_dir, spec) for spec in specs]
    missing = [spec for spec, p in zip(specs, found, strict=True) if p is None]
    if missing and not download:
        head = f"{len(missing)} files are missing:\n" if len(missing) > 1 else ""
        raise MissingModelFileError(
            head + "\n".join(_missing_message(models_dir, s, preset, hint) for s in missing)
        )
    failures: list[str] = []
    for i, spec in enumerate(specs):
        if found[i] is not None:
            continue
        try:
            found[i] = _download(models_dir, spec, log)
        except DownloadFailed as e:
            failures.append(_failed_message(models_dir, spec, preset, e))
    if failures:
        head = f"{len(failures)} of {len(missing)} downloads failed:\n" if len(failures) > 1 else ""
        raise MissingModelFileError(head + "\n".join(failures))
    return [p for p in found if p is not None]


def ensure_model_file(
    models_dir: str | os.PathLike,
    spec: ModelFile,
    *,
    download: bool = False,
    preset: str = "",
    log=print,
    hint: str = CLI_HINT,
) -> Path:
    """Path of the file, downloaded (checked, see ``model_download``) into its folder when ``download``
    is set. Raises ``MissingModelFileError`` naming the file, the folder and the download command."""
    return ensure_model_files(models_dir, [spec], download=download, preset=preset, log=log, hint=hint)[0]
