"""Reading text and splitting its tokens.

``read_text`` turns every problem with a text file into a ``DataError`` that says
what is wrong. The split: the head of the token stream trains, the tail
(``val_split`` of it) validates, unless ``--validation-data`` names a file of its own.
Cutting the splits into batches is ``batches.py``'s job.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scratchlm.data.corpus import decode_checked
from scratchlm.data.sources import check_readable
from scratchlm.errors import DataError


def read_text(path) -> str:
    """The UTF-8 text of ``path``, or a DataError naming the problem."""
    path = Path(path)
    check_readable(path)
    try:
        raw = path.read_bytes()
    except PermissionError as exc:
        raise DataError(f"cannot read {path}: permission denied") from exc
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    text = decode_checked(path, raw, 0)
    if not text.strip():
        raise DataError(f"{path} is empty (or only whitespace): a model needs text to learn from")
    return text


def split_tokens(ids: np.ndarray, val_split: float):
    """(train_ids, val_ids): the tail fraction ``val_split`` of the stream validates."""
    n_val = int(round(len(ids) * val_split))
    return ids[: len(ids) - n_val], ids[len(ids) - n_val :]


def micro_batch_bounds(rows: int, parts: int) -> list[tuple[int, int]]:
    """Split ``rows`` into at most ``parts`` contiguous, nearly equal, non-empty slices."""
    cuts = [round(i * rows / parts) for i in range(parts + 1)]
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]
