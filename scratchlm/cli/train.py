"""The train command: docopt's options (and an optional --config YAML) -> checked settings -> a run.

Where a setting comes from, highest first: an option given on the command line, the
``--config`` file, the recorded settings of the checkpoint being resumed, the default in
the usage string (``cli/main.py``, the only place defaults are written). docopt fills in the
defaults itself, so "given on the command line" is found by parsing argv a second time
against the usage string with its defaults removed. Every bad value becomes an
``OptionError`` naming the option (or the config key) and what would be valid. DATA comes
the same way: the argument, else the ``data`` of the --config file, else the resumed run's,
so a run's config.yaml alone repeats it.
"""

from __future__ import annotations

import difflib
import math
import shlex
import signal
import sys
from pathlib import Path

from scratchlm.autograd.precision import PRECISIONS
from scratchlm.backend import FLOAT_DTYPES
from scratchlm.checkpoint import load_checkpoint
from scratchlm.cli.config_file import check_scalar, read_yaml_settings
from scratchlm.data.sources import data_specs
from scratchlm.data.tokenizer import KINDS
from scratchlm.errors import OptionError
from scratchlm.limits import excerpt
from scratchlm.model import NORMS, POS_ENCODINGS
from scratchlm.optim import SCHEDULES
from scratchlm.training.job import AUTO, FIXED_ON_RESUME, SETTING_KEYS, TrainSettings, check_resumable

RECORD_ONLY_KEYS = ("run", "resumed_from")  # in config.yaml, but not settings --config can change
BEFORE_RECORDED = {"eval_tokens": 0}        # what a checkpoint from before a setting existed did (scored all)


def whole(minimum: int):
    kind = "a positive whole number" if minimum == 1 else "a whole number, 0 or more"

    def convert(value, label):
        number = None
        if not isinstance(value, bool):
            try:
                number = int(str(value).strip())
            except ValueError:
                try:
                    as_float = float(str(value).strip())
                    number = int(as_float) if as_float.is_integer() else None
                except ValueError:
                    number = None
        if number is None or number < minimum:
            raise OptionError(f"{label} must be {kind}, got {excerpt(value)}")
        return number

    return convert


def whole_or_auto(value, label):
    """A whole number, 0 or more, or "auto": the engine chooses once it knows the run's length."""
    if str(value).strip().lower() == AUTO:
        return AUTO
    try:
        return whole(0)(value, label)
    except OptionError:
        raise OptionError(f"{label} must be auto or a whole number, 0 or more, got {excerpt(value)}") from None


def real(low: float, high: float = math.inf, low_open: bool = False, high_open: bool = True):
    if high == math.inf:
        kind = "a positive number" if low_open else "a number, 0 or more"
    else:
        kind = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def convert(value, label):
        try:
            number = float(str(value).strip()) if not isinstance(value, bool) else math.nan
        except ValueError:
            number = math.nan
        inside = (low < number if low_open else low <= number) and (number < high if high_open else number <= high)
        if not (math.isfinite(number) and inside):
            raise OptionError(f"{label} must be {kind}, got {excerpt(value)}")
        return number

    return convert


def choice(options):
    def convert(value, label):
        text = str(value).strip().lower()
        if text not in options:
            raise OptionError(f"{label} must be one of {', '.join(options)}, got {excerpt(value)}")
        return text

    return convert


def tokenizer_choice(value, label):
    """char, byte (either case), or the path of a BPE tokenizer's files (read when the run starts)."""
    name = str(value).strip() if value is not None else ""
    if name.lower() in (*KINDS, "bpe"):
        return name.lower()
    # A recorded path (a resumed run's) may be gone: that run's tokenizer comes from its checkpoint.
    if not name or (label.startswith("--") and not _exists(name)):
        raise OptionError(f"{label} must be one of {', '.join(KINDS)}, or the path of a BPE tokenizer (a "
                          f"tokenizer.json, or a folder with it or with vocab.json + merges.txt), got {excerpt(value)}")
    return name


def _exists(path: str) -> bool:
    try:
        return Path(path).exists()
    except (OSError, ValueError):          # a name too long for the file system, or one with a NUL
        return False


def text(value, label):
    value = str(value).strip() if value is not None else ""
    if not value:
        raise OptionError(f"{label} must not be empty")
    return value


def optional_text(value, label):
    """A path that may be left out (None, or empty in a config file)."""
    return None if value is None or not str(value).strip() else text(value, label)


OPTIONS = {  # usage-string option -> (TrainSettings field, converter)
    "--output-dir": ("output_dir", text),
    "--model-dim": ("model_dim", whole(1)),
    "--num-heads": ("num_heads", whole(1)),
    "--num-layers": ("num_layers", whole(1)),
    "--max-seq-len": ("max_seq_len", whole(1)),
    "--dropout": ("dropout", real(0.0, 1.0)),
    "--epochs": ("epochs", whole(1)),
    "--max-steps": ("max_steps", whole(0)),
    "--batch-size": ("batch_size", whole(1)),
    "--learning-rate": ("learning_rate", real(0.0, low_open=True)),
    "--weight-decay": ("weight_decay", real(0.0)),
    "--warmup-steps": ("warmup_steps", whole_or_auto),
    "--lr-schedule": ("lr_schedule", choice(SCHEDULES)),
    "--val-split": ("val_split", real(0.0, 1.0, low_open=True)),
    "--validation-data": ("validation_data", optional_text),
    "--cache-dir": ("cache_dir", optional_text),
    "--init-from": ("init_from", optional_text),
    "--eval-tokens": ("eval_tokens", whole(0)),
    "--gradient-clip": ("gradient_clip", real(0.0)),
    "--grad-accum": ("grad_accum", whole(1)),
    "--eval-interval": ("eval_interval", whole(0)),
    "--patience": ("patience", whole(0)),
    "--seed": ("seed", whole(0)),
    "--tokenizer": ("tokenizer", tokenizer_choice),
    "--pos-encoding": ("pos_encoding", choice(POS_ENCODINGS)),
    "--norm": ("norm", choice(NORMS)),
    "--keep-checkpoints": ("keep_checkpoints", whole(0)),
    "--device": ("device", choice(("auto", "cpu", "cuda"))),
    "--dtype": ("dtype", choice(FLOAT_DTYPES)),
    "--precision": ("precision", choice(PRECISIONS)),
}
OPTION_OF = {field: option for option, (field, _) in OPTIONS.items()}
assert set(OPTION_OF) == set(SETTING_KEYS) - {"data"}, "every setting but DATA needs an option in the usage string"


def given_options(argv) -> set[str]:
    """The long options that ``argv`` really names (not docopt's filled-in defaults)."""
    from scratchlm.cli.argv import given_options as named_in
    from scratchlm.cli.main import __doc__ as usage

    return named_in(argv, usage)


def read_config(path) -> dict:
    """The settings in a YAML file with config.yaml's keys (its ``data`` too, which --config alone
    trains on), or an OptionError saying what is wrong."""
    values = read_yaml_settings(path)
    settings = {}
    for key, value in values.items():
        name = str(key).strip().lstrip("-").replace("-", "_")
        if name in RECORD_ONLY_KEYS:
            continue
        if name not in SETTING_KEYS:
            close = difflib.get_close_matches(name[:100], list(OPTION_OF), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known settings: {', '.join(OPTION_OF)}"
            raise OptionError(f"--config {path}: unknown setting {excerpt(key)} ({hint})")
        if name != "data" or not isinstance(value, list):   # data may list several files
            check_scalar(path, key, value)
        settings[name] = value
    return settings


def settings_from_args(args, argv=None):
    """(TrainSettings, the checkpoint to resume or None, the model to fine-tune or None) from docopt's
    ``args`` and the raw ``argv``; each checkpoint is read once, here."""
    given = given_options(sys.argv[1:] if argv is None else argv)
    raw = {field: (args[option], option) for option, (field, _) in OPTIONS.items()}
    from_user = {OPTIONS[o][0] for o in given if o in OPTIONS}
    checkpoint = recorded = init = None
    if args["--resume-from"]:
        checkpoint = load_checkpoint(args["--resume-from"])
        check_resumable(checkpoint, args["--resume-from"])
        recorded = checkpoint.train_state["settings"]
        for field in OPTION_OF:
            if field not in from_user and (field in recorded or field in BEFORE_RECORDED):
                raw[field] = (recorded.get(field, BEFORE_RECORDED.get(field)), f"{field} in {args['--resume-from']}")
        if "output_dir" not in from_user:
            raw["output_dir"] = (str(Path(args["--resume-from"]).parent), "--output-dir")
    data_from = {"DATA": args["DATA"] or None}          # the first one given wins
    if args["--config"]:
        config = read_config(args["--config"])
        data_from[f"data in {args['--config']}"] = config.pop("data", None)
        for field, value in config.items():
            if field not in from_user:
                raw[field] = (value, f"{field} in {args['--config']}")
                from_user.add(field)
    if recorded is not None:
        data_from[f"the data of {args['--resume-from']}"] = recorded.get("data")
    values = {field: OPTIONS[OPTION_OF[field]][1](value, label) for field, (value, label) in raw.items()}
    if args.get("--mixed-precision"):
        if "precision" in from_user and values["precision"] != "bf16":
            raise OptionError(f"--mixed-precision is --precision bf16, but {raw['precision'][1]} is "
                              f"{excerpt(values['precision'])}: give one of them")
        values["precision"] = "bf16"
    if values["precision"] == "bf16" and values["dtype"] != "float32":
        raise OptionError(f"--precision bf16 keeps its weights in float32, but --dtype is {values['dtype']}: "
                          "drop one of them")
    if recorded is not None:
        for field in FIXED_ON_RESUME:
            if field in from_user and field in recorded and values[field] != recorded[field]:
                raise OptionError(f"{raw[field][1]} {excerpt(raw[field][0])} differs from the resumed run's {field} "
                                  f"{recorded[field]}: a resumed run keeps it (drop the option, or start a new run)")
    if values["validation_data"] and "--val-split" in given:
        raise OptionError(f"--val-split holds out the tail of DATA, --validation-data {excerpt(values['validation_data'])} "
                          "validates on a file of its own: give one of them")
    if values["grad_accum"] > values["batch_size"]:
        raise OptionError(f"--grad-accum {values['grad_accum']} is more than --batch-size {values['batch_size']}: "
                          "each micro-batch needs at least one sequence")
    if values["init_from"] and args["--resume-from"] is None:
        init = load_checkpoint(values["init_from"])
        values.update(init_shape(init, values, from_user))
    elif values["init_from"] and "init_from" in from_user:    # a resumed run's own record is no conflict
        raise OptionError("--init-from starts a new run and --resume-from continues one: give one of them")
    data = data_to_train_on(data_from)
    values.update(prepared_settings(data, values, given))
    return TrainSettings(data=data, **values, resume_from=args["--resume-from"],
                         overwrite=bool(args["--overwrite"])), checkpoint, init


INIT_SHAPE = {"model_dim": "d_model", "num_heads": "n_heads", "num_layers": "n_layers",
              "pos_encoding": "pos_encoding", "norm": "norm"}   # setting -> the GPTConfig field it must equal


def init_shape(model, values: dict, from_user: set) -> dict:
    """The settings a fine-tuning run takes from ``model``, the checkpoint it starts from (--init-from):
    its shape and tokenizer; a shorter --max-seq-len trains on shorter windows of the same learned positions."""
    source = values["init_from"]
    config = model.config
    shape = {setting: getattr(config, field) for setting, field in INIT_SHAPE.items()}
    for setting, value in shape.items():
        if setting in from_user and values[setting] != value:
            raise OptionError(f"{OPTION_OF[setting]} {values[setting]} differs from the {setting} {value} of "
                              f"--init-from {excerpt(source, quoted=False)}: a fine-tuned model keeps its shape "
                              "(drop the option)")
    if "tokenizer" in from_user and values["tokenizer"] != model.tokenizer.kind:
        raise OptionError(f"--init-from {excerpt(source, quoted=False)} brings its own {model.tokenizer.kind} "
                          "tokenizer: drop --tokenizer")
    context = values["max_seq_len"] if "max_seq_len" in from_user else config.max_seq_len
    if context > config.max_seq_len:
        raise OptionError(f"--max-seq-len {context} is longer than the context of {config.max_seq_len} of "
                          f"--init-from {excerpt(source, quoted=False)}: use {config.max_seq_len} or less")
    return dict(shape, max_seq_len=context, tokenizer=model.tokenizer.kind)


def prepared_settings(data, values: dict, given: set) -> dict:
    """A prepared folder (scratchlm prepare) brings its tokenizer and validation split: options
    that say otherwise are refused, and the run records the folder's own."""
    from scratchlm.data.token_cache import Unusable, prepared_folder, read_description

    folder = prepared_folder(data)
    if folder is None:
        return {}
    try:
        description = read_description(folder)     # its token files are checked once, when training opens them
    except Unusable:
        return {}                        # training says what is wrong with it, with the data's other checks
    kind = description["tokenizer"]["kind"]
    validation = description["split"].get("validation")
    own = {"tokenizer": kind, "val_split": description["split"].get("val_split", "none (a held-out file)"),
           "validation_data": validation["path"] if validation else None}
    for field, option in (("tokenizer", "--tokenizer"), ("val_split", "--val-split"),
                          ("validation_data", "--validation-data")):
        if option in given and values[field] != own[field]:
            raise OptionError(f"{option} {excerpt(values[field])} differs from the {field} {excerpt(own[field])} that "
                              f"{excerpt(str(folder), quoted=False)} was prepared with: drop {option}, or prepare "
                              "the data again with it")
    if validation:
        own["val_split"] = values["val_split"]
    return own


def data_to_train_on(sources: dict) -> str | list:
    """The text to train on: DATA, else the data a --config file names, else the resumed run's
    (one argument as a string, several as a list, as config.yaml records them)."""
    from scratchlm.data.sources import resolve_sources
    from scratchlm.data.token_cache import prepared_folder
    from scratchlm.errors import DataError

    for label, data in sources.items():
        if data is None:
            continue
        specs = [text(d, label) for d in (data if isinstance(data, (list, tuple)) else [data])]
        if not specs:
            raise OptionError(f"{label} must not be empty")
        if label != "DATA" and prepared_folder(specs) is None:
            try:
                files = resolve_sources(specs)
            except DataError:
                files = []
            if not files or not all(f.is_file() for f in files):
                shown = " ".join(excerpt(spec, 200, quoted=False) for spec in specs[:3])
                raise OptionError(f"{label} is {shown}, which is not a file here: "
                                  "give DATA (scratchlm train DATA ...)")
        return specs[0] if len(specs) == 1 else specs
    raise OptionError("train needs DATA, UTF-8 text files or folders: scratchlm train DATA... [options] (or --config "
                      "with a run's config.yaml, which names its data)")


def resume_command(settings: TrainSettings, checkpoint, quiet: bool) -> str:
    """The command line that continues this run from ``checkpoint``."""
    program = Path(sys.argv[0]).name
    program = program if program in ("scratchlm", "fundamentallm") else "python -m scratchlm"
    parts = [program, "train", *data_specs(settings.data), "--output-dir", settings.output_dir, "--resume-from", str(checkpoint)]
    return " ".join(shlex.quote(str(p)) if i > 1 else p for i, p in enumerate(parts)) + (" --quiet" if quiet else "")


def run_train_command(args, argv=None) -> int:
    """Train as the command line asked; returns the exit code (128 + the signal after Ctrl-C, SIGTERM
    or SIGHUP: 130, 143, 129; 1 on a NaN loss)."""
    from scratchlm.errors import TrainingDiverged, TrainingInterrupted
    from scratchlm.training.distributed import launched_by_mpi
    from scratchlm.training.loop import train
    from scratchlm.training.progress import make_reporter

    try:
        settings, checkpoint, init = settings_from_args(args, argv)
        reporter = make_reporter(bool(args["--quiet"]), plain=launched_by_mpi(), first_step_note=compile_note(settings))
        summary = train(settings, reporter, checkpoint, profile=bool(args.get("--profile")), init=init)
        if "profile" in summary and not args["--quiet"]:
            print(f"\n{summary['profile']}\n(also in {Path(settings.output_dir) / 'profile.md'})", flush=True)
    except TrainingInterrupted as stop:
        _say(f"\n{_stopped_by(stop.signum)} at step {stop.step}; saved {stop.checkpoint}")
        _say(f"Resume with: {resume_command(settings, stop.checkpoint, bool(args['--quiet']))}")
        return 128 + stop.signum
    except TrainingDiverged as exc:
        _say(f"error: {exc}")
        return 1
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        _say(f"\n{_stopped_by(signum)} (no checkpoint was saved)")
        return 128 + signum
    return 0


def compile_note(settings) -> str | None:
    """The line that says a cold kernel cache is being filled (None on a GPU or a warm cache)."""
    from scratchlm import backend
    from scratchlm.cli.kernel_cache import TRAIN_KERNELS, compile_notice
    from scratchlm.errors import DeviceError

    try:
        device = backend.resolve_device(settings.device)
    except DeviceError:                  # training reports it, after checking the data
        return None
    return compile_notice(TRAIN_KERNELS, device, "training")


def _stopped_by(signum: int) -> str:
    return "Interrupted" if signum == signal.SIGINT else f"Stopped by {signal.Signals(signum).name}"


def _say(line: str) -> None:
    """A line on stderr; after SIGHUP the terminal may be gone, and the exit code must still come out."""
    try:
        print(line, file=sys.stderr, flush=True)
    except OSError:
        pass
