"""The BPE tokenizer kind: read offline from tokenizer.json or vocab.json + merges.txt, carried whole
by checkpoints, streamed character by character, and never imported unless a BPE tokenizer is used."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hf_models import save_bpe_files, small_bpe
from tiny_models import sample_text, tiny_model

from scratchlm.checkpoint import load_checkpoint, save_checkpoint
from scratchlm.data.bpe import BPETokenizer, load_bpe
from scratchlm.errors import MissingExtra, TokenizerError
from scratchlm.inference.sampling import TextStream
from scratchlm.model import GPT, GPTConfig

MIXED = "The quick brown fox, naïve café, 日本語 and 😀 emoji.\n\tTabs too."


@pytest.fixture(scope="module")
def bpe_folder(tmp_path_factory):
    return save_bpe_files(small_bpe(), tmp_path_factory.mktemp("bpe"))


def test_reads_tokenizer_json_and_round_trips_any_text(bpe_folder):
    tok = load_bpe(bpe_folder / "tokenizer.json")
    reference = small_bpe()
    for text in (sample_text(), MIXED):
        ids = tok.encode(text)
        assert ids.dtype == np.int32
        np.testing.assert_array_equal(ids, reference.encode(text).ids)
        assert tok.decode(ids) == text
        assert tok.unknown(text) == []                  # byte-level BPE encodes everything
    assert len(tok.encode(sample_text())) < 0.7 * len(sample_text())   # merges really merge
    assert tok.vocab_size == reference.get_vocab_size()


def test_vocab_and_merges_give_the_same_ids_as_tokenizer_json(bpe_folder, tmp_path):
    pair = tmp_path / "pair"
    pair.mkdir()
    for name in ("vocab.json", "merges.txt"):
        (pair / name).write_bytes((bpe_folder / name).read_bytes())
    from_json, from_pair = load_bpe(bpe_folder), load_bpe(pair)
    for text in (sample_text(), MIXED):
        np.testing.assert_array_equal(from_pair.encode(text), from_json.encode(text))
        assert from_pair.decode(from_pair.encode(text)) == text


def test_a_checkpoint_carries_the_tokenizer_whole(bpe_folder, tmp_path):
    tok = load_bpe(bpe_folder)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, d_model=16, n_heads=2, n_layers=1, max_seq_len=16))
    path = save_checkpoint(tmp_path / "bpe.pt", model, tok)
    for name in ("tokenizer.json", "vocab.json", "merges.txt"):   # the file alone is enough
        (bpe_folder / name).rename(tmp_path / name)
    try:
        loaded = load_checkpoint(path).tokenizer
    finally:
        for name in ("tokenizer.json", "vocab.json", "merges.txt"):
            (tmp_path / name).rename(bpe_folder / name)
    assert isinstance(loaded, BPETokenizer)
    np.testing.assert_array_equal(loaded.encode(MIXED), tok.encode(MIXED))


def test_a_stream_shows_each_character_once_it_is_complete(bpe_folder):
    tok = load_bpe(bpe_folder)
    ids = tok.encode(MIXED)
    stream = TextStream(tok)
    pieces = [stream.push(int(i)) for i in ids] + [stream.flush()]
    assert "".join(pieces) == MIXED
    assert all("\ufffd" not in piece for piece in pieces)   # no half of an emoji ever shown


def test_bad_tokenizer_files_are_named(tmp_path):
    pytest.importorskip("tokenizers")
    (tmp_path / "tokenizer.json").write_text('{"not": "a tokenizer"}')
    with pytest.raises(TokenizerError, match="not a tokenizer.json"):
        load_bpe(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(TokenizerError, match="holds no tokenizer"):
        load_bpe(tmp_path / "empty")
    with pytest.raises(TokenizerError, match="tokenizer file not found"):
        load_bpe(tmp_path / "missing.json")


def test_without_the_library_one_line_says_how_to_install_it(bpe_folder, monkeypatch):
    monkeypatch.setitem(sys.modules, "tokenizers", None)         # import tokenizers now fails
    with pytest.raises(MissingExtra, match=r"pip install 'scratchlm\[hf\]'"):
        load_bpe(bpe_folder)


def test_char_and_byte_models_never_import_the_library(tmp_path):
    model, tok = tiny_model(tokenizer="byte")
    path = save_checkpoint(tmp_path / "byte.pt", model, tok)
    code = ("import sys; from scratchlm.checkpoint import load_checkpoint; load_checkpoint(sys.argv[1]); "
            "import scratchlm.cli.main; print('tokenizers' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr


def test_train_from_scratch_with_a_bpe_tokenizer_file(bpe_folder, tmp_path):
    from train_helpers import SAMPLE, TINY, train_in_process

    out = tmp_path / "run"
    train_in_process(["train", SAMPLE, "--tokenizer", bpe_folder / "tokenizer.json", "--output-dir", out, *TINY,
                      "--epochs", "1", "--max-steps", "2", "--quiet", "--device", "cpu"])
    checkpoint = load_checkpoint(out / "final_model.pt")
    assert checkpoint.tokenizer.kind == "bpe" and checkpoint.config.vocab_size == small_bpe().get_vocab_size()
    np.testing.assert_array_equal(checkpoint.tokenizer.encode(MIXED), load_bpe(bpe_folder).encode(MIXED))


def test_an_empty_prompt_starts_from_end_of_text(bpe_folder):
    from scratchlm.data.tokenizer import build_tokenizer
    from scratchlm.inference.sampling import prompt_ids

    tok = load_bpe(bpe_folder / "tokenizer.json")
    end = small_bpe().token_to_id("<|endoftext|>")
    assert tok.end_of_text_id == end
    assert prompt_ids(tok, "").tolist() == [end]                     # where GPT-2 starts a text
    assert prompt_ids(tok, "The").tolist() == tok.encode("The").tolist()
    assert prompt_ids(build_tokenizer("char", "ab\ncd"), "").tolist() == build_tokenizer("char", "ab\ncd").encode("\n").tolist()
