"""The BPE tokenizer kind: Hugging Face's ``tokenizers`` library, read from files, offline.

A BPE tokenizer comes from a ``tokenizer.json`` (the library's own format, which GPT-2
folders hold) or a GPT-2 style ``vocab.json`` + ``merges.txt`` pair (byte-level BPE).
Nothing is ever downloaded. A checkpoint stores the whole ``tokenizer.json`` text in its
metadata, so one file is still enough to generate, evaluate or resume.

``tokenizers`` is an optional extra (``pip install 'scratchlm[hf]'``): it is imported only
when a BPE tokenizer is built, and without it the error says how to install it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from scratchlm.errors import MissingExtra, TokenizerError
from scratchlm.limits import excerpt

KIND = "bpe"
END_OF_TEXT = "<|endoftext|>"   # GPT-2's document separator
TOKENIZER_JSON = "tokenizer.json"
VOCAB_JSON, MERGES_TXT = "vocab.json", "merges.txt"
INSTALL_HINT = "pip install 'scratchlm[hf]' (or pip install tokenizers)"
HELD_TOKENS = 8        # tokens a stream waits for a multi-byte character to complete before giving up


def tokenizers_library():
    """The ``tokenizers`` module, or MissingExtra with the one line that says how to get it."""
    try:
        import tokenizers
    except ImportError:
        raise MissingExtra(f"BPE tokenizers need the 'tokenizers' library: {INSTALL_HINT}") from None
    return tokenizers


class BPETokenizer:
    """Token ids <-> text through a ``tokenizers.Tokenizer``; no special tokens are added."""

    kind = KIND

    def __init__(self, tokenizer, source: str = "a tokenizer"):
        self._tok = tokenizer
        self.vocab_size = int(tokenizer.get_vocab_size(with_added_tokens=True))
        self.source = source
        unk = getattr(tokenizer.model, "unk_token", None)
        self._unk_id = tokenizer.token_to_id(unk) if unk else None
        self._known: dict[str, bool] = {}
        # GPT-2's one special token: it ends a document and starts the next, so a text starts from it.
        self.end_of_text_id = tokenizer.token_to_id(END_OF_TEXT)

    @classmethod
    def from_json(cls, text: str, source: str = "a tokenizer") -> BPETokenizer:
        lib = tokenizers_library()
        try:
            return cls(lib.Tokenizer.from_str(text), source)
        except Exception as exc:           # the library raises plain Exceptions for a bad file
            raise TokenizerError(f"{source} is not a tokenizer.json that the tokenizers library reads "
                                 f"({excerpt(str(exc), 120, quoted=False)})") from None

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self._tok.encode(text, add_special_tokens=False).ids, dtype=np.int32)   # (N,)

    def decode(self, ids) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def unknown(self, text: str) -> list[str]:
        """The distinct characters of ``text`` that encode to the unknown token (none for byte-level BPE)."""
        if self._unk_id is None:
            return []
        for c in set(text) - self._known.keys():
            self._known[c] = self._unk_id not in self._tok.encode(c, add_special_tokens=False).ids
        return sorted(c for c in set(text) if not self._known[c])

    def to_json(self) -> str:
        return self._tok.to_str()

    def to_dict(self) -> dict:
        return {"kind": KIND, "json": self.to_json()}


class BPEStream:
    """Token ids -> text, one at a time: a byte-level token may end inside a character, so the
    text of the tokens since the last complete character waits until it decodes whole."""

    def __init__(self, tokenizer: BPETokenizer):
        self.tokenizer, self.pending = tokenizer, []

    def push(self, token: int) -> str:
        self.pending.append(token)
        text = self.tokenizer.decode(self.pending)
        if text.endswith("\ufffd") and len(self.pending) < HELD_TOKENS:
            return ""
        self.pending = []
        return text

    def flush(self) -> str:
        text, self.pending = self.tokenizer.decode(self.pending), []
        return text


def bpe_from_dict(values: dict) -> BPETokenizer:
    text = values.get("json")
    if not isinstance(text, str) or not text:
        raise TokenizerError(f"a bpe tokenizer needs its tokenizer.json as a string, got {excerpt(text)}")
    return BPETokenizer.from_json(text, "the checkpoint's bpe tokenizer")


def tokenizer_files(folder: Path) -> str | None:
    """Which tokenizer files ``folder`` holds: 'tokenizer.json', 'vocab.json + merges.txt', or None."""
    if (folder / TOKENIZER_JSON).is_file():
        return TOKENIZER_JSON
    if (folder / VOCAB_JSON).is_file() and (folder / MERGES_TXT).is_file():
        return f"{VOCAB_JSON} + {MERGES_TXT}"
    return None


def load_bpe(path) -> BPETokenizer:
    """A BPE tokenizer from a tokenizer.json file, or a folder holding tokenizer.json (preferred)
    or vocab.json + merges.txt; TokenizerError naming what is missing or unreadable."""
    path = Path(path)
    if path.is_dir():
        found = tokenizer_files(path)
        if found is None:
            raise TokenizerError(f"{path} holds no tokenizer: it needs {TOKENIZER_JSON}, or {VOCAB_JSON} and "
                                 f"{MERGES_TXT} (save one with tokenizer.save_pretrained(folder))")
        if found != TOKENIZER_JSON:
            return _from_vocab_and_merges(path / VOCAB_JSON, path / MERGES_TXT)
        path = path / TOKENIZER_JSON
    if not path.is_file():
        raise TokenizerError(f"tokenizer file not found: {path}")
    return BPETokenizer.from_json(_read(path), str(path))


def _from_vocab_and_merges(vocab: Path, merges: Path) -> BPETokenizer:
    """GPT-2's byte-level BPE from its two files (what GPT2Tokenizer reads)."""
    lib = tokenizers_library()
    try:
        json.loads(_read(vocab))
        model = lib.models.BPE.from_file(str(vocab), str(merges))
    except Exception as exc:
        raise TokenizerError(f"{vocab} and {merges} are not a BPE vocabulary and merge list the tokenizers "
                             f"library reads ({excerpt(str(exc), 120, quoted=False)})") from None
    tok = lib.Tokenizer(model)
    tok.pre_tokenizer = lib.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = lib.decoders.ByteLevel()
    return BPETokenizer(tok, str(vocab.parent))


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise TokenizerError(f"{path} is not UTF-8 text, so it is no tokenizer file") from None
    except OSError as exc:
        raise TokenizerError(f"cannot read {path}: {exc.strerror or exc}") from None
