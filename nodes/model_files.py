"""Model files: listing ComfyUI's model folders, resolving a selected name, fetching known files.

Only names inside ComfyUI's own model folders are accepted (``folder_paths``), never arbitrary paths.
A loader's list shows the files present plus the known files below that are missing; selecting a
missing known file with ``download`` on fetches it from Hugging Face into the folder's first path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class KnownFile:
    folder: str  # ComfyUI model folder name
    name: str  # file name in that folder (what workflows refer to)
    repo_id: str  # Hugging Face repository
    repo_path: str  # path of the file inside the repository


_W21 = "Comfy-Org/Wan_2.1_ComfyUI_repackaged"
_W22 = "Comfy-Org/Wan_2.2_ComfyUI_Repackaged"

KNOWN_FILES: tuple[KnownFile, ...] = (
    # DiT weights
    KnownFile("diffusion_models", "self_forcing_dmd.pt", "gdhe17/Self-Forcing", "checkpoints/self_forcing_dmd.pt"),
    KnownFile("diffusion_models", "wan2.1_t2v_1.3B_fp16.safetensors", _W21, "split_files/diffusion_models/wan2.1_t2v_1.3B_fp16.safetensors"),
    KnownFile("diffusion_models", "wan2.1_i2v_480p_14B_fp8_scaled.safetensors", _W21, "split_files/diffusion_models/wan2.1_i2v_480p_14B_fp8_scaled.safetensors"),
    KnownFile("diffusion_models", "wan2.1_i2v_480p_14B_fp16.safetensors", _W21, "split_files/diffusion_models/wan2.1_i2v_480p_14B_fp16.safetensors"),
    KnownFile("diffusion_models", "wan2.2_ti2v_5B_fp16.safetensors", _W22, "split_files/diffusion_models/wan2.2_ti2v_5B_fp16.safetensors"),
    # VAEs
    KnownFile("vae", "wan_2.1_vae.safetensors", _W21, "split_files/vae/wan_2.1_vae.safetensors"),
    KnownFile("vae", "wan2.2_vae.safetensors", _W22, "split_files/vae/wan2.2_vae.safetensors"),
    # tiny preview decoders (TAEHV)
    KnownFile("vae_approx", "taew2_1.safetensors", "lightx2v/Autoencoders", "taew2_1.safetensors"),
    KnownFile("vae_approx", "lighttaew2_1.safetensors", "lightx2v/Autoencoders", "lighttaew2_1.safetensors"),
    KnownFile("vae_approx", "lighttaew2_2.safetensors", "lightx2v/Autoencoders", "lighttaew2_2.safetensors"),
    # text encoder (the ComfyUI files carry the tokenizer as the `spiece_model` tensor)
    KnownFile("text_encoders", "umt5_xxl_fp8_e4m3fn_scaled.safetensors", _W21, "split_files/text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors"),
    KnownFile("text_encoders", "umt5_xxl_fp16.safetensors", _W21, "split_files/text_encoders/umt5_xxl_fp16.safetensors"),
    # image encoder for Wan 2.1 I2V
    KnownFile("clip_vision", "clip_vision_h.safetensors", _W21, "split_files/clip_vision/clip_vision_h.safetensors"),
)  # fmt: skip

NONE_CHOICE = "none"


def known_files(folder: str) -> list[KnownFile]:
    return [k for k in KNOWN_FILES if k.folder == folder]


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
            f"https://huggingface.co/{known.repo_id} ({known.repo_path}), or put the file there yourself."
        )
    return download_known(known)


def download_known(known: KnownFile) -> str:
    """Fetch a known file with huggingface_hub into the first path of its ComfyUI folder."""
    import shutil

    import folder_paths
    from huggingface_hub import hf_hub_download

    target_dir = folder_paths.get_folder_paths(known.folder)[0]
    staging = os.path.join(target_dir, ".wanstream-download")
    os.makedirs(staging, exist_ok=True)
    try:
        fetched = hf_hub_download(repo_id=known.repo_id, filename=known.repo_path, local_dir=staging)
        target = os.path.join(target_dir, known.name)
        os.replace(fetched, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
