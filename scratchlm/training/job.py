"""What a training run checks and builds before it writes a single byte.

``prepare`` reads and splits the text, builds (or restores) the model and the
optimizer, resolves the device and checks the output directory. Every problem a
user can fix becomes a typed error here (``DataError``, ``OptionError``,
``CheckpointError``, ``ConfigError``, ``DeviceError``), so a bad run stops before
its output directory is created or touched.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from scratchlm import backend
from scratchlm.autograd.precision import bf16_unavailable_reason
from scratchlm.checkpoint import WEIGHTS_ONLY
from scratchlm.data.batches import windows_per_epoch
from scratchlm.data.sources import data_specs
from scratchlm.data.training_data import tokens_per_char, training_data
from scratchlm.errors import CheckpointError, DataError, OptionError
from scratchlm.limits import check_memory, excerpt, human_number
from scratchlm.model import GPT, GPTConfig, model_bytes, parameter_count
from scratchlm.optim import AdamW
from scratchlm.training.resume_state import check_resume_state
from scratchlm.training.rundir import ResumePoint, check_existing_run

ADAM_BETAS = (0.9, 0.99)       # beta2 0.99 suits small character models
ADAM_EPS = 1e-8
MIN_LR_RATIO = 0.1             # cosine decays to 10% of the peak learning rate
AUTO = "auto"
WARMUP_FRACTION = 0.1          # --warmup-steps auto: this share of the steps a run takes (docs/training.md)
TRAINING_COPIES = 4            # weights, gradients and AdamW's two moments, each one flat buffer
# Settings that define the model or the data order: a resumed run must keep them.
FIXED_ON_RESUME = ("model_dim", "num_heads", "num_layers", "max_seq_len", "dropout", "tokenizer",
                   "pos_encoding", "norm", "seed", "val_split", "batch_size", "eval_tokens")
# Enough windows that the validation loss is steady, few enough that evaluating costs about as much
# as ten training steps at config c; the tutorial's splits (10 k tokens) are scored whole.
DEFAULT_EVAL_TOKENS = 262144


@dataclass
class TrainSettings:
    """Every setting of a run; the field names are the keys of a run's config.yaml."""

    data: str | list            # one DATA argument, or several (files, folders, glob patterns)
    output_dir: str
    model_dim: int
    num_heads: int
    num_layers: int
    max_seq_len: int
    dropout: float
    epochs: int
    max_steps: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    warmup_steps: int | str         # "auto" until prepare() knows the run's length
    lr_schedule: str
    val_split: float
    gradient_clip: float
    grad_accum: int
    eval_interval: int
    patience: int
    seed: int
    tokenizer: str
    pos_encoding: str
    norm: str
    keep_checkpoints: int
    device: str
    dtype: str = "float32"
    precision: str = "fp32"              # bf16: Linear and MLP products on bf16 operands (autograd/precision.py)
    validation_data: str | None = None   # a held-out file instead of the tail split (--val-split then unused)
    eval_tokens: int = DEFAULT_EVAL_TOKENS  # periodic evaluation scores a fixed sample this size (0: all)
    cache_dir: str | None = None         # where a large DATA's token cache goes (None: cache_root's default)
    init_from: str | None = None         # fine-tuning: the checkpoint or Hugging Face folder the weights came from
    resume_from: str | None = None
    overwrite: bool = False

    def hyperparameters(self) -> dict:
        """The settings that describe the run (what config.yaml and checkpoints record)."""
        values = asdict(self)
        values.pop("resume_from")
        values.pop("overwrite")
        return values


SETTING_KEYS = tuple(f.name for f in fields(TrainSettings) if f.name not in ("resume_from", "overwrite"))


@dataclass
class RunState:
    """Where a run stands; saved in every checkpoint so a resumed run continues exactly."""

    step: int = 0                       # optimizer steps done
    epochs_done: int = 0
    step_in_epoch: int = 0              # steps done in the epoch under way
    epoch_rng_state: dict | None = None  # data-order RNG state before the current epoch's order was drawn
    dropout_rng_state: dict | None = None
    best_val_loss: float | None = None
    best_epoch: int = 0
    best_step: int = 0
    bad_evals: int = 0                  # evaluations since the last improvement (for --patience)
    epoch_loss_sum: float = 0.0         # training loss summed over this epoch's steps so far
    epoch_loss_steps: int = 0
    epoch_time_s: float = 0.0
    curve_loss_sum: float = 0.0         # the loss-curve point under way
    curve_loss_steps: int = 0
    elapsed_s: float = 0.0
    history: list = field(default_factory=list)   # one record per evaluation (metrics.jsonl)
    curve: list = field(default_factory=list)     # [step, mean train loss] points (loss_curve.svg)

    @classmethod
    def from_dict(cls, values: dict) -> RunState:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


@dataclass
class TrainJob:
    """A checked, ready-to-run training run: data, model, optimizer and where it stands."""

    settings: TrainSettings
    tokenizer: object
    train_ids: np.ndarray
    val_ids: np.ndarray
    data_info: dict
    tokens_per_char: float               # val tokens per character, to turn bits/token into bits/char
    model: GPT
    optimizer: AdamW
    device: str
    state: RunState
    output_dir: Path
    resumed_from: str | None = None
    processes: int = 1                   # MPI ranks sharing each global batch
    resumed_settings: dict | None = None  # the settings the resumed checkpoint was trained with
    fresh_moments: bool = False          # resumed from weights only: AdamW's moments start from zero
    cache_note: str | None = None        # the token cache used (training_data's note), for the panel
    precision_note: str | None = None    # why --precision bf16 runs in fp32 here, for the panel

    @property
    def window(self) -> int:
        return self.settings.max_seq_len + 1

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(windows_per_epoch(len(self.train_ids), self.window) / self.settings.batch_size)

    @property
    def schedule_steps(self) -> int:
        """The learning-rate schedule spans every planned epoch (--max-steps only stops early)."""
        return self.settings.epochs * self.steps_per_epoch

    @property
    def last_step(self) -> int:
        planned = self.schedule_steps
        return min(planned, self.settings.max_steps) if self.settings.max_steps else planned


def prepare(settings: TrainSettings, checkpoint=None, progress=None, init=None) -> TrainJob:
    """Check everything and build the run; raises a typed error for anything a user can fix.
    ``progress(done_bytes, total_bytes)`` follows the tokenizing of the data. ``init`` (a Checkpoint,
    for a new run only) gives the model's shape, weights and tokenizer: fine-tuning."""
    source = checkpoint or init
    data = training_data(settings.data, settings.tokenizer, source.tokenizer if source else None, settings.val_split,
                         settings.validation_data, settings.cache_dir, progress)
    tokenizer, train_ids, val_ids, data_info = data.tokenizer, data.train_ids, data.val_ids, data.info  # (N_train,), (N_val,)
    if checkpoint:
        _check_same_data(settings, checkpoint.train_state.get("data", {}), data_info)
    _check_lengths(settings, data_info["tokens"], len(train_ids), len(val_ids), tokenizer.kind)
    data_info.update(train_tokens=int(len(train_ids)), val_tokens=int(len(val_ids)))
    config = checkpoint.config if checkpoint else replace(init.config, dropout=settings.dropout) if init else GPTConfig(
        vocab_size=tokenizer.vocab_size, d_model=settings.model_dim, n_heads=settings.num_heads,
        n_layers=settings.num_layers, max_seq_len=settings.max_seq_len, dropout=settings.dropout,
        norm=settings.norm, pos_encoding=settings.pos_encoding)
    check_memory(model_bytes(config, settings.dtype) * TRAINING_COPIES,
                 f"training a model of {human_number(parameter_count(config))} parameters in {settings.dtype}",
                 "lower --model-dim, --num-layers or --max-seq-len")
    device = backend.resolve_device(settings.device)
    output_dir = check_output_dir(Path(settings.output_dir), resume_point(settings, checkpoint), settings.overwrite)
    if checkpoint:
        model = checkpoint.build_model(device, dtype=settings.dtype)
        state = RunState.from_dict(checkpoint.train_state["state"])
        model.dropout_rng.bit_generator.state = state.dropout_rng_state
    else:
        model = GPT(config, seed=settings.seed, dtype=settings.dtype)
        if init:
            model.load_state_dict(init.weights)
        model = model.to(device)                                   # on the device before AdamW
        state = RunState()
    optimizer = AdamW(model.parameters(), lr=settings.learning_rate, betas=ADAM_BETAS, eps=ADAM_EPS,
                      weight_decay=settings.weight_decay)
    if checkpoint and checkpoint.optimizer_state is not None:
        optimizer.load_state_dict(checkpoint.optimizer_state)
    job = TrainJob(settings, tokenizer, train_ids, val_ids, data_info, tokens_per_char(tokenizer, val_ids),
                   model, optimizer, device, state, output_dir,
                   str(settings.resume_from) if checkpoint else None,
                   resumed_settings=checkpoint.train_state.get("settings") if checkpoint else None,
                   fresh_moments=bool(checkpoint) and checkpoint.optimizer_state is None, cache_note=data.cache_note)
    if settings.warmup_steps == AUTO:                              # recorded as the number it became
        job.settings = replace(settings, warmup_steps=auto_warmup_steps(job.last_step))
    if job.settings.precision == "bf16" and (reason := bf16_unavailable_reason(device)):
        job.settings = replace(job.settings, precision="fp32")      # recorded as what ran
        job.precision_note = f"fp32: --precision bf16 asked for, but {reason}"
    check_work_left(job)
    return job


def auto_warmup_steps(run_steps: int) -> int:
    """--warmup-steps auto: a warm-up that grows with the run (issue 21; docs/training.md). It counts
    the steps the run takes, so a --max-steps run on big data still leaves its warm-up."""
    return round(WARMUP_FRACTION * run_steps)


def resume_point(settings: TrainSettings, checkpoint) -> ResumePoint | None:
    """Where a resumed run starts (the checkpoint and its step); None for a new run."""
    if checkpoint is None:
        return None
    return ResumePoint(Path(settings.resume_from), int(checkpoint.train_state["state"].get("step", 0)))


def check_work_left(job: TrainJob) -> None:
    """A resumed run with no step left to take would write nothing and name files it never wrote."""
    s, state = job.settings, job.state
    if not job.resumed_from:
        return
    if s.max_steps and state.step >= s.max_steps:
        raise OptionError(f"{job.resumed_from} has already reached --max-steps {s.max_steps} (step {state.step}): "
                          "resume with a larger --max-steps, or --max-steps 0 for no limit, to train on")
    if state.epochs_done >= s.epochs or state.step >= job.schedule_steps:
        raise OptionError(f"{job.resumed_from} has already trained all {s.epochs} --epochs (step {state.step}): "
                          "resume with a larger --epochs to train on; the model in it is ready to use as it is")


def check_processes(settings: TrainSettings, processes: int) -> None:
    """--batch-size is the global batch: it must split evenly over the MPI processes."""
    if settings.batch_size % processes:
        fits = [n for n in range(processes, 0, -1) if settings.batch_size % n == 0][0]
        raise OptionError(f"--batch-size {settings.batch_size} (the global batch) does not split evenly over "
                          f"{processes} MPI processes: use a multiple of {processes} (e.g. "
                          f"{-(-settings.batch_size // processes) * processes}) or start {fits} processes")
    if processes > 1 and settings.grad_accum > settings.batch_size // processes:
        raise OptionError(f"--grad-accum {settings.grad_accum} is more than the {settings.batch_size // processes} "
                          f"sequences each of the {processes} MPI processes gets from --batch-size "
                          f"{settings.batch_size}: each micro-batch needs at least one sequence")


def check_resumable(checkpoint, path) -> None:
    """A checkpoint to resume from must carry the training state, not only weights. An older epoch
    checkpoint whose AdamW moments were dropped (``WEIGHTS_ONLY``) resumes with fresh moments."""
    ts = checkpoint.train_state
    weights_only = checkpoint.optimizer_state is None and ts.get(WEIGHTS_ONLY) is True
    if (checkpoint.optimizer_state is None and not weights_only) or "settings" not in ts or "state" not in ts:
        raise CheckpointError(f"{path} holds a model but no training state, so a run cannot resume from it: "
                              "use a checkpoint_epoch_N.pt, final_model.pt or interrupted.pt written by scratchlm train "
                              "(or fine-tune the model with --init-from)")
    check_resume_state(path, ts, None if weights_only else checkpoint.optimizer_state["step"])


def _check_same_data(settings, recorded: dict, data_info: dict) -> None:
    """A resumed run trains and validates on the texts it began with (a run without a
    validation file, or from before there was one, records none)."""
    if recorded and (recorded.get("tokens"), recorded.get("crc32")) != (data_info["tokens"], data_info["crc32"]):
        raise DataError(f"{data_info['path']} is not the text this run was trained on "
                        f"({excerpt(recorded.get('path'), quoted=False)}, {excerpt(recorded.get('characters'))} "
                        "characters): resume with the same DATA")
    was, now = recorded.get("validation") if recorded else None, data_info.get("validation")
    if recorded and _text_key(was) != _text_key(now):
        before = f"--validation-data {excerpt(was.get('path'), quoted=False)}" if isinstance(was, dict) else \
            "the tail of DATA (--val-split)"
        raise DataError(f"a resumed run keeps its validation text: this run was validated on {before}; resume with it")


def _text_key(info) -> tuple | None:
    return (info.get("tokens"), info.get("crc32")) if isinstance(info, dict) else None


def _check_lengths(settings, n_total: int, n_train: int, n_val: int, kind: str) -> None:
    """The training split needs one window of max_seq_len + 1 tokens; the validation split two tokens."""
    unit = {"byte": "bytes", "char": "characters"}.get(kind, "tokens")
    window = settings.max_seq_len + 1
    if n_train >= window and n_val >= 2:
        return
    if settings.validation_data:           # all of DATA trains; validation_ids has checked the file
        raise DataError(f"{settings.data} is too short: it has {n_total} {unit}, but --max-seq-len "
                        f"{settings.max_seq_len} needs at least {window} to train on: use a longer file or lower "
                        f"--max-seq-len to {max(n_train - 1, 1)} or less")
    needed = _shortest_usable_length(window, settings.val_split)
    hint = f"use a longer file or lower --max-seq-len to {n_train - 1} or less" if n_train >= 3 and n_val >= 2 \
        else "use a longer file"
    raise DataError(
        f"{' '.join(data_specs(settings.data))} is too short: it has {n_total} {unit}, but "
        f"--max-seq-len {settings.max_seq_len} with "
        f"--val-split {settings.val_split:g} needs at least {needed} ({window} to train on, 2 to validate): {hint}")


def _shortest_usable_length(window: int, val_split: float) -> int:
    """The fewest tokens whose split leaves ``window`` to train on and 2 to validate. Both parts
    grow with the length (never shrink), so a binary search finds it, in steps, for any window."""
    def usable(n: int) -> bool:
        n_val = int(round(n * val_split))
        return n - n_val >= window and n_val >= 2

    low, high = window, 2 * window + math.ceil(2 / val_split) + 2
    while not usable(high):         # the bound above always holds; doubling keeps this total
        high *= 2
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if usable(middle) else (middle + 1, high)
    return low


def check_output_dir(path: Path, resume: ResumePoint | None, overwrite: bool) -> Path:
    """Refuse an output path that is a file, not writable, or holds a run this one must not replace."""
    if path.exists() and not path.is_dir():
        raise OptionError(f"--output-dir {path} is a file, not a directory: choose another --output-dir")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OptionError(f"--output-dir {path} cannot be created: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OptionError(f"--output-dir {path} is not writable ({existing}: permission denied): choose another --output-dir")
    check_existing_run(path, resume, overwrite)
    return path
