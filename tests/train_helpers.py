"""Helpers for the train tests: tiny runs, settings from an argv, the installed console script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "samples" / "sample_data.txt"
CONSOLE = Path(sys.executable).parent / "fundamentallm"
# A model small enough that a step takes milliseconds.
TINY = ["--model-dim", "16", "--num-heads", "2", "--num-layers", "1", "--max-seq-len", "16", "--batch-size", "8"]


def small_text(tmp_path: Path, chars: int = 3000, name: str = "small.txt") -> Path:
    """The first ``chars`` characters of the sample data, as a file in ``tmp_path``."""
    path = tmp_path / name
    path.write_text(SAMPLE.read_text(encoding="utf-8")[:chars], encoding="utf-8")
    return path


def parse(argv):
    """(TrainSettings, checkpoint, init) exactly as the command line would build them."""
    from docopt import docopt

    from scratchlm.cli import main as cli
    from scratchlm.cli.argv import drop_line_ending_spaces, option_table
    from scratchlm.cli.train import settings_from_args

    argv = drop_line_ending_spaces(list(map(str, argv)), option_table(cli.__doc__))
    return settings_from_args(docopt(cli.__doc__, argv=argv), argv)


def train_in_process(argv, reporter=None):
    """Run ``scratchlm train`` as a library call; returns the summary."""
    from scratchlm.training.loop import train

    settings, checkpoint, init = parse(argv)
    return train(settings, reporter, checkpoint, init=init)


def run_console(*args, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """Run the installed ``fundamentallm`` console script (stdout is a pipe, not a terminal)."""
    return subprocess.run([str(CONSOLE), *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, **kwargs)


def checkpoint_arrays(path) -> dict:
    """Every array a checkpoint holds: the weights and AdamW's moments."""
    from scratchlm.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    arrays = dict(ckpt.weights)
    if ckpt.optimizer_state is not None:
        arrays["optimizer.m"] = ckpt.optimizer_state["m"]
        arrays["optimizer.v"] = ckpt.optimizer_state["v"]
    return arrays


def assert_same_arrays(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def refused(argv, capsys, *fragments, max_chars: int = 600) -> str:
    """Run a command in process: it must exit 2 with exactly one short 'error:' line naming every fragment."""
    from scratchlm.cli import main as cli

    code = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err[:2000]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err[:2000]
    assert len(lines[0]) <= max_chars, lines[0][:2000]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]
