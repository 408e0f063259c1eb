"""Writing a scratchlm model as a Hugging Face GPT-2 folder that ``transformers`` loads unaided.

``AutoModelForCausalLM.from_pretrained(folder)`` reads ``config.json`` + ``model.safetensors``;
``AutoTokenizer.from_pretrained(folder)`` reads ``tokenizer.json`` + ``tokenizer_config.json``
as a ``PreTrainedTokenizerFast``. A BPE tokenizer is written as it is; a char or byte one is
spelled in the ``tokenizers`` format so that it gives the very same ids:

- char: a BPE model with one token per character and no merges, its tokens joined on decode;
- byte: GPT-2's byte-to-character table (each byte is one printable character) with no merges,
  so every byte is its own token, id = byte value.

The folder is written whole under a temporary name beside OUTPUT_DIR, then renamed.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from scratchlm.checkpoint import Checkpoint, sync_folder
from scratchlm.data.bpe import END_OF_TEXT, tokenizers_library
from scratchlm.errors import CheckpointError, OptionError
from scratchlm.huggingface.gpt2_config import hf_config, why_not_gpt2
from scratchlm.huggingface.gpt2_weights import PREFIX, gpt2_layout


def export_folder(checkpoint: Checkpoint, source, output) -> Path:
    """Write ``checkpoint`` (read from ``source``) as a GPT-2 folder ``output``; CheckpointError if GPT-2
    cannot express the model, OptionError if ``output`` already exists."""
    output = Path(output)
    why = why_not_gpt2(checkpoint.config)
    if why:
        raise CheckpointError(f"{source} cannot be exported as GPT-2: {why}")
    if output.exists():
        raise OptionError(f"{output} already exists: choose a new OUTPUT_DIR (export never overwrites)")
    if not output.parent.is_dir():
        raise OptionError(f"{output.parent} is not a folder: create it first, or choose another OUTPUT_DIR")
    tokenizer_json = tokenizer_as_json(checkpoint.tokenizer)
    from safetensors.numpy import save_file

    temporary = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent))
    try:
        save_file(gpt2_tensors(checkpoint), str(temporary / "model.safetensors"), metadata={"format": "pt"})
        end_of_text = checkpoint.tokenizer.end_of_text_id
        _write_json(temporary / "config.json", hf_config(checkpoint.config, end_of_text))
        (temporary / "tokenizer.json").write_text(tokenizer_json, encoding="utf-8")
        _write_json(temporary / "tokenizer_config.json", tokenizer_config(checkpoint))
        temporary.rename(output)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    sync_folder(output.parent)
    return output


def gpt2_tensors(checkpoint: Checkpoint) -> dict:
    """GPT-2 name -> float32 array, Conv1D weights transposed to (in, out)."""
    tensors = {}
    for ours, theirs, _, transposed in gpt2_layout(checkpoint.config):
        array = np.asarray(checkpoint.weights[ours], dtype=np.float32)
        name = theirs if theirs == "lm_head.weight" else PREFIX + theirs
        tensors[name] = np.ascontiguousarray(array.T if transposed else array)   # safetensors needs C order
    return tensors


def tokenizer_config(checkpoint: Checkpoint) -> dict:
    """``tokenizer_config.json``: the fast tokenizer, its context, and GPT-2's <|endoftext|> as the
    beginning, end and padding of a text where the vocabulary has it (transformers' generate() stops
    at the end token and pads with it)."""
    settings = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": checkpoint.config.max_seq_len,
                "clean_up_tokenization_spaces": False}
    if checkpoint.tokenizer.end_of_text_id is not None:
        settings.update(bos_token=END_OF_TEXT, eos_token=END_OF_TEXT, unk_token=END_OF_TEXT)
    return settings


def tokenizer_as_json(tokenizer) -> str:
    """A tokenizer.json that gives ``tokenizer``'s ids for every text it encodes."""
    if tokenizer.kind == "bpe":
        return tokenizer.to_json()
    lib = tokenizers_library()
    if tokenizer.kind == "char":
        vocab = {c: i for i, c in enumerate(tokenizer.chars)}
        tok = lib.Tokenizer(lib.models.BPE(vocab=vocab, merges=[]))
        tok.decoder = lib.decoders.Fuse()
        return tok.to_str()
    table = byte_characters()
    tok = lib.Tokenizer(lib.models.BPE(vocab={table[b]: b for b in range(256)}, merges=[]))
    tok.pre_tokenizer = lib.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = lib.decoders.ByteLevel()
    return tok.to_str()


def byte_characters() -> list[str]:
    """GPT-2's byte -> character table: printable Latin-1 bytes stand for themselves, the other
    68 take the code points from 256 up, in byte order (the ByteLevel pre-tokenizer's alphabet)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


def _write_json(path: Path, values: dict) -> None:
    path.write_text(json.dumps(values, indent=2) + "\n", encoding="utf-8")
