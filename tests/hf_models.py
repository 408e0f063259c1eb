"""Tiny Hugging Face GPT-2 folders for the interchange tests, built offline in the test.

``small_bpe`` trains a byte-level BPE tokenizer (GPT-2's kind) on the shipped sample text;
``gpt2_folder`` saves a small random ``GPT2LMHeadModel`` and that tokenizer with
``save_pretrained``, as a downloaded model folder looks. Every parameter gets random values
(LayerNorms and biases too), so a parity test exercises every weight and its layout.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_models import sample_text

BPE_VOCAB = 300
END_OF_TEXT = "<|endoftext|>"


def small_bpe(vocab_size: int = BPE_VOCAB):
    """A ``tokenizers.Tokenizer``: byte-level BPE with ``vocab_size`` tokens, trained on the sample."""
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[END_OF_TEXT], show_progress=False)
    tok.train_from_iterator([sample_text()], trainer)
    return tok


def save_bpe_files(tok, folder: Path) -> Path:
    """``tokenizer.json`` and GPT-2's ``vocab.json`` + ``merges.txt`` of ``tok`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    tok.model.save(str(folder))
    return folder


def gpt2_folder(folder: Path, seed: int = 0, n_positions: int = 32, n_embd: int = 32, n_layer: int = 2,
                n_head: int = 2, **config) -> Path:
    """A saved random GPT2LMHeadModel (with the small BPE tokenizer) in ``folder``."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    tok = small_bpe()
    settings = dict(vocab_size=tok.get_vocab_size(), n_positions=n_positions, n_embd=n_embd, n_layer=n_layer,
                    n_head=n_head, bos_token_id=0, eos_token_id=0)
    settings.update(config)
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**settings)).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.1)
    model.save_pretrained(folder)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=END_OF_TEXT, eos_token=END_OF_TEXT)
    fast.save_pretrained(folder)
    return folder


def transformers_model(folder: Path, dtype="float32"):
    """The model in ``folder`` as transformers loads it, in eval mode, in ``dtype``."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    model = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    return model.to(getattr(torch, dtype))
