"""Showing ``--show-probs``: each generated token, its probability and the likeliest alternatives.

On a terminal a rich table coloured by probability (green likely, red unlikely); otherwise
the same columns as plain aligned text, so a pipe or a file gets something readable.
Tokens are shown quoted with JSON escapes, so a space, a newline or a tab can be seen.
"""

from __future__ import annotations

import json
import sys

# (lowest probability, colour): the first that a probability reaches
COLOURS = ((0.5, "green"), (0.2, "yellow"), (0.05, "dark_orange"), (0.0, "red"))
HEADER = ("token", "prob", "likeliest next tokens")


def quoted(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def percent(p: float) -> str:
    return f"{100 * p:.1f}%"


def colour_of(p: float) -> str:
    return next(colour for lowest, colour in COLOURS if p >= lowest)


def plain_table(records) -> str:
    """The records as aligned columns of plain text (one line per token, a header first)."""
    rows = [(quoted(r.text), percent(r.probability),
             "  ".join(f"{quoted(text)} {percent(p)}" for text, p in r.alternatives)) for r in records]
    token_width = max([len(HEADER[0])] + [len(row[0]) for row in rows])
    prob_width = max([len(HEADER[1])] + [len(row[1]) for row in rows])
    return "\n".join(f"{token:<{token_width}}  {prob:>{prob_width}}  {rest}".rstrip()
                     for token, prob, rest in [HEADER, *rows])


def show_probabilities(records, out=None) -> None:
    """Print the records to ``out`` (stdout): coloured on a terminal, plain text otherwise."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    out = out or sys.stdout
    console = Console(file=out, highlight=False)
    if not console.is_terminal:
        out.write(plain_table(records) + "\n")
        out.flush()
        return
    table = Table(*HEADER, box=None, pad_edge=False)
    table.columns[1].justify = "right"
    for r in records:
        alternatives = Text("  ").join(Text(f"{quoted(text)} {percent(p)}", style=colour_of(p))
                                       for text, p in r.alternatives)
        table.add_row(Text(quoted(r.text), style=f"bold {colour_of(r.probability)}"),
                      Text(percent(r.probability), style=colour_of(r.probability)), alternatives)
    console.print(table)
