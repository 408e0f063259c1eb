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

from scratchlm.data.corpus import check_readable, decode_checked
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


def windows_per_epoch(n_tokens: int, window: int) -> int:
    """How many non-overlapping windows of ``window`` tokens one epoch uses.

    With room for two or more, one window is given up so that the random start
    offset can take every value in [0, window): over epochs, every position of
    the text lands at every place in a window. A split that holds exactly one
    window (or a little more) uses that one.
    """
    if n_tokens < window:
        return 0
    whole = n_tokens // window
    return whole - 1 if whole >= 2 else 1


def epoch_batches(ids, window: int, rng: np.random.Generator, xp=np):
    """This epoch's training windows, shuffled: (inputs (N, window-1), targets (N, window-1)).

    ``ids`` may live on the device (``xp``); the random offset and the order are drawn on
    the host from ``rng`` (so the same seed gives the same order on every device) and
    the windows are cut with one gather, so each step's batch is a contiguous row slice.
    """
    n_windows = windows_per_epoch(len(ids), window)
    slack = len(ids) - n_windows * window
    offset = int(rng.integers(0, slack + 1))
    order = rng.permutation(n_windows)                                        # (N,)
    grid = ids[offset : offset + n_windows * window].reshape(n_windows, window)  # (N, W)
    shuffled = grid[xp.asarray(order)]                                        # (N, W)
    return xp.ascontiguousarray(shuffled[:, :-1]), xp.ascontiguousarray(shuffled[:, 1:])


def eval_windows(ids, window: int):
    """Non-overlapping windows covering ``ids``: full ones (N, window), then a shorter tail or None.

    Every token after the first of a window is predicted once, so the loss over
    all windows scores (almost) every token of the validation split.
    """
    n_full = len(ids) // window
    full = ids[: n_full * window].reshape(n_full, window)                     # (N, W)
    rest = ids[n_full * window :]
    tail = rest[None, :] if len(rest) >= 2 else None                          # (1, R)
    return full, tail


def micro_batch_bounds(rows: int, parts: int) -> list[tuple[int, int]]:
    """Split ``rows`` into at most ``parts`` contiguous, nearly equal, non-empty slices."""
    cuts = [round(i * rows / parts) for i in range(parts + 1)]
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]
