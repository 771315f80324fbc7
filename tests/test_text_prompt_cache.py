"""PromptEmbeddingCache: a repeated prompt never loads the encoder; keyed by the encoder file."""

import os

import pytest
import sentencepiece
import torch
from safetensors.torch import save_file

from wan_core.text import PromptEmbeddingCache, encode_prompts, load_tokenizer, load_umt5


@pytest.fixture()
def encoder_file(tmp_path):
    from transformers import UMT5Config, UMT5EncoderModel

    (tmp_path / "c.txt").write_text("\n".join(["a cat on a mat", "a dog in the fog", "waves at sunset"] * 5))
    sentencepiece.SentencePieceTrainer.train(
        input=str(tmp_path / "c.txt"),
        model_prefix=str(tmp_path / "sp"),
        vocab_size=40,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    cfg = UMT5Config(
        vocab_size=64, d_model=16, d_kv=4, num_heads=4, d_ff=32, num_layers=1, feed_forward_proj="gated-gelu"
    )
    torch.manual_seed(0)
    sd = {k: v.detach().clone() for k, v in UMT5EncoderModel(cfg).state_dict().items()}
    sd["spiece_model"] = torch.frombuffer(bytearray((tmp_path / "sp.model").read_bytes()), dtype=torch.uint8)
    save_file(sd, tmp_path / "umt5.safetensors")
    return tmp_path / "umt5.safetensors"


class _Loader:
    def __init__(self, path):
        self.path, self.calls = path, 0

    def __call__(self):
        self.calls += 1
        return load_umt5(self.path, dtype=torch.float32), load_tokenizer(self.path)


def test_repeated_prompt_does_not_load_the_encoder(encoder_file, tmp_path):
    loader = _Loader(encoder_file)
    cache = PromptEmbeddingCache(cache_dir=tmp_path / "cache")
    first = cache.get_or_encode(["a cat on a mat", "waves"], encoder_file, loader)
    assert loader.calls == 1
    ref = encode_prompts(*loader(), ["a cat on a mat", "waves"])
    loader.calls = 1
    assert all(torch.equal(a, b) for a, b in zip(first, ref))
    again = cache.get_or_encode(["waves", "a cat on a mat"], encoder_file, loader)
    assert loader.calls == 1 and torch.equal(again[0], first[1]) and torch.equal(again[1], first[0])
    # one new prompt: one load, encoding only that prompt
    mixed = cache.get_or_encode(["a dog in the fog", "waves"], encoder_file, loader)
    assert loader.calls == 2 and cache.misses == 3 and cache.hits == 3
    assert torch.equal(mixed[1], first[1])
    # a fresh cache on the same folder reads the disk entries without loading
    disk = PromptEmbeddingCache(cache_dir=tmp_path / "cache")
    again = disk.get_or_encode(["a cat on a mat"], encoder_file, loader)
    assert loader.calls == 2 and torch.equal(again[0], first[0])


def test_changed_encoder_file_is_a_miss(encoder_file):
    loader = _Loader(encoder_file)
    cache = PromptEmbeddingCache()
    cache.get_or_encode(["a cat"], encoder_file, loader)
    st = os.stat(encoder_file)
    os.utime(encoder_file, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    cache.get_or_encode(["a cat"], encoder_file, loader)
    assert loader.calls == 2
    cache.get_or_encode(["a cat"], encoder_file, loader, text_len=8)  # other text_len: another entry
    assert loader.calls == 3


def test_truncation_warning_survives_the_cache(encoder_file):
    loader = _Loader(encoder_file)
    cache = PromptEmbeddingCache(max_entries=1)
    long_prompt = "a cat on a mat " * 10
    out = cache.get_or_encode(["ok", long_prompt], encoder_file, loader, text_len=8)
    assert out[1].shape[0] == 8 and len(cache.last_warnings) == 1 and "prompt 2" in cache.last_warnings[0]
    out = cache.get_or_encode([long_prompt], encoder_file, loader, text_len=8)
    assert loader.calls == 1 and "prompt 1" in cache.last_warnings[0]
