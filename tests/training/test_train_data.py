"""Micro-batch bounds, and the small helpers behind a run's report files (batches: tests/data/test_batches.py)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from scratchlm.data.text import micro_batch_bounds
from scratchlm.training.outputs import format_duration, loss_curve_svg, sparkline


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
