"""The ``evaluate`` command: docopt arguments -> checked settings -> a "Model Evaluation" panel.

Options and files are checked before any scoring starts; ``--output FILE.json``
gets the same figures as the panel, written atomically.
"""

from __future__ import annotations

import json
import sys

from scratchlm import backend
from scratchlm.cli.options import int_option, output_file_option, write_text_atomically
from scratchlm.cli.unseen import UnseenPolicy, fit_to_vocabulary
from scratchlm.errors import OptionError


def data_argument(args: dict) -> list[str]:
    """The text to score: DATA... or --data FILE (one of them)."""
    if args.get("--data") is not None and args.get("DATA"):
        raise OptionError("give the text to score once: as DATA or as --data FILE, not both")
    if args.get("--data") is not None:
        return [args["--data"]]
    if not args.get("DATA"):
        raise OptionError("evaluate needs DATA, the text to score: scratchlm evaluate CKPT DATA... "
                          "or scratchlm evaluate CKPT --data FILE")
    return list(args["DATA"])


def evaluation_panel(result, unseen: str | None = None):
    """A rich Panel with the figures of an ``Evaluation`` (and what became of unseen characters)."""
    from rich.panel import Panel
    from rich.table import Table

    rows = [
        ("Test Loss:", f"{result.loss:.4f}"),
        ("Perplexity:", f"{result.perplexity:.2f}"),
        ("Bits/Char:", f"{result.bits_per_char:.3f}"),
        ("Accuracy:", f"{100 * result.accuracy:.1f}%"),
        ("Characters scored:", f"{result.characters_scored:,}"),
    ]
    if unseen:
        rows.append(("Never seen in training:", unseen))
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(justify="right")
    for label, value in rows:
        table.add_row(label, value)
    return Panel(table, title="Model Evaluation", expand=False)


def run_evaluate_command(args: dict) -> int:
    from rich.console import Console

    from scratchlm.checkpoint import load_checkpoint
    from scratchlm.data.corpus import read_joined_text
    from scratchlm.data.sources import describe_sources, resolve_sources
    from scratchlm.inference.scoring import evaluate_text

    stride = None if args.get("--stride") is None else int_option(args, "--stride", minimum=1)
    batch_size = int_option(args, "--batch-size", minimum=1)
    args = dict(args, DATA=data_argument(args))
    paths = resolve_sources(args["DATA"])
    output = output_file_option(dict(args, DATA=[str(p) for p in paths]), "--output", inputs=("CKPT", "DATA"))
    unseen_policy = UnseenPolicy.from_args(args)
    device = backend.resolve_device(args["--device"])
    text, paths = read_joined_text(paths)
    checkpoint = load_checkpoint(args["CKPT"])
    text, unseen = fit_to_vocabulary(checkpoint.tokenizer, text, unseen_policy, describe_sources(paths))
    model = checkpoint.build_model(device)

    err = Console(stderr=True)
    if args.get("--quiet") or not err.is_terminal:
        result = evaluate_text(model, checkpoint.tokenizer, text, stride, batch_size)
    else:
        from rich.progress import Progress

        with Progress(console=err, transient=True) as bar:
            task = bar.add_task("Scoring", total=None)
            result = evaluate_text(model, checkpoint.tokenizer, text, stride, batch_size,
                                   progress=lambda done, total: bar.update(task, completed=done, total=total))
    if output is not None:
        figures = dict(result.to_dict(), checkpoint=str(args["CKPT"]),
                       data=[str(p) for p in paths] if len(paths) > 1 else str(paths[0]),
                       unseen_characters=unseen, unseen_characters_were="skipped" if unseen_policy.skip else
                       "replaced" if unseen else None)
        write_text_atomically(output, json.dumps(figures, indent=2) + "\n")
    Console().print(evaluation_panel(result, unseen_policy.describe(unseen) if unseen else None))
    sys.stdout.flush()
    return 0
