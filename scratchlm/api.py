"""The Python API, for notebooks and scripts: train, prepare, load, generate, evaluate, export.

    import scratchlm
    run = scratchlm.train("data/samples/sample_data.txt", model_dim=64, num_heads=2, epochs=2)
    model = scratchlm.load(run / "final_model.pt")        # or a Hugging Face GPT-2 folder
    print(model.generate("The", max_tokens=50))
    print(model.evaluate("The quick brown fox.").perplexity)

A keyword is the command line's option without its dashes (``--model-dim`` is ``model_dim``)
and means the same, with the same default (the usage string in ``cli/main.py``). Each call
writes its keywords as that command line and reads it back with the CLI's own parser and
converters, so a bad value raises the typed error whose message the CLI prints as one line
(``scratchlm.errors``: ``OptionError``, ``DataError``, ``CheckpointError``, ``TokenizerError``,
all ``UserError``), and nothing here prints (``train`` shows its progress unless ``quiet``)
or exits. ``docs/python-api.md`` is the user's page; its examples run as tests.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator
from pathlib import Path

from scratchlm.errors import OptionError

# The train options a call cannot take: what only a terminal needs (``quiet`` is train's own argument).
NOT_KEYWORDS = {"--help", "--version", "--debug", "--quiet"}
GENERATE_OPTIONS = {"--max-tokens", "--temperature", "--top-k", "--top-p", "--seed", "--stop", "--repetition-penalty",
                    "--beam-width", "--length-penalty", "--skip-unknown", "--replace-unknown"}
EVALUATE_OPTIONS = {"--stride", "--batch-size", "--skip-unknown", "--replace-unknown"}
PREPARE_OPTIONS = {"--output", "--tokenizer", "--val-split", "--validation-data"}


class UnknownSetting(OptionError, TypeError):
    """A keyword that is no option of the call (a TypeError too, as Python's own unknown keywords are)."""


def train(data=None, *, quiet: bool = False, **settings) -> Path:
    """Train a model on ``data`` (a path, a pattern or a list of them, as ``scratchlm train DATA...``);
    returns the run's folder (``output_dir``), which holds ``final_model.pt`` and ``config.yaml``.
    Ctrl-C stops at the next step, saves ``interrupted.pt`` and raises ``TrainingInterrupted``
    (its ``checkpoint`` resumes the run: ``resume_from=``); a NaN loss raises ``TrainingDiverged``."""
    from scratchlm.cli.train import compile_note, settings_from_args
    from scratchlm.training.distributed import launched_by_mpi
    from scratchlm.training.loop import train as run_training
    from scratchlm.training.progress import Reporter, make_reporter

    args, argv = command_line("train", paths(data), settings, "scratchlm.train", train_options())
    run_settings, checkpoint, init = settings_from_args(args, argv)
    reporter = Reporter() if quiet else make_reporter(plain=launched_by_mpi(), first_step_note=compile_note(run_settings))
    run_training(run_settings, reporter, checkpoint, init=init)
    return Path(run_settings.output_dir)


def prepare(data, output, *, quiet: bool = False, **settings) -> Path:
    """Tokenize ``data`` once into the dataset folder ``output`` (``scratchlm prepare``) and return it;
    ``train(output)`` then maps it from disk. Keywords: ``tokenizer``, ``val_split``, ``validation_data``."""
    from scratchlm.cli.prepare import prepare_dataset
    from scratchlm.training.progress import Reporter, make_reporter

    args, argv = command_line("prepare", paths(data), dict(settings, output=output), "scratchlm.prepare",
                              PREPARE_OPTIONS)
    folder, _, _ = prepare_dataset(args, argv, Reporter() if quiet else make_reporter())
    return folder


def load(path, device: str = "auto") -> Model:
    """The model in a checkpoint file, or in a Hugging Face GPT-2 folder (config.json, model.safetensors
    and its tokenizer's files); ``device``: auto, cpu or cuda. CheckpointError says what is wrong."""
    from scratchlm import backend
    from scratchlm.checkpoint import load_checkpoint

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"scratchlm.load takes a path, not {type(path).__name__}")
    device = backend.resolve_device(device)            # checked before the file is read
    return Model(Path(path), load_checkpoint(path), device)


class Model:
    """A loaded model: ``generate``, ``stream``, ``evaluate``, ``export``. Its ``network`` is the
    ``scratchlm.model.GPT`` (``network(ids)`` gives logits), ``tokenizer`` its tokenizer."""

    def __init__(self, path: Path, checkpoint, device: str):
        self.path, self.checkpoint, self.device = path, checkpoint, device
        self.network = checkpoint.build_model(device)
        self.tokenizer = checkpoint.tokenizer
        self.config = checkpoint.config
        self._decoder = None

    def __repr__(self) -> str:
        from scratchlm.cli.generate import model_summary

        return f"<scratchlm.Model {self.path}: {model_summary(self.network, self.tokenizer, self.device)[7:]}>"

    def generate(self, prompt: str = "", **sampling) -> str:
        """The prompt and its continuation, as ``scratchlm generate --prompt`` prints them. Keywords:
        max_tokens, temperature, top_k, top_p, seed, stop, repetition_penalty, beam_width,
        length_penalty, skip_unknown, replace_unknown; the same seed gives the same text."""
        prompt, pieces = self._continuation(prompt, sampling, "generate")
        return prompt + "".join(pieces)

    def stream(self, prompt: str = "", **sampling) -> Iterator[str]:
        """The continuation of ``prompt`` (not the prompt), piece by piece as it is produced; the
        keywords of ``generate``. Every setting is checked before the first piece."""
        return self._continuation(prompt, sampling, "stream")[1]

    def evaluate(self, text, **scoring):
        """Score every character of ``text`` (a string, or a ``pathlib.Path`` of a file or folder, as
        ``scratchlm evaluate`` reads DATA): an ``Evaluation`` with loss, perplexity, bits_per_char,
        accuracy, characters_scored. Keywords: stride, batch_size, skip_unknown, replace_unknown."""
        from scratchlm.cli.options import int_option
        from scratchlm.cli.unseen import UnseenPolicy, fit_to_vocabulary
        from scratchlm.inference.scoring import evaluate_text

        args, _ = command_line("evaluate", [str(self.path)], scoring, "Model.evaluate", EVALUATE_OPTIONS)
        stride = None if args["--stride"] is None else int_option(args, "--stride", minimum=1)
        batch_size = int_option(args, "--batch-size", minimum=1)
        policy = UnseenPolicy.from_args(args)
        what = "the text"
        if isinstance(text, os.PathLike):
            from scratchlm.data.corpus import read_joined_text
            from scratchlm.data.sources import describe_sources, resolve_sources

            text, files = read_joined_text(resolve_sources([str(text)]))
            what = describe_sources(files)
        elif not isinstance(text, str):
            raise TypeError(f"Model.evaluate takes a str or a pathlib.Path, not {type(text).__name__}")
        text, _ = fit_to_vocabulary(self.tokenizer, text, policy, what)
        return evaluate_text(self.network, self.tokenizer, text, stride, batch_size)

    def export(self, output_dir) -> Path:
        """Write the model as a Hugging Face GPT-2 folder (``scratchlm export``) and return it."""
        from scratchlm.huggingface.export import export_folder

        return export_folder(self.checkpoint, self.path, output_dir)

    def _continuation(self, prompt: str, sampling: dict, call: str):
        """(the prompt as the model reads it, an iterator of the continuation's pieces), every setting checked."""
        import numpy as np

        from scratchlm.cli.argv import given_options
        from scratchlm.cli.generate import sampling_settings
        from scratchlm.cli.main import __doc__ as usage
        from scratchlm.cli.unseen import UnseenPolicy, fit_to_vocabulary
        from scratchlm.inference.decoder import Decoder
        from scratchlm.inference.sampling import generate_text, prompt_ids

        if not isinstance(prompt, str):
            raise TypeError(f"Model.{call} takes the prompt as a str, not {type(prompt).__name__}")
        args, argv = command_line("generate", [str(self.path)], sampling, f"Model.{call}", GENERATE_OPTIONS)
        settings = sampling_settings(args, given_options(argv, usage))
        prompt, _ = fit_to_vocabulary(self.tokenizer, prompt, UnseenPolicy.from_args(args), "the prompt")
        prompt_ids(self.tokenizer, prompt)
        if self._decoder is None:
            self._decoder = Decoder(self.network)
        rng = np.random.default_rng(settings.seed)
        return prompt, generate_text(self._decoder, self.tokenizer, prompt, settings, rng)


def paths(data) -> list[str]:
    """DATA as command-line arguments: a path or pattern, or a list of them (none: [])."""
    if data is None:
        return []
    items = list(data) if isinstance(data, (list, tuple)) else [data]
    for item in items:
        if not isinstance(item, (str, os.PathLike)):
            raise TypeError(f"data is a path or a list of paths, not {type(item).__name__}")
    # A leading dash would read as an option.
    return [f"./{item}" if str(item).startswith("-") else str(item) for item in map(os.fspath, items)]


def train_options() -> set[str]:
    """Every option of ``scratchlm train`` but NOT_KEYWORDS."""
    from scratchlm.cli.argv import option_table
    from scratchlm.cli.main import __doc__ as usage

    return {name for name, spec in option_table(usage).items() if "train" in spec.commands} - NOT_KEYWORDS


def command_line(command: str, arguments: list[str], keywords: dict, call: str, allowed: set[str]) -> tuple[dict, list[str]]:
    """(docopt's arguments, the argv) of ``scratchlm COMMAND ARGUMENTS... --key=value...``, read by the
    CLI's own checks; ``allowed``: the options the call takes (a keyword for any other is UnknownSetting)."""
    from docopt import DocoptExit, docopt

    from scratchlm.cli.argv import check_command_line, option_table
    from scratchlm.cli.main import ARGUMENTS, explain_usage_error
    from scratchlm.cli.main import __doc__ as usage

    table = option_table(usage)
    argv = [command, *arguments]
    for key, value in keywords.items():
        option = "--" + key.replace("_", "-")
        if option not in allowed or "-" in key:
            names = sorted(name[2:].replace("-", "_") for name in allowed)
            close = difflib.get_close_matches(key[:100], names, n=1)
            hint = f"did you mean {close[0]}?" if close else f"it takes {', '.join(names)}"
            raise UnknownSetting(f"{call}() got an unknown keyword {key!r} ({hint})")
        if value is None:
            continue
        if not table[option].takes_value:
            if not isinstance(value, bool):
                raise OptionError(f"{key} is True or False, got {value!r}")
            argv += [option] if value else []
        else:
            argv.append(f"{option}={os.fspath(value) if isinstance(value, os.PathLike) else value}")
    check_command_line(argv, table, ARGUMENTS)
    try:
        return docopt(usage, argv=argv), argv
    except DocoptExit as exc:            # a SystemExit: never let it end the caller's program
        raise OptionError(explain_usage_error(argv, str(exc))) from None
