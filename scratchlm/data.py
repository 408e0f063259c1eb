"""Reading text and cutting it into training batches.

``read_text`` turns every problem with a text file into a ``DataError`` that says
what is wrong. The split: the head of the token stream trains, the tail
(``val_split`` of it) validates. An epoch is one pass over the training split as
non-overlapping windows of ``seq_len + 1`` tokens, starting at a fresh random
offset each epoch, in shuffled order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import DataError


def read_text(path) -> str:
    """The UTF-8 text of ``path``, or a DataError naming the problem."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file not found: {path}")
    if path.is_dir():
        raise DataError(f"{path} is a directory: give a text file")
    try:
        raw = path.read_bytes()
    except PermissionError as exc:
        raise DataError(f"cannot read {path}: permission denied") from exc
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} is not UTF-8 text (byte {exc.start} is 0x{raw[exc.start]:02x}): "
            "convert it to UTF-8 first, e.g. iconv -f latin1 -t utf-8"
        ) from exc
    if not text.strip():
        raise DataError(f"{path} is empty (or only whitespace): a model needs text to learn from")
    return text


def split_tokens(ids: np.ndarray, val_split: float):
    """(train_ids, val_ids): the tail fraction ``val_split`` of the stream validates."""
    n_val = int(round(len(ids) * val_split))
    return ids[: len(ids) - n_val], ids[len(ids) - n_val :]
