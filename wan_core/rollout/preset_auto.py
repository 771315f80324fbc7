"""Preset ``auto``: the preset of a loaded DiT, from its file name and its key layout.

The layout (``wan_core.dit.config``: the config read from the weights) says the architecture --
Wan2.1 T2V 1.3B / 14B, Wan2.1 I2V 14B (CLIP image cross-attention), Wan2.2 TI2V 5B (48 channels),
Wan2.2 I2V A14B (no CLIP) -- but not the training: Self-Forcing, CausVid, LongLive, Rolling Forcing,
Causal Forcing (++), Reward Forcing and base Wan 2.1 1.3B share one layout, LongLive 2.0 and base
Wan2.2 TI2V 5B another. The file name tells them apart: first the
presets' own file names (``ModelFile.name`` and its alternatives), then a preset's name stem
in the file name (``self_forcing`` in ``self_forcing_dmd_fp16.safetensors``). A name that fits no
preset of its layout leaves the layout alone to decide; more than one candidate is an error listing
them.
"""

from __future__ import annotations

import os
import re
from typing import Any

from .presets import PRESETS, RolloutPreset
from .request import PYTHON_WORDS, RequestError, Words

__all__ = ["AUTO_PRESET", "ARCHITECTURES", "preset_candidates", "resolve_auto_preset"]

AUTO_PRESET = "auto"

# preset -> the architecture of its DiT (``wan_core.dit.config.PRESETS`` key)
ARCHITECTURES: dict[str, str] = {
    "self-forcing-1.3b": "wan2.1-t2v-1.3b",
    "causvid-1.3b": "wan2.1-t2v-1.3b",
    "longlive-1.3b": "wan2.1-t2v-1.3b",
    "rolling-forcing-1.3b": "wan2.1-t2v-1.3b",
    "causal-forcing-chunkwise-1.3b": "wan2.1-t2v-1.3b",
    "causal-forcing-framewise-1.3b": "wan2.1-t2v-1.3b",
    "krea-realtime-14b": "wan2.1-t2v-14b",
    "causal-forcing-pp-2step-1.3b": "wan2.1-t2v-1.3b",
    "causal-forcing-pp-1step-1.3b": "wan2.1-t2v-1.3b",
    "reward-forcing-1.3b": "wan2.1-t2v-1.3b",
    "longlive2-5b": "wan2.2-ti2v-5b",
    "wan2.1-t2v-1.3b": "wan2.1-t2v-1.3b",
    "wan2.1-t2v-14b": "wan2.1-t2v-14b",
    "wan2.1-i2v-14b-480p": "wan2.1-i2v-14b",
    "wan2.2-ti2v-5b": "wan2.2-ti2v-5b",
    "wan2.2-t2v-a14b": "wan2.2-t2v-a14b",
    "wan2.2-i2v-a14b": "wan2.2-i2v-a14b",
}

_KIND = ("model_type", "in_dim", "out_dim", "image_cross_attn")  # what any Wan DiT of the family has
_SIZE = ("dim", "num_layers", "num_heads", "ffn_dim")  # what the released sizes add


def _architecture(name: str):
    from wan_core.dit.config import PRESETS as DIT_CONFIGS

    return DIT_CONFIGS[ARCHITECTURES[name]]


def _fits(config: Any, preset: RolloutPreset) -> bool:
    """The loaded DiT's layout fits the preset's architecture. A DiT of no released size (a test
    model) is matched on its kind only."""
    arch = _architecture(preset.name)
    if any(getattr(config, k, None) != getattr(arch, k) for k in _KIND):
        return False
    released = {tuple(getattr(_architecture(p), k) for k in _SIZE) for p in ARCHITECTURES}
    size = tuple(getattr(config, k, None) for k in _SIZE)
    return size not in released or size == tuple(getattr(arch, k) for k in _SIZE)


def _normal(name: str) -> str:
    return re.sub(r"[-_. ]+", "_", name.lower())


def _file_names(preset: RolloutPreset) -> set[str]:
    spec = preset.dit
    return {_normal(n) for n in (spec.name, *spec.alternatives)}


def _stem(preset: RolloutPreset) -> str:
    return _normal(re.sub(r"-\d+(\.\d+)?b$", "", preset.name))  # "self-forcing-1.3b" -> "self_forcing"


def preset_candidates(path: str | os.PathLike, config: Any, *, dual_expert: bool = False) -> list[str]:
    """The presets the DiT at ``path`` (``config``: its layout) can be, best evidence first: its file
    name among the presets' files, a preset's name stem in it, else its layout alone.
    ``dual_expert``: a second (low-noise) expert is connected, so only two-expert presets fit."""
    name = _normal(os.path.basename(os.fspath(path).rstrip("/\\")))
    fitting = [p for p in PRESETS.values() if _fits(config, p) and (p.boundary is not None) == dual_expert]
    if not dual_expert and not fitting:
        fitting = [p for p in PRESETS.values() if _fits(config, p)]
    by_file = [p for p in fitting if name in _file_names(p)]
    stems = [p for p in fitting if _stem(p) in name]
    longest = max((len(_stem(p)) for p in stems), default=0)  # causal_forcing_framewise over causal_forcing
    by_stem = [p for p in stems if len(_stem(p)) == longest]
    for found in (by_file, by_stem, fitting):
        if found:
            return [p.name for p in found]
    return []


def resolve_auto_preset(
    path: str | os.PathLike, config: Any, *, dual_expert: bool = False, words: Words = PYTHON_WORDS
) -> str:
    """The one preset of ``preset_candidates``, or a ``RequestError`` (field ``preset``) listing the
    candidates (``preset.ambiguous``) or saying that none fits (``preset.no_fit``)."""
    found = preset_candidates(path, config, dual_expert=dual_expert)
    if len(found) == 1:
        return found[0]
    file = os.path.basename(os.fspath(path).rstrip("/\\"))
    layout = (
        f"{getattr(config, 'model_type', '?')} DiT, {getattr(config, 'dim', '?')} wide, "
        f"{getattr(config, 'out_dim', '?')} latent channels"
    )
    if not found:
        raise RequestError(
            "preset", AUTO_PRESET, f"no preset runs the DiT {file} ({layout})", None,
            "pick the preset by hand, or load a supported Wan DiT", "preset.no_fit", words,
        )  # fmt: skip
    raise RequestError(
        "preset", AUTO_PRESET,
        f"the DiT {file} ({layout}) fits {len(found)} presets: {', '.join(found)} -- the file name does not "
        "say which training it is", found[0], "pick one of them in preset", "preset.ambiguous", words,
    )  # fmt: skip
