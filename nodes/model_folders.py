"""Model files: listing ComfyUI's model folders, resolving a selected name, fetching known files.

Only names inside ComfyUI's own model folders are accepted (``folder_paths``), never arbitrary paths.
A loader's list shows the files present plus the known files that are missing (the files of
``wan_core.rollout.presets``, the same table ``python -m wan_core generate --download`` uses);
selecting a missing known file with ``download`` on fetches it from Hugging Face into its folder.
"""

from __future__ import annotations

import os

NONE_CHOICE = "none"


def known_files(folder: str) -> list:
    """wan_core ``ModelFile`` entries that live in ComfyUI folder ``folder`` (unique by name)."""
    from wan_core.rollout.presets import PRESETS

    seen: dict[str, object] = {}
    for preset in PRESETS.values():
        for spec in (preset.dit, preset.dit_low_noise, preset.lora, preset.vae, preset.taehv,
                     preset.text_encoder, preset.clip_vision):  # fmt: skip
            if spec is not None and spec.folder == folder and spec.name not in seen:
                seen[spec.name] = spec
    return list(seen.values())


def choices(folder: str, with_none: bool = False) -> list[str]:
    """The names a loader offers: files present in the folder, then missing known files."""
    import folder_paths

    present = list(folder_paths.get_filename_list(folder))
    missing = [k.name for k in known_files(folder) if k.name not in present]
    return ([NONE_CHOICE] if with_none else []) + present + missing


def resolve(folder: str, name: str, download: bool, what: str) -> str:
    """Full path of ``name`` in ComfyUI's ``folder``; downloads a missing known file when allowed."""
    import folder_paths

    if os.path.isabs(name) or ".." in name.replace("\\", "/").split("/"):
        raise ValueError(f"{what}: {name!r} is not a file name inside models/{folder}")
    path = folder_paths.get_full_path(folder, name)
    if path is not None:
        return path
    known = next((k for k in known_files(folder) if k.name == name), None)
    if known is None:
        return folder_paths.get_full_path_or_raise(folder, name)  # raises ComfyUI's own clear error
    if not download:
        raise FileNotFoundError(
            f"{what}: {name} is not in models/{folder}. Turn on 'download' to fetch it from "
            f"{known.url}, or put the file there yourself: {known.download_command(folder_paths.models_dir)}"
        )
    from wan_core.rollout.model_files import ensure_model_file

    return str(ensure_model_file(folder_paths.models_dir, known, download=True))
