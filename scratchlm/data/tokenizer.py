"""Tokenizers: characters (the default), raw UTF-8 bytes, or BPE from files (``data/bpe.py``).

A character tokenizer's vocabulary is the sorted set of characters in the training
text, so it can only encode characters it has seen; a byte tokenizer has all 256
byte values and encodes anything (one character may become several tokens). A BPE
tokenizer (GPT-2's, or any ``tokenizer.json``) is read from files, never built here.
"""

from __future__ import annotations

import numpy as np

from scratchlm.errors import TokenizerError
from scratchlm.limits import excerpt

KINDS = ("char", "byte")


class CharTokenizer:
    kind = "char"
    end_of_text_id = None          # a character vocabulary has no start-of-text token

    def __init__(self, chars):
        self.chars = list(chars)
        self.index = {c: i for i, c in enumerate(self.chars)}
        codes = np.array([ord(c) for c in self.chars], dtype=np.int64)             # (V,)
        # code point -> id, as long as the largest code point in the vocabulary (128 for ASCII text)
        self._ids_by_code = np.full(int(codes.max(initial=-1)) + 1, -1, dtype=np.int32)
        self._ids_by_code[codes] = np.arange(len(codes), dtype=np.int32)

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def unknown(self, text: str) -> list[str]:
        """The distinct characters of ``text`` outside the vocabulary, sorted."""
        return sorted(set(text) - self.index.keys())

    def encode(self, text: str) -> np.ndarray:
        points = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")             # (N,) code points
        table = self._ids_by_code
        if len(points) and int(points.max()) >= len(table):
            raise unknown_characters_error(self.unknown(text))
        ids = table[points]                                                       # (N,) ids, no loop per character
        if len(ids) and int(ids.min()) < 0:                                       # a code point the vocabulary lacks
            raise unknown_characters_error(self.unknown(text))
        return ids

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "chars": "".join(self.chars)}


def unknown_characters_error(missing: list[str]) -> TokenizerError:
    """The error for text with characters outside a char vocabulary (``missing``, sorted)."""
    shown = ", ".join(repr(c) for c in missing[:10]) + (" ..." if len(missing) > 10 else "")
    return TokenizerError(f"{len(missing)} character(s) the model never saw in training: {shown} "
                          "(remove them, or train with --tokenizer byte)")


class ByteTokenizer:
    kind = "byte"
    vocab_size = 256
    end_of_text_id = None

    def unknown(self, text: str) -> list[str]:
        return []

    def encode(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int32)

    def decode(self, ids) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")

    def to_dict(self) -> dict:
        return {"kind": self.kind}


def build_tokenizer(kind: str, text: str):
    """char or byte from ``text``; any other ``kind`` is the path of a BPE tokenizer's files."""
    if kind == "char":
        return CharTokenizer.from_text(text)
    if kind == "byte":
        return ByteTokenizer()
    if kind == "bpe":
        raise TokenizerError("--tokenizer bpe needs the tokenizer's files: give the path of a tokenizer.json, "
                             "or of a folder with tokenizer.json or vocab.json + merges.txt")
    from scratchlm.data.bpe import load_bpe

    return load_bpe(kind)


def tokenizer_from_dict(values: dict):
    """The tokenizer a checkpoint records; TokenizerError if the record is not one we wrote."""
    kind = values.get("kind")
    if kind == "byte":
        return ByteTokenizer()
    if kind == "char":
        chars = values.get("chars")
        if not isinstance(chars, str) or not chars:
            raise TokenizerError(f"a char tokenizer needs its characters as a string, got {excerpt(chars)}")
        if len(set(chars)) != len(chars):
            raise TokenizerError("the char tokenizer lists a character twice, so ids would be ambiguous")
        return CharTokenizer(chars)
    if kind == "bpe":
        from scratchlm.data.bpe import bpe_from_dict

        return bpe_from_dict(values)
    raise TokenizerError(f"checkpoint names an unknown tokenizer: {excerpt(values)}")
