"""UMT5 tokenizer (tiny SentencePiece model trained here) and the full official text path."""

import logging

import pytest
import sentencepiece
import torch
from official_ref import max_rel_err
from safetensors.torch import save_file

from wan_core.checkpoint import CheckpointError
from wan_core.text import (
    clean_prompt,
    encode_prompts,
    encode_prompts_detailed,
    load_tokenizer,
    load_umt5,
    pad_embeddings,
)

SENTENCES = [
    "a cat sits on the mat and looks at the camera",
    "the quick brown fox jumps over the lazy dog",
    "streaming video generation with wan in real time",
    "hello world, this is a test of tokenization",
    "a drone shot of a coastline at sunset, waves crashing on the rocks",
]
PROMPTS = ["a cat jumps over the lazy dog", "hello wan, a drone shot at sunset", "xyz QQ unknown words"]


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("spm")
    (d / "corpus.txt").write_text("\n".join(SENTENCES * 4))
    sentencepiece.SentencePieceTrainer.train(
        input=str(d / "corpus.txt"),
        model_prefix=str(d / "sp"),
        vocab_size=80,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,  # umT5: <pad>=0, </s>=1, <unk>=2, no BOS
        hard_vocab_limit=False,
        minloglevel=2,
    )
    return d / "sp.model"


def _tiny_umt5_state(seed=0):
    from transformers import UMT5Config, UMT5EncoderModel

    cfg = UMT5Config(
        vocab_size=128, d_model=32, d_kv=8, num_heads=4, d_ff=64, num_layers=2, feed_forward_proj="gated-gelu"
    )
    torch.manual_seed(seed)
    m = UMT5EncoderModel(cfg).eval()
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


@pytest.fixture(scope="module")
def comfy_file(spm_model, tmp_path_factory):
    """A ComfyUI-style umt5 file: transformers keys + the tokenizer as a 'spiece_model' uint8 tensor."""
    d = tmp_path_factory.mktemp("comfy")
    sd = _tiny_umt5_state()
    sd["spiece_model"] = torch.frombuffer(bytearray(spm_model.read_bytes()), dtype=torch.uint8)
    save_file(sd, d / "umt5_xxl_fp16.safetensors")
    return d / "umt5_xxl_fp16.safetensors"


def _hf_reference_tokenizer(spm_model):
    """transformers fast tokenizer built from the same pieces (the official path's truncation/padding)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    sp = sentencepiece.SentencePieceProcessor(model_file=str(spm_model))
    vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    tk = Tokenizer(models.Unigram(vocab, unk_id=sp.unk_id(), byte_fallback=False))
    tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tk.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", sp.eos_id())]
    )
    return tk, PreTrainedTokenizerFast(
        tokenizer_object=tk, eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def test_embedded_spiece_gives_sentencepiece_ids_plus_eos(spm_model, comfy_file):
    sp = sentencepiece.SentencePieceProcessor(model_file=str(spm_model))
    tok = load_tokenizer(comfy_file)
    assert "spiece_model" in tok.source
    out = tok(PROMPTS, max_length=512)
    for i, p in enumerate(PROMPTS):
        want = [*sp.encode(p), 1]  # + </s>, no BOS
        assert out.ids[i, : out.seq_lens[i]].tolist() == want
        assert out.seq_lens[i] == len(want)
        assert out.mask[i].sum() == len(want)
        assert out.ids[i, out.seq_lens[i] :].eq(0).all()
    assert out.dropped == [0, 0, 0]
    assert 2 in out.ids[2].tolist()  # unknown letters -> <unk>


def test_truncation_and_padding_as_official(spm_model, comfy_file):
    _, hf = _hf_reference_tokenizer(spm_model)
    tok = load_tokenizer(comfy_file)
    long_prompt = " ".join(SENTENCES)
    prompts = [*PROMPTS, long_prompt, ""]
    for max_len in (6, 16, 40):
        ours = tok(prompts, max_length=max_len, padding="max_length", clean=False)
        ref = hf(prompts, padding="max_length", truncation=True, max_length=max_len, return_tensors="pt")
        assert torch.equal(ours.ids, ref.input_ids), max_len
        assert torch.equal(ours.mask, ref.attention_mask), max_len
    out = tok([long_prompt], max_length=16)
    assert out.ids.shape == (1, 16) and out.ids[0, -1] == 1  # </s> kept last
    assert out.dropped[0] == len(tok.encode(clean_prompt(long_prompt))) - 15 > 0


def test_tokenizer_json_beside_the_weights(spm_model, tmp_path):
    tk, _ = _hf_reference_tokenizer(spm_model)
    folder = tmp_path / "Wan2.1-T2V-1.3B"
    (folder / "google" / "umt5-xxl").mkdir(parents=True)
    tk.save(str(folder / "google" / "umt5-xxl" / "tokenizer.json"))
    save_file(_tiny_umt5_state(), folder / "umt5_no_tokenizer.safetensors")
    tok = load_tokenizer(folder / "umt5_no_tokenizer.safetensors")
    assert tok.source.endswith("tokenizer.json")
    sp = sentencepiece.SentencePieceProcessor(model_file=str(spm_model))
    for p in PROMPTS:
        assert tok.encode(p) == sp.encode(p)
    # spiece.model is preferred when both are there
    (folder / "spiece.model").write_bytes(spm_model.read_bytes())
    assert load_tokenizer(folder / "umt5_no_tokenizer.safetensors").source.endswith("spiece.model")
    assert load_tokenizer(folder).source.endswith("spiece.model")


def test_no_tokenizer_is_a_clear_error(tmp_path):
    torch.save({"token_embedding.weight": torch.zeros(4, 4)}, tmp_path / "models_t5_umt5-xxl-enc-bf16.pth")
    with pytest.raises(
        CheckpointError, match=r"No UMT5 tokenizer.*spiece_model.*spiece\.model.*tokenizer\.json"
    ):
        load_tokenizer(tmp_path / "models_t5_umt5-xxl-enc-bf16.pth")
    with pytest.raises(CheckpointError, match="not found"):
        load_tokenizer(tmp_path / "nope.safetensors")


def test_clean_prompt_as_official():
    from official_ref import official

    ref = official("tokenizers")
    for text in ["  a  cat\n\tsits &amp;amp; waits  ", "caf\u00c3\u00a9 &lt;b&gt;", "", "   "]:
        assert clean_prompt(text) == ref.whitespace_clean(ref.basic_clean(text))
    assert clean_prompt("  a  cat\n\tsits &amp;amp; waits  ") == "a cat sits & waits"


def test_encode_prompts_official_path(spm_model, comfy_file, caplog):
    enc = load_umt5(comfy_file, dtype=torch.float32)
    tok = load_tokenizer(comfy_file)
    sp = sentencepiece.SentencePieceProcessor(model_file=str(spm_model))
    prompts = [PROMPTS[0], "  " + PROMPTS[1] + "\n", ""]
    embs = encode_prompts(enc, tok, prompts, text_len=512)
    assert [e.shape for e in embs] == [
        (len(sp.encode(PROMPTS[0])) + 1, 32),
        (len(sp.encode(PROMPTS[1])) + 1, 32),
        (1, 32),  # empty prompt: </s> only
    ]
    # each equals the encoder run alone on its own ids (padding in the batch changes nothing)
    for p, e in zip(prompts, embs):
        ids = torch.tensor([[*sp.encode(clean_prompt(p)), 1]])
        with torch.no_grad():
            alone = enc(ids, torch.ones_like(ids))[0]
        assert max_rel_err(e, alone) <= 1e-5
    # and equals the official 512-padded run, rows kept up to seq_len
    full = tok(prompts, max_length=512, padding="max_length")
    with torch.no_grad():
        ctx = enc(full.ids, full.mask)
    for i, e in enumerate(embs):
        assert max_rel_err(e, ctx[i, : full.seq_lens[i]]) <= 1e-5
    padded = pad_embeddings(embs, 512)
    assert padded.shape == (3, 512, 32)
    assert torch.equal(padded[0, : embs[0].shape[0]], embs[0]) and padded[0, embs[0].shape[0] :].eq(0).all()
    # over-long prompt: truncated to text_len with </s> kept, and the user is told
    with caplog.at_level(logging.WARNING, logger="wan_core.text"):
        res = encode_prompts_detailed(enc, tok, [" ".join(SENTENCES), "short"], text_len=12)
    assert res.seq_lens[0] == 12 and res.embeddings[0].shape == (12, 32)
    assert res.dropped[0] > 0 and res.dropped[1] == 0
    assert len(res.warnings) == 1 and "prompt 1" in res.warnings[0] and "ignored" in res.warnings[0]
    assert res.warnings[0] in caplog.text
