"""The tokenizing progress line: plain lines for a big DATA off a terminal, nothing for a small one."""

from __future__ import annotations

import io

from rich.console import Console

from scratchlm.training.progress import TOKENIZE_SHOWN_FROM, ConsoleReporter


def reporter_and_output():
    out = io.StringIO()
    return ConsoleReporter(Console(file=out, force_terminal=False, width=120)), out


def test_a_big_input_gets_plain_lines_with_rate_and_eta():
    reporter, out = reporter_and_output()
    total = 4 * TOKENIZE_SHOWN_FROM
    for done in (0, total // 4, total // 2, total):    # read_corpus reports 0 first: the clock starts
        reporter.tokenizing(done, total)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Tokenizing: {total / 1e6:,.0f} of {total / 1e6:,.0f} MB")
    assert "MB/s" in lines[0] and "ETA" in lines[0]


def test_a_small_input_prints_nothing():
    reporter, out = reporter_and_output()
    reporter.tokenizing(1000, 1000)
    assert out.getvalue() == ""
