"""The console reporter: the tokenizing progress line (plain lines for a big DATA off a terminal, nothing
for a small one), and panels that show their values as written."""

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


def test_the_panels_show_their_values_as_written_not_as_markup():
    """A value with brackets (a pip extra, a folder named [test]) must not be read as rich markup."""
    reporter, out = reporter_and_output()
    facts = {"panel": {"Precision": "fp32: MKL is not installed (pip install 'scratchlm[bf16]')",
                       "Output": "runs/[test]/model"}}
    reporter.start(facts, "runs/[old]/interrupted.pt", 3)
    reporter.finish({"best_epoch": 1, "best_step": 2, "epochs_done": 1, "epochs": 1, "steps": 2, "reason": "done",
                     "val_loss": 2.0, "perplexity": 7.39, "bits_per_char": 2.885, "total_time_s": 1.0,
                     "final_model": "runs/[test]/model/final_model.pt"}, [2.0])
    text = out.getvalue()
    for shown in ("scratchlm[bf16]", "runs/[test]/model", "runs/[old]/interrupted.pt", "[test]/model/final_model.pt"):
        assert shown in text, shown
