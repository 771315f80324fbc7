"""Text conditioning for Wan: the UMT5-XXL encoder with its tokenizer, and the prompt-embedding cache.

Text (what the rollout and the nodes call)::

    from wan_core.text import load_umt5, load_tokenizer, encode_prompts, pad_embeddings

    enc = load_umt5(path, dtype=None, device="cpu")  # official .pth / ComfyUI fp16 or fp8 scaled /
                                                     # transformers (sharded) layout; fp8 stays fp8
    tok = load_tokenizer(path)    # 'spiece_model' inside a ComfyUI file, else spiece.model /
                                  # tokenizer.json beside the weights; else CheckpointError listing them
    embs = encode_prompts(enc, tok, ["a cat", ""], text_len=512)  # [Tensor [L_i, 4096]], L_i incl. EOS
    ctx = pad_embeddings(embs, 512)                               # [B, 512, 4096], zero rows after L_i
    del enc                                                       # encode, then free

``encode_prompts_detailed`` returns the same plus ``seq_lens``, ``dropped`` (tokens cut by the
512-token truncation) and ``warnings`` (one sentence per truncated prompt, to show the user; also
logged on the ``wan_core.text`` logger). An empty prompt is allowed and encodes as ``</s>`` only.

Cache (a repeated prompt never loads the encoder)::

    cache = PromptEmbeddingCache(max_entries=64, cache_dir=None)
    embs = cache.get_or_encode(prompts, encoder_path, lambda: (load_umt5(p), load_tokenizer(p)))
    cache.last_warnings  # truncation warnings of these prompts

CLIP vision lives in ``wan_core.clip``; its names are re-exported here for older imports.
"""

from ..clip import (  # re-exports: CLIP vision moved to wan_core.clip
    CLIP_MEAN,
    CLIP_STD,
    CLIP_VISION_PRESETS,
    CLIPVisionConfig,
    CLIPVisionTower,
    clip_preprocess,
    load_clip_vision,
)
from .clean import clean_prompt
from .encode import EncodedPrompts, encode_prompts, encode_prompts_detailed, pad_embeddings
from .loader import load_umt5
from .prompt_cache import PromptEmbeddingCache, file_identity
from .tokenizer import TokenizedPrompts, UMT5Tokenizer, load_tokenizer
from .umt5 import UMT5_PRESETS, UMT5Config, UMT5Encoder

__all__ = [
    "clean_prompt",
    "load_clip_vision",
    "clip_preprocess",
    "CLIP_MEAN",
    "CLIP_STD",
    "CLIP_VISION_PRESETS",
    "CLIPVisionConfig",
    "CLIPVisionTower",
    "EncodedPrompts",
    "encode_prompts",
    "encode_prompts_detailed",
    "pad_embeddings",
    "load_umt5",
    "PromptEmbeddingCache",
    "file_identity",
    "TokenizedPrompts",
    "UMT5Tokenizer",
    "load_tokenizer",
    "UMT5_PRESETS",
    "UMT5Config",
    "UMT5Encoder",
]
