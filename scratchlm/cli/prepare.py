"""The ``prepare`` command: DATA tokenized once into a dataset folder that ``train DIR`` maps from disk.

The folder (``token_cache.py``'s format) records the tokenizer and the validation split
(``--val-split``, or a held-out ``--validation-data`` file tokenized beside it), so a
training run on it needs neither. It is written under a temporary name and appears whole
or not at all; an existing dataset folder at ``--output`` is replaced, any other
non-empty folder is refused.
"""

from __future__ import annotations

from pathlib import Path


def run_prepare_command(args: dict, argv: list) -> int:
    from scratchlm.training.progress import make_reporter

    folder, paths, dataset = prepare_dataset(args, argv, make_reporter(bool(args["--quiet"])))
    if not args["--quiet"]:
        d, kind, validation = dataset.description, dataset.description["tokenizer"]["kind"], args["--validation-data"]
        split = (f"validation: {validation} ({d['val']['count']:,} tokens)" if validation else
                 f"validation: the last {d['split']['val_split']:g} of the tokens")
        files = "1 file" if len(paths) == 1 else f"{len(paths)} files"
        print(f"Wrote {folder}: {files}, {d['characters']:,} characters, {d['tokens']['count']:,} "
              f"{kind} tokens ({d['tokens']['dtype']}), {split}\nTrain on it with: scratchlm train {folder}")
    return 0


def prepare_dataset(args: dict, argv: list, reporter):
    """(the folder, the source files, the ``Dataset``) that ``args`` ask for, written with ``reporter``'s
    progress bar; OptionError or DataError (nothing left behind) if they cannot be."""
    from scratchlm.cli.train import OPTIONS, given_options
    from scratchlm.data.corpus import checked_sources
    from scratchlm.data.token_cache import build_dataset, check_prepared_output
    from scratchlm.data.tokenizer import KINDS
    from scratchlm.errors import DataError, OptionError
    from scratchlm.limits import excerpt

    if not args["--output"]:
        raise OptionError("prepare needs --output DIR, the folder to write the dataset into "
                          "(scratchlm prepare DATA... --output DIR)")
    kind = str(args["--tokenizer"]).lower()
    if kind not in KINDS:
        raise OptionError(f"--tokenizer for prepare is char or byte, got {excerpt(args['--tokenizer'])} "
                          "(a BPE model's text is tokenized when it trains)")
    if args["--validation-data"] and "--val-split" in given_options(argv):
        raise OptionError("--val-split holds out the tail of DATA, --validation-data validates on a file of its own: "
                          "give one of them")
    val_split = OPTIONS["--val-split"][1](args["--val-split"], "--val-split")
    folder = Path(args["--output"])
    check_prepared_output(folder)
    paths = checked_sources(args["DATA"])
    validation = args["--validation-data"]
    try:
        dataset = build_dataset(folder, paths, kind, progress=reporter.tokenizing,
                                val_split=None if validation else val_split, validation_path=validation)
    except OSError as exc:                       # a full or read-only disk: nothing was left behind
        raise DataError(f"cannot write the dataset to {folder} ({exc.strerror or exc}): free some space, "
                        "or give --output a folder on another disk") from None
    return folder, paths, dataset
