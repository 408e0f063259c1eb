"""Checking the training state in a checkpoint before a run resumes from it.

A resumed run trusts the counters, RNG states, history and loss curve that its checkpoint
records; damaged ones crashed it halfway (after config.yaml was written) or, worse, went on
from a wrong step. They are checked here, when the checkpoint is read and before anything is
built or written; each problem is a ``CheckpointError`` naming the file and the field.
"""

from __future__ import annotations

import math

import numpy as np

from scratchlm.errors import CheckpointError
from scratchlm.limits import excerpt

COUNTERS = ("step", "epochs_done", "step_in_epoch", "best_epoch", "best_step", "bad_evals",
            "epoch_loss_steps", "curve_loss_steps")
SUMS = ("epoch_loss_sum", "epoch_time_s", "curve_loss_sum", "elapsed_s")
RNG_STATES = ("epoch_rng_state", "dropout_rng_state")
# What training_log.txt and loss_curve.svg read from each record of the history.
HISTORY_NUMBERS = ("step", "epoch", "train_loss", "val_loss", "val_perplexity", "val_bits_per_char", "lr",
                   "tokens_per_s", "epoch_time_s")


def check_resume_state(path, train_state: dict, optimizer_step: int | None) -> None:
    """Raise CheckpointError unless ``train_state`` is one a run can go on from (``optimizer_step``:
    None for a checkpoint that keeps the weights only)."""
    for key in ("settings", "state"):
        if not isinstance(train_state.get(key), dict):
            _damaged(path, f"train_state.{key}", train_state.get(key), "a JSON object")
    if not isinstance(train_state.get("data", {}), dict):
        _damaged(path, "train_state.data", train_state["data"], "a JSON object")
    state = train_state["state"]
    for key in COUNTERS:
        if not _is_count(state.get(key, 0)):
            _damaged(path, key, state[key], "a whole number, 0 or more")
    for key in SUMS:
        if not _is_finite(state.get(key, 0.0)):
            _damaged(path, key, state[key], "a finite number")
    if state.get("best_val_loss") is not None and not _is_finite(state["best_val_loss"]):
        _damaged(path, "best_val_loss", state["best_val_loss"], "a finite number")
    for key in RNG_STATES:
        _check_rng_state(path, key, state.get(key))
    _check_history(path, state.get("history", []), state.get("curve", []))
    if optimizer_step is not None and state.get("step", 0) != optimizer_step:
        raise CheckpointError(f"{path} is inconsistent: the run is at step {excerpt(state.get('step', 0))} but its "
                              f"optimizer at step {optimizer_step}: the file is damaged, resume from another one")


def _check_rng_state(path, key: str, value) -> None:
    """A random generator's state must load into a generator (as the resumed run will load it)."""
    try:
        np.random.default_rng().bit_generator.state = value
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError):
        _damaged(path, key, value, "a NumPy random generator state")


def _check_history(path, history, curve) -> None:
    if not isinstance(history, list):
        _damaged(path, "history", history, "a list of evaluation records")
    for record in history:
        if not isinstance(record, dict) or not all(_is_finite(record.get(k)) for k in HISTORY_NUMBERS) \
                or not isinstance(record.get("end_of_epoch"), bool):
            _damaged(path, "history", record, "evaluation records with finite numbers")
    if not isinstance(curve, list) or not all(isinstance(p, list) and len(p) == 2 and all(map(_is_finite, p))
                                              for p in curve):
        _damaged(path, "curve", curve, "a list of [step, loss] pairs")


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _damaged(path, key: str, value, wanted: str):
    raise CheckpointError(f"{path} holds damaged training state: {key} is {excerpt(value)}, not {wanted}; "
                          "resume from another checkpoint of the run")
