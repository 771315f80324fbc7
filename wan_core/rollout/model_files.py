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
import shutil
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FOLDERS", "ModelFile", "MissingModelFileError", "find_model_file", "ensure_model_file"]

FOLDERS = ("diffusion_models", "vae", "vae_approx", "text_encoders", "clip_vision", "loras")


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

    def __post_init__(self) -> None:
        if self.folder not in FOLDERS:
            raise ValueError(f"unknown models sub-folder {self.folder!r}; expected one of {FOLDERS}")

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo}/resolve/main/{self.repo_path}"

    def download_command(self, models_dir: str | os.PathLike) -> str:
        dest = Path(models_dir) / self.folder / self.name
        return f"huggingface-cli download {self.repo} {self.repo_path} --local-dir <tmp> && mv <tmp>/{self.repo_path} {dest}"


def find_model_file(models_dir: str | os.PathLike, spec: ModelFile) -> Path | None:
    """The first existing file among ``spec.name`` and ``spec.alternatives`` in its folder."""
    folder = Path(models_dir) / spec.folder
    for name in (spec.name, *spec.alternatives):
        p = folder / name
        if p.is_file():
            return p
    return None


def _missing_message(models_dir: str | os.PathLike, spec: ModelFile, preset: str) -> str:
    folder = Path(models_dir) / spec.folder
    alts = f" (or one of: {', '.join(spec.alternatives)})" if spec.alternatives else ""
    size = f", {spec.size_hint}" if spec.size_hint else ""
    return (
        f"missing {spec.role} file for preset {preset!r}: {spec.name}{alts} is not in {folder}/.\n"
        f"  It is published at {spec.url}{size}.\n"
        f"  Fix: re-run with --download to fetch it automatically, or download it yourself:\n"
        f"    {spec.download_command(models_dir)}"
    )


def ensure_model_file(
    models_dir: str | os.PathLike, spec: ModelFile, *, download: bool = False, preset: str = "", log=print
) -> Path:
    """Path of the file, downloading it into its folder when ``download`` is set.

    Raises ``MissingModelFileError`` naming the file, the folder and the download command otherwise.
    """
    found = find_model_file(models_dir, spec)
    if found is not None:
        return found
    if not download:
        raise MissingModelFileError(_missing_message(models_dir, spec, preset))
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as e:  # pragma: no cover - huggingface_hub is a dependency
        raise MissingModelFileError(
            _missing_message(models_dir, spec, preset)
            + "\n  (--download needs `pip install huggingface_hub`)"
        ) from e
    folder = Path(models_dir) / spec.folder
    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / ".download"
    log(f"downloading {spec.repo}/{spec.repo_path} -> {folder / spec.name} {spec.size_hint}".rstrip())
    try:
        got = Path(hf_hub_download(repo_id=spec.repo, filename=spec.repo_path, local_dir=str(staging)))
    except Exception as e:
        raise MissingModelFileError(
            _missing_message(models_dir, spec, preset) + f"\n  Download failed: {type(e).__name__}: {e}"
        ) from e
    dest = folder / spec.name
    os.replace(got, dest)  # same file system: a rename, no copy of a multi-GB file
    shutil.rmtree(staging, ignore_errors=True)
    return dest
