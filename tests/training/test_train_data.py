"""Batching for training and validation, and the small helpers behind a run's report files."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from scratchlm.data.text import epoch_batches, eval_windows, micro_batch_bounds, windows_per_epoch
from scratchlm.training.outputs import format_duration, loss_curve_svg, sparkline


@pytest.mark.parametrize("n, window, expected", [(16, 17, 0), (17, 17, 1), (33, 17, 1), (34, 17, 1), (51, 17, 2),
                                                 (1000, 10, 99)])
def test_windows_per_epoch(n, window, expected):
    assert windows_per_epoch(n, window) == expected


def test_an_epoch_is_shuffled_non_overlapping_windows_at_a_random_offset():
    ids = np.arange(1000, dtype=np.int32)            # each id is its own position
    window, offsets = 10, set()
    for seed in range(30):
        inputs, targets = epoch_batches(ids, window, np.random.default_rng(seed))
        assert inputs.shape == targets.shape == (99, 9) and inputs.flags.c_contiguous
        np.testing.assert_array_equal(targets[:, :-1], inputs[:, 1:])          # targets = inputs shifted by one
        starts = np.sort(inputs[:, 0])
        assert np.all(np.diff(starts) == window)                                # non-overlapping, no gaps
        np.testing.assert_array_equal(inputs, inputs[:, :1] + np.arange(9))     # each row a contiguous slice
        assert not np.array_equal(inputs[:, 0], starts)                         # shuffled
        offsets.add(int(starts[0]))
    assert len(offsets) > 3 and max(offsets) <= 10                              # a fresh offset each epoch


def test_the_same_rng_state_gives_the_same_epoch():
    ids = np.arange(500, dtype=np.int32)
    a = epoch_batches(ids, 7, np.random.default_rng(3))[0]
    b = epoch_batches(ids, 7, np.random.default_rng(3))[0]
    np.testing.assert_array_equal(a, b)


def test_eval_windows_cover_the_split():
    ids = np.arange(25)
    full, tail = eval_windows(ids, 10)
    assert full.shape == (2, 10) and tail.tolist() == [[20, 21, 22, 23, 24]]
    full, tail = eval_windows(np.arange(21), 10)
    assert tail is None                                # one leftover token predicts nothing
    full, tail = eval_windows(np.arange(5), 10)        # a split shorter than a window: one short window
    assert full.shape == (0, 10) and tail.shape == (1, 5)


@pytest.mark.parametrize("rows, parts", [(8, 1), (8, 3), (5, 5), (3, 8), (32, 4)])
def test_micro_batch_bounds_cover_every_row_once(rows, parts):
    bounds = micro_batch_bounds(rows, parts)
    assert bounds[0][0] == 0 and bounds[-1][1] == rows
    assert all(b > a for a, b in bounds) and all(b == c for (_, b), (c, _) in zip(bounds, bounds[1:]))
    assert len(bounds) == min(rows, parts)


def test_sparkline_and_durations():
    assert sparkline([4.0, 3.0, 2.0, 1.0]) == "█▆▃▁"
    assert sparkline([2.0, 2.0]) == "▁▁" and sparkline([]) == ""
    assert format_duration(5.25) == "5.2s" and format_duration(92) == "1m32s" and format_duration(3725) == "1h02m"


def test_loss_curve_is_valid_svg_with_both_series():
    svg = ET.fromstring(loss_curve_svg([[1, 4.0], [2, 3.5], [3, float("nan")], [4, 3.0]], [(2, 3.6), (4, 3.1)]))
    ns = "{http://www.w3.org/2000/svg}"
    lines = svg.findall(f"{ns}polyline")
    assert len(lines) == 3 and len(svg.findall(f"{ns}circle")) == 2
    assert len(lines[1].get("points").split()) == 3                       # the NaN point is left out
    ET.fromstring(loss_curve_svg([], []))                                  # no points yet: still a valid file
