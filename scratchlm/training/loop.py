"""The training job as a library function: ``train(settings, reporter)``.

One optimizer step: zero the flat gradient buffer; for each micro-batch, forward,
then backward with the loss scaled by the micro-batch's share of the rows (so the
accumulated gradient equals the full batch's); clip; AdamW. Losses are summed where
they live and read to the host only when logged (every step on the CPU, where that
is free and names the exact step of a NaN; a few times an epoch on a GPU).

Everything a resumed run needs is in each checkpoint's ``train_state``: the settings,
the step and epoch counters (the learning-rate schedule is a function of the step),
the data-order RNG state from the start of the epoch under way (the epoch's order is
redrawn and the steps already done are skipped), the dropout RNG state, the history
and the best validation loss. AdamW's moments and step count travel as tensors.
This module prints nothing: it tells a ``reporter`` what happens.

Under ``mpirun -n N`` (see ``distributed.py``) every rank runs this same loop on the same
global batches in the same order; each computes the gradient of its own rows (weighted by
their share of the global batch) and one all-reduce adds them up before clipping and AdamW.
Rank 0 alone reports and writes files; validation batches are dealt out among the ranks.
"""

from __future__ import annotations

import copy
import math
import signal
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np

from scratchlm.autograd.function import no_grad
from scratchlm.autograd.precision import bf16_products
from scratchlm.backend import array_module_for, get_array_module
from scratchlm.checkpoint import load_checkpoint, save_checkpoint, write_atomically
from scratchlm.data.batches import epoch_order, eval_starts, gather_windows, to_device_batch
from scratchlm.data.text import micro_batch_bounds
from scratchlm.errors import OutputWriteError, TrainingAborted, TrainingDiverged, TrainingInterrupted
from scratchlm.optim import lr_at
from scratchlm.training import distributed, outputs
from scratchlm.training.job import (
    MIN_LR_RATIO,
    TrainJob,
    TrainSettings,
    check_processes,
    check_resumable,
    prepare,
    resume_point,
)
from scratchlm.training.profile import StepProfiler
from scratchlm.training.progress import Reporter
from scratchlm.training.rundir import claim_output_dir

__all__ = ["train", "TrainSettings"]
CURVE_POINTS_PER_EPOCH = 20


def train(settings: TrainSettings, reporter: Reporter | None = None, checkpoint=None, profile: bool = False,
          init=None) -> dict:
    """Run a training job; returns the summary (best epoch, val loss, perplexity, paths...).
    ``profile``: time a few warm steps by op (``profile.py``), into the run's profile.md and the
    summary's ``profile`` (the table's text). ``checkpoint`` and ``init``: the --resume-from and
    --init-from checkpoints if the caller has read them already (else they are read here).

    Under mpirun every rank calls this; the summary is the same on all of them.
    """
    group = distributed.current()
    check_processes(settings, group.size)
    group.use_local_gpu(settings.device)
    if settings.resume_from and checkpoint is None:
        checkpoint = load_checkpoint(settings.resume_from)
        check_resumable(checkpoint, settings.resume_from)
    if settings.init_from and not settings.resume_from and init is None:
        init = load_checkpoint(settings.init_from)
    elif settings.resume_from:
        init = None
    if not group.is_main:
        group.barrier()                               # rank 0 fills a token cache first; the others then map it
    job = prepare(settings, checkpoint, reporter.tokenizing if reporter is not None and group.is_main else None, init)
    if group.is_main:
        group.barrier()
    job.processes = group.size
    for buffer in (job.optimizer.flat_params, job.optimizer.m, job.optimizer.v):
        group.broadcast_(buffer)                      # every rank starts from rank 0's weights and moments
    group.decorrelate_(job.model.dropout_rng)         # but draws its own dropout masks
    group.barrier()                                   # every rank has checked --output-dir before rank 0 writes
    lock = None
    if group.is_main:                                 # rank 0 alone writes, so it alone holds the folder
        lock = claim_output_dir(job.output_dir, resume_point(settings, checkpoint), settings.overwrite)
    reporter = (reporter or Reporter()) if group.is_main else Reporter()
    try:
        return Trainer(job, reporter, group, StepProfiler() if profile and group.is_main else None).run()
    finally:
        reporter.close()
        if lock is not None:
            lock.release()


def validation_loss(model, val_ids, window: int, batch_size: int, group=None, eval_tokens: int = 0) -> float:
    """Mean loss per predicted token over the validation split (dropout off, no tape): all of it,
    or the fixed sample ``eval_starts`` picks when it holds more than ``eval_tokens`` (0: all).

    ``val_ids`` stays on the host; each batch's rows are gathered and copied to the device alone.
    With several ranks, batch i is scored by rank i mod N and the sums are added up.
    """
    group = group or distributed.SingleProcess()
    xp = get_array_module(model.parameters()[0].data)
    starts, whole = eval_starts(len(val_ids), window, eval_tokens)                 # (M,) int64
    pieces = [(starts[i : i + batch_size], window) for i in range(0, len(starts), batch_size)]
    rest = len(val_ids) - len(starts) * window
    if whole and rest >= 2:                                                        # the shorter tail window
        pieces.append((np.array([len(starts) * window], dtype=np.int64), rest))
    total, count = 0.0, 0
    model.eval()
    with no_grad():
        for rows_at, width in pieces[group.rank :: group.size]:
            inputs, targets = to_device_batch(gather_windows(val_ids, rows_at, width), xp)  # 2 x (B, W-1)
            _, loss = model(inputs, targets)
            total = total + loss.data * targets.size
            count += targets.size
    model.train()
    total, count = group.sum(float(total), count)
    return total / count


class StopRequest:
    """Turns the first Ctrl-C, SIGTERM or SIGHUP into a request to stop at the next step boundary
    (a second one aborts at once). SIGTERM is what a scheduler, ``docker stop`` or systemd sends,
    SIGHUP what a closed terminal sends: each must leave a resumable checkpoint, as Ctrl-C does."""

    def __init__(self, active: bool = True):
        self.active, self.requested, self.signum, self.previous = active, False, None, {}

    def __enter__(self):
        if self.active and threading.current_thread() is threading.main_thread():
            for signum in stop_signals():
                # An ignored SIGTERM or SIGHUP was asked for (nohup: go on when the terminal closes).
                # SIGINT is caught even when ignored, as in a background job, so `kill -INT` still saves.
                if signum != signal.SIGINT and signal.getsignal(signum) is signal.SIG_IGN:
                    continue
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise TrainingAborted(signum)
        self.requested, self.signum = True, signum

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}


def stop_signals() -> list[int]:
    """The signals that stop a run cleanly (SIGHUP exists on POSIX only)."""
    return [getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)]


class Trainer:
    def __init__(self, job: TrainJob, reporter: Reporter, group=None, profiler: StepProfiler | None = None):
        self.job, self.s, self.state, self.reporter = job, job.settings, job.state, reporter
        self.profiler = profiler
        self.group = group or distributed.SingleProcess()
        self.writes = self.group.is_main                                       # rank 0 writes every file
        self.xp = array_module_for(job.device)
        self.train_ids, self.val_ids = job.train_ids, job.val_ids             # (N_train,), (N_val,) on the host
        self.data_rng = np.random.default_rng(self.s.seed + 2)                # weights: seed, dropout: seed + 1
        if self.state.epoch_rng_state is None:                               # a new run
            self.state.epoch_rng_state = copy.deepcopy(self.data_rng.bit_generator.state)
        self.curve_every = max(1, job.steps_per_epoch // CURVE_POINTS_PER_EPOCH)
        self.read_every = 1 if job.device == "cpu" else self.curve_every
        self.pending_loss, self.pending_steps = 0.0, 0                        # summed on the device
        self.last_loss = self.last_val = None
        self.session_start, self.elapsed_before = time.perf_counter(), job.state.elapsed_s
        self.session_steps, self.first_step_s, self.later_steps_s = 0, 0.0, 0.0  # for the ETA
        self.epoch_tokens, self.epoch_train_s = 0, 0.0
        self.last_good = Path(job.resumed_from) if job.resumed_from else None   # named if a save is refused

    # ---- the run -------------------------------------------------------------------------
    def run(self) -> dict:
        job, s, state = self.job, self.s, self.state
        if self.writes:
            with self._writing(job.output_dir / "config.yaml"):
                outputs.write_config(job)
        self.reporter.start(outputs.run_facts(job), job.resumed_from, state.step)
        stop = None
        # Under mpirun, signals reach mpirun, which ends every rank: no step-boundary stop there.
        with StopRequest(active=self.group.size == 1) as self.stop_request, \
                np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            while state.epochs_done < s.epochs and state.step < job.last_step and stop is None:
                stop = self._epoch(state.epochs_done + 1)
        if stop is None:
            stop = "done" if state.epochs_done >= s.epochs else "max-steps"
        self._clock()
        if self.writes:
            outputs.remove_passed_interruption(job.output_dir, state.step)
        summary = outputs.summary(job, stop)
        if self.profiler is not None:
            summary["profile"] = self.profiler.report()
            with self._writing(job.output_dir / "profile.md"):
                write_atomically(job.output_dir / "profile.md", f"# Profile\n\n{summary['profile']}\n")
        self._write_reports(summary)
        self.reporter.finish(summary, [r["val_loss"] for r in state.history])
        return summary

    def _epoch(self, epoch: int) -> str | None:
        job, s, state = self.job, self.s, self.state
        self.data_rng.bit_generator.state = state.epoch_rng_state            # as this epoch began
        order = epoch_order(len(self.train_ids), job.window, self.data_rng)  # offset and (N,) window indices
        spe, B = job.steps_per_epoch, s.batch_size
        self.epoch_tokens, self.epoch_train_s = 0, 0.0
        self.reporter.epoch_start(epoch, s.epochs, spe, state.step_in_epoch)
        started = time.perf_counter() - state.epoch_time_s                  # counts earlier sessions too
        for b in range(state.step_in_epoch, spe):
            if state.step >= job.last_step:
                return self._stop_mid_epoch(epoch, started, "max-steps")
            if self.stop_request.requested:
                self._interrupt(started)
            with self.profiler.step() if self.profiler else nullcontext():
                self._step(order, b * B, min((b + 1) * B, len(order)))          # windows [bB, bB + B)
            state.step_in_epoch = b + 1
            state.epoch_time_s = time.perf_counter() - started
            if s.eval_interval and state.step % s.eval_interval == 0 and b + 1 < spe:
                self._evaluate(epoch, end_of_epoch=False, started=started)
                if s.patience and state.bad_evals >= s.patience:
                    return self._stop_mid_epoch(epoch, started, "early-stop", evaluated=True)
        self._read_losses(force_curve=True)
        record = self._evaluate(epoch, end_of_epoch=True, started=started)
        state.epochs_done, state.step_in_epoch = epoch, 0
        state.epoch_rng_state = copy.deepcopy(self.data_rng.bit_generator.state)
        state.epoch_loss_sum, state.epoch_loss_steps, state.epoch_time_s = 0.0, 0, 0.0
        path = self._save(job.output_dir / f"checkpoint_epoch_{epoch}.pt", best=record["best"])
        if self.writes:
            with self._writing(job.output_dir / f"checkpoint_epoch_{epoch - 1}.pt"):
                outputs.slim_older_checkpoints(job.output_dir, epoch)
            outputs.prune_checkpoints(job.output_dir, epoch, s.keep_checkpoints)
        self.reporter.epoch_end(record, path)
        if s.patience and state.bad_evals >= s.patience:
            return "early-stop"
        return None

    def _step(self, order, first_window: int, stop_window: int) -> None:
        """One optimizer step on the global batch of windows [first_window, stop_window) of the
        epoch's ``order``: this rank gathers only its own rows and copies them to the device."""
        t0 = time.perf_counter()
        state, opt, s = self.state, self.job.optimizer, self.s
        rows = stop_window - first_window
        first, end = self.group.shard(rows)
        mine = gather_windows(self.train_ids, order.starts(first_window + first, first_window + end), order.window)
        mine_in, mine_out = to_device_batch(mine, self.xp)                    # 2 x (B/N, T)
        opt.zero_grad()
        step_loss = 0.0
        for a, b in micro_batch_bounds(end - first, s.grad_accum):
            with bf16_products(s.precision == "bf16"):                       # backward follows its forward's
                _, loss = self.job.model(mine_in[a:b], mine_out[a:b])        # mean over (b-a, T)
            share = (b - a) / rows                                            # of the global batch
            if share == 1.0:
                loss.backward()
            else:
                loss.backward(self.xp.full((), share, dtype=loss.dtype))      # grads add up in place; filled on the device
            step_loss = step_loss + loss.data * share
        self.group.allreduce_sum_(opt.flat_grads)                             # (P,) the whole batch's gradient
        self.pending_loss = self.pending_loss + step_loss
        self.pending_steps += 1
        if self.pending_steps >= self.read_every:
            self._read_losses(step=state.step + 1)                           # a NaN never reaches the weights
        if s.gradient_clip > 0:
            opt.clip_grad_norm(s.gradient_clip)
        opt.step(self._lr(state.step))
        state.step += 1
        took = time.perf_counter() - t0
        self.session_steps += 1
        if self.session_steps == 1:
            self.first_step_s = took
        else:
            self.later_steps_s += took
        self.epoch_tokens += rows * (order.window - 1)
        self.epoch_train_s += took
        self.reporter.step(state.step_in_epoch + 1, self.last_loss, self.last_val, self._tokens_per_s(), self._eta_s())

    def _read_losses(self, step: int | None = None, force_curve: bool = False) -> None:
        """Bring the losses summed since the last read to the host; stop on NaN or infinity."""
        state = self.state
        step = step or state.step
        if self.pending_steps:
            (total,), n = self.group.sum(self.pending_loss), self.pending_steps   # every rank's share
            self.pending_loss, self.pending_steps = 0.0, 0
            if not math.isfinite(total):
                self._diverged(total, f"at step {step}" if n == 1 else f"between steps {step - n + 1} and {step}")
            self.last_loss = total / n
            state.epoch_loss_sum += total
            state.epoch_loss_steps += n
            state.curve_loss_sum += total
            state.curve_loss_steps += n
        if state.curve_loss_steps and (force_curve or step % self.curve_every == 0):
            state.curve.append([step, state.curve_loss_sum / state.curve_loss_steps])
            state.curve_loss_sum, state.curve_loss_steps = 0.0, 0

    def _diverged(self, value: float, where: str):
        raise TrainingDiverged(f"the loss became {value} {where}: {self._fix_hint()}; the checkpoints saved so far are kept")

    def _fix_hint(self) -> str:
        clip = self.s.gradient_clip
        clip_hint = f"lower --gradient-clip (now {clip:g})" if clip > 0 else "set --gradient-clip 1.0 (now off)"
        return f"lower --learning-rate (now {self.s.learning_rate:g}) or {clip_hint}"

    def _check_finite(self, path: Path) -> None:
        """Never write a checkpoint that cannot be used. The loss is read only every few steps on a GPU,
        and an update can overflow after a finite loss, so NaN weights can reach a save (a Ctrl-C's)."""
        opt, xp = self.job.optimizer, self.xp
        if all(bool(xp.isfinite(buffer).all()) for buffer in (opt.flat_params, opt.m, opt.v)):
            return
        kept = f"the last good checkpoint is {self.last_good}" if self.last_good else "no checkpoint was saved before"
        raise TrainingDiverged(f"the weights became NaN or infinite by step {self.state.step}, so {path.name} was not "
                               f"written (it could not be used); {kept}: {self._fix_hint()}")

    # ---- evaluation, checkpoints, stopping ---------------------------------------------------
    def _evaluate(self, epoch: int, end_of_epoch: bool, started: float) -> dict:
        job, state = self.job, self.state
        self._read_losses()
        val = validation_loss(job.model, self.val_ids, job.window, self.s.batch_size, self.group, self.s.eval_tokens)
        if not math.isfinite(val):
            self._diverged(val, f"on the validation split after step {state.step}")
        self.last_val = val
        best = state.best_val_loss is None or val < state.best_val_loss
        if best:
            state.best_val_loss, state.best_epoch, state.best_step, state.bad_evals = val, epoch, state.step, 0
        else:
            state.bad_evals += 1
        self._clock()
        record = outputs.eval_record(job, epoch, end_of_epoch, val, best, self._lr(max(state.step - 1, 0)),
                                       self._tokens_per_s(), time.perf_counter() - started)
        state.history.append(record)
        if best and not end_of_epoch:
            self._save(job.output_dir / "final_model.pt")
        self.reporter.evaluated(record)
        self._write_reports()
        return record

    def _save(self, path: Path, best: bool = False) -> Path:
        job, state = self.job, self.state
        self._check_finite(path)                     # on every rank: they hold the same weights and stop together
        state.dropout_rng_state = job.model.dropout_rng.bit_generator.state
        self._clock()
        if not self.writes:
            return path
        train_state = {"settings": job.settings.hyperparameters(), "data": job.data_info, "state": vars(state)}
        with self._writing(path):
            save_checkpoint(path, job.model, job.tokenizer, job.optimizer, train_state)
            if best:
                outputs.link_or_copy(path, job.output_dir / "final_model.pt")
        self.last_good = path
        return path

    def _stop_mid_epoch(self, epoch: int, started: float, reason: str, evaluated: bool = False) -> str:
        self._read_losses(force_curve=True)
        if not evaluated:
            self._evaluate(epoch, end_of_epoch=False, started=started)
        path = self._save(self.job.output_dir / f"checkpoint_step_{self.state.step}.pt")
        self.reporter.stopped(reason, path)
        return reason

    def _interrupt(self, started: float) -> None:
        self._read_losses()                      # a curve point under way stays in the state and goes on after resume
        self.state.epoch_time_s = time.perf_counter() - started
        path = self._save(self.job.output_dir / "interrupted.pt")
        self._write_reports()
        raise TrainingInterrupted(path, self.state.step, self.stop_request.signum or signal.SIGINT)

    def _write_reports(self, final: dict | None = None) -> None:
        if self.writes:
            with self._writing(self.job.output_dir / "metrics.jsonl"):
                outputs.write_reports(self.job, final)

    @contextmanager
    def _writing(self, path: Path):
        """A failed write (a full disk, a lost mount) ends the run with one line naming the file and what
        was kept; write_atomically has already removed its temporary file, so the old file is intact."""
        try:
            yield
        except OSError as exc:
            name = exc.filename or path
            kept = (f"the last good checkpoint is {self.last_good} (resume from it with --resume-from once the "
                    "problem is fixed)" if self.last_good else "no checkpoint had been saved yet")
            raise OutputWriteError(f"cannot write {name}: {exc.strerror or exc}; every file written before is "
                                   f"kept, and {kept}") from exc

    # ---- schedule, clock and speed -------------------------------------------------------------
    def _lr(self, step: int) -> float:
        s = self.s
        return lr_at(step, s.learning_rate, s.lr_schedule, s.warmup_steps, self.job.schedule_steps, MIN_LR_RATIO)

    def _clock(self) -> None:
        self.state.elapsed_s = self.elapsed_before + time.perf_counter() - self.session_start

    def _tokens_per_s(self) -> float:
        return self.epoch_tokens / self.epoch_train_s if self.epoch_train_s > 0 else 0.0

    def _eta_s(self) -> float:
        """Seconds left for the remaining steps; unknown (NaN, shown as "-") until a second step is
        timed, since the session's first step also compiles kernels (up to a minute on a cold cache)."""
        n = self.session_steps
        if n < 2:
            return math.nan
        return (self.job.last_step - self.state.step) * self.later_steps_s / (n - 1)
