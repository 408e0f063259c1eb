"""A held-out validation file (``--validation-data``), read and encoded like the training text.

It is read by the same reader as DATA and encoded with the training tokenizer, so a
character tokenizer can only take characters the training text holds: any other is
one error that names them (the byte tokenizer encodes anything).
"""

from __future__ import annotations

import zlib

import numpy as np

from scratchlm.data.text import read_text
from scratchlm.errors import DataError
from scratchlm.limits import excerpt

SHOWN_UNKNOWN = 10


def validation_ids(path, tokenizer) -> tuple[np.ndarray, dict]:
    """(ids (N,), a record of the file for config.yaml and resume checks) or a DataError."""
    try:
        text = read_text(path)
    except DataError as exc:                 # the reader speaks of "data"; say which file it was
        raise DataError(f"--validation-data: {exc}") from None
    unknown = tokenizer.unknown(text)
    if unknown:
        shown = ", ".join(excerpt(c) for c in unknown[:SHOWN_UNKNOWN]) + (" ..." if len(unknown) > SHOWN_UNKNOWN else "")
        raise DataError(f"--validation-data {path} has {len(unknown)} character(s) that the training text never "
                        f"uses: {shown}: remove them, or train with --tokenizer byte (it encodes any text)")
    ids = tokenizer.encode(text)                                                  # (N,)
    if len(ids) < 2:
        raise DataError(f"--validation-data {path} is too short: a model is scored on at least 2 tokens")
    info = {"path": str(path), "characters": len(text), "tokens": int(len(ids)), "crc32": zlib.crc32(text.encode("utf-8"))}
    return ids, info
