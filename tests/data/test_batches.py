"""Batches by window index: the same windows as the old materialised epoch, only the step's rows
gathered, any integer dtype, int64 offsets past 2^31, and a fixed validation sample."""

from __future__ import annotations

import numpy as np
import pytest

from scratchlm.data.batches import (
    ID_DTYPE,
    epoch_order,
    eval_starts,
    gather_windows,
    predicted_tokens,
    scored_tokens,
    to_device_batch,
    windows_per_epoch,
)


def old_epoch_batches(ids, window, rng):
    """The epoch before batches were read by index (a reference copy): two (N, W-1) copies."""
    n_windows = windows_per_epoch(len(ids), window)
    slack = len(ids) - n_windows * window
    offset = int(rng.integers(0, slack + 1))
    order = rng.permutation(n_windows)
    shuffled = ids[offset : offset + n_windows * window].reshape(n_windows, window)[order]
    return np.ascontiguousarray(shuffled[:, :-1]), np.ascontiguousarray(shuffled[:, 1:])


def batches_by_index(ids, window, rng, batch):
    order = epoch_order(len(ids), window, rng)
    for first in range(0, len(order), batch):
        yield to_device_batch(gather_windows(ids, order.starts(first, min(first + batch, len(order))), window))


@pytest.mark.parametrize("n, window, expected", [(16, 17, 0), (17, 17, 1), (33, 17, 1), (34, 17, 1), (51, 17, 2),
                                                 (1000, 10, 99)])
def test_windows_per_epoch(n, window, expected):
    assert windows_per_epoch(n, window) == expected


@pytest.mark.parametrize("n, window, batch", [(1000, 10, 8), (5000, 17, 32), (17, 17, 4), (40, 17, 3)])
def test_the_same_batches_as_the_old_epoch_and_the_same_rng_draws(n, window, batch):
    ids = np.random.default_rng(n).integers(0, 65, n).astype(np.int32)                  # (n,)
    for seed in range(5):
        old_rng, new_rng = np.random.default_rng(seed), np.random.default_rng(seed)
        inputs, targets = old_epoch_batches(ids, window, old_rng)                         # 2 x (N, W-1)
        got = list(batches_by_index(ids, window, new_rng, batch))
        np.testing.assert_array_equal(np.concatenate([i for i, _ in got]), inputs)
        np.testing.assert_array_equal(np.concatenate([t for _, t in got]), targets)
        assert all(i.shape[0] <= batch and i.flags.c_contiguous for i, _ in got)          # each step's rows only
        assert old_rng.bit_generator.state == new_rng.bit_generator.state                 # the next epoch matches too


def test_an_epoch_is_shuffled_non_overlapping_windows_at_a_random_offset():
    window, offsets = 10, set()
    for seed in range(30):
        order = epoch_order(1000, window, np.random.default_rng(seed))
        starts = order.starts(0, len(order))                                              # (99,)
        assert len(order) == 99 and starts.dtype == np.int64
        assert np.all(np.diff(np.sort(starts)) == window) and not np.array_equal(starts, np.sort(starts))
        offsets.add(int(starts.min()))
    assert len(offsets) > 3 and max(offsets) <= 10                                        # a fresh offset each epoch


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.int32, np.int64])
def test_gather_casts_any_integer_ids_to_the_models(dtype):
    ids = (np.arange(300) % 250).astype(dtype)                                            # (300,)
    rows = gather_windows(ids, np.array([0, 17, 250]), 9)                                 # (3, 9)
    assert rows.dtype == ID_DTYPE and rows.shape == (3, 9)
    np.testing.assert_array_equal(rows[2], np.arange(250, 259) % 250)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_offsets_past_2_to_the_31_on_a_memory_map(tmp_path, dtype):
    """A sparse file: 2^31 + 4096 tokens claim no disk, and only the last page is written."""
    n = 2**31 + 4096
    path = tmp_path / "tokens.bin"
    with open(path, "wb") as f:
        f.truncate(n * np.dtype(dtype).itemsize)
    ids = np.memmap(path, dtype=dtype, mode="r+", shape=(n,))
    ids[-1000:] = np.arange(1000) % 200                                                   # (1000,) past 2^31
    window = 257
    order = epoch_order(n, window, np.random.default_rng(0))
    last = int(np.argmax(order.order))                                                    # the window furthest in
    start = int(order.starts(last, last + 1)[0])
    assert start > 2**31 and len(order) == n // window - 1
    rows = gather_windows(ids, [n - 1000], window)                                        # (1, W) from past 2^31
    np.testing.assert_array_equal(rows[0], np.arange(window) % 200)
    assert gather_windows(ids, [start], window).shape == (1, window)


def test_validation_scores_a_small_split_whole():
    starts, whole = eval_starts(25, 10, eval_tokens=1000)
    assert whole and starts.tolist() == [0, 10] and predicted_tokens(25, 10) == 9 + 9 + 4
    starts, whole = eval_starts(100, 129, eval_tokens=10)                                  # shorter than a window
    assert whole and len(starts) == 0                                                      # only the tail, whole
    assert eval_starts(10_000, 129, 0)[1] and scored_tokens(10_000, 129, 262144) == predicted_tokens(10_000, 129)


def test_a_large_split_gets_a_fixed_evenly_spread_sample():
    n, window = 1_000_000, 101
    starts, whole = eval_starts(n, window, eval_tokens=5000)                             # (50,)
    assert not whole and len(starts) == 50 and scored_tokens(n, window, 5000) == 5000
    assert np.all(np.diff(starts) > 0) and np.all(starts % window == 0) and starts[-1] > 0.9 * n
    np.testing.assert_array_equal(starts, eval_starts(n, window, eval_tokens=5000)[0])   # the same every time
