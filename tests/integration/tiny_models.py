"""Tiny random models in the real file formats, written under the real file names the bundled
workflows use, into a ComfyUI ``models/`` folder (and a test image into ``input/``)."""

from __future__ import annotations

from pathlib import Path


def install_tiny_models(models_dir: Path, input_dir: Path) -> dict[str, Path]:
    """Returns {real file name: written path}. Filled in by the model fixtures of wan_core."""
    for folder in ("diffusion_models", "vae", "vae_approx", "text_encoders", "clip_vision"):
        (models_dir / folder).mkdir(parents=True, exist_ok=True)
    return {}
