"""Training and validation batches read from the token array by window index.

An epoch is a random start offset plus a permutation of window indices (``EpochOrder``);
no shuffled copy of the data is ever made. Each step gathers only its own rows
(B, window) from the token array, which may be a host array or a token file's memory map of any
integer dtype (uint8, uint16, uint32, int32), and casts them to ``ID_DTYPE``, what the
model's embedding takes. Every index is int64, so a token array past 2^31 works.
Validation scores every full window of a small split, and a fixed, evenly spread
sample of them when the split holds more than ``eval_tokens`` (``eval_starts``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scratchlm.data.token_file import release_pages

ID_DTYPE = np.int32          # the ids the tokenizers produce and the embedding kernels read


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


@dataclass(frozen=True)
class EpochOrder:
    """One epoch: window ``order[i]`` starts at token ``offset + order[i] * window``."""

    offset: int
    order: np.ndarray        # (N,) int64 window indices, shuffled
    window: int

    def __len__(self) -> int:
        return len(self.order)

    def starts(self, first: int, stop: int) -> np.ndarray:
        """The first token of the epoch's windows [first, stop), in int64."""
        return self.offset + self.order[first:stop].astype(np.int64) * self.window   # (stop-first,)


def epoch_order(n_tokens: int, window: int, rng: np.random.Generator) -> EpochOrder:
    """Draw this epoch's offset and order from ``rng`` (on the host: the same seed, the same order
    on every device); the same two draws as always, so runs and resumes repeat bit for bit."""
    n_windows = windows_per_epoch(n_tokens, window)
    slack = n_tokens - n_windows * window
    offset = int(rng.integers(0, slack + 1))
    order = rng.permutation(n_windows).astype(np.int64, copy=False)            # (N,)
    return EpochOrder(offset, order, window)


def gather_windows(ids, starts, window: int) -> np.ndarray:
    """Rows ``ids[s : s + window]`` for each start: (len(starts), window) ``ID_DTYPE`` on the host.

    One fancy-indexed read: on a token file's memory map only these rows' pages are touched,
    and they are unmapped again once copied (``release_pages``).
    """
    starts = np.asarray(starts, dtype=np.int64)                                    # (R,)
    index = starts[:, None] + np.arange(window, dtype=np.int64)                    # (R, W) int64
    rows = np.asarray(ids[index]).astype(ID_DTYPE, copy=False)                     # (R, W) fancy index: a copy
    release_pages(ids)
    return rows


def to_device_batch(rows: np.ndarray, xp=np):
    """(inputs, targets) (R, W-1) each, on the device of ``xp``: the rows cross once, then split."""
    rows = xp.asarray(rows)                                                        # (R, W) one copy to the device
    return xp.ascontiguousarray(rows[:, :-1]), xp.ascontiguousarray(rows[:, 1:])


def predicted_tokens(n_tokens: int, window: int) -> int:
    """How many tokens scoring a whole split predicts: all but the first of each window (the full
    ones, then a shorter tail of two or more tokens)."""
    return n_tokens - -(-n_tokens // window)


def scored_tokens(n_tokens: int, window: int, eval_tokens: int) -> int:
    """How many tokens one periodic evaluation predicts: all of a small split, else the sample's."""
    starts, whole = eval_starts(n_tokens, window, eval_tokens)
    return predicted_tokens(n_tokens, window) if whole else len(starts) * (window - 1)


def eval_starts(n_tokens: int, window: int, eval_tokens: int = 0) -> tuple[np.ndarray, bool]:
    """(starts of the validation windows to score (M,) int64, whether the whole split is scored).

    The split is cut into non-overlapping full windows. When they hold more than ``eval_tokens``
    predicted tokens (0: no limit), ``eval_tokens // (window - 1)`` of them, evenly spread, are
    scored: a fixed sample that needs no RNG, so every evaluation and every resume sees the same one.
    """
    n_full = n_tokens // window
    whole = not eval_tokens or n_full == 0 or predicted_tokens(n_tokens, window) <= eval_tokens  # no window: the tail
    if whole:
        picked = np.arange(n_full, dtype=np.int64)                                 # (N,)
    else:
        n_pick = max(1, eval_tokens // (window - 1))
        picked = np.arange(n_pick, dtype=np.int64) * n_full // n_pick               # (M,) evenly spread
    return picked * window, whole
