"""What a training run shows while it runs: rich panels and bars, or plain lines, or nothing.

``train`` calls a reporter's methods and never prints. ``Reporter`` does nothing (for
library use and tests); ``ConsoleReporter`` draws a rich "Training Configuration" panel,
a progress bar per epoch (loss, val loss, tokens/s, ETA) on a terminal, and plain
progress lines every few seconds when stdout is a file or a pipe (where a bar would
only appear once, at the end); ``QuietReporter`` prints one line at the end.
"""

from __future__ import annotations

import sys
import time

from scratchlm.training.outputs import format_duration, sparkline

PLAIN_EVERY_S = 5.0
LIVE_EVERY_S = 0.25
TOKENIZE_SHOWN_FROM = 32 << 20    # bytes of DATA: smaller inputs tokenize in well under a second
STOP_REASONS = {
    "max-steps": "Reached --max-steps",
    "early-stop": "Early stopping: the val loss did not improve for --patience evaluations",
}
STOP_OPTIONS = {"max-steps": "--max-steps", "early-stop": "--patience"}


class Reporter:
    """The reporter interface; every method does nothing."""

    def tokenizing(self, done_bytes: int, total_bytes: int) -> None: ...
    def start(self, facts: dict, resumed_from: str | None, step: int) -> None: ...
    def epoch_start(self, epoch: int, epochs: int, steps: int, done: int) -> None: ...
    def step(self, done: int, loss, val_loss, tokens_per_s: float, eta_s: float) -> None: ...
    def evaluated(self, record: dict) -> None: ...
    def epoch_end(self, record: dict, checkpoint) -> None: ...
    def stopped(self, reason: str, checkpoint) -> None: ...
    def finish(self, summary: dict, val_losses: list) -> None: ...
    def close(self) -> None: ...


def make_reporter(quiet: bool = False, plain: bool = False, first_step_note: str | None = None) -> Reporter:
    """``plain``: no colours or live bars even on a terminal (under mpirun, whose ranks always
    write to a pseudo-terminal, even when mpirun's own output goes to a file). ``first_step_note``:
    a line shown before the first step (that kernels are being compiled)."""
    if quiet:
        return QuietReporter()
    if plain:
        from rich.console import Console

        return ConsoleReporter(Console(force_terminal=False), first_step_note)
    return ConsoleReporter(first_step_note=first_step_note)


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def final_line(summary: dict) -> str:
    if summary.get("val_loss") is None:
        return f"no evaluation was made; outputs in {summary['output_dir']}"
    return (f"{summary['final_model']}: val loss {summary['val_loss']:.4f}, perplexity {summary['perplexity']:.2f}, "
            f"bits/char {summary['bits_per_char']:.3f} (best epoch {summary['best_epoch']}, "
            f"{format_duration(summary['total_time_s'])})")


class QuietReporter(Reporter):
    def finish(self, summary: dict, val_losses: list) -> None:
        print(final_line(summary), flush=True)


class ConsoleReporter(Reporter):
    def __init__(self, console=None, first_step_note: str | None = None):
        from rich.console import Console

        self.console = console or Console()
        self.first_step_note = first_step_note
        self.live = self.console.is_terminal
        self.progress = self.task = None
        self.epoch_label, self.steps, self.next_line_at = "", 1, 0.0
        self.tokenize_started: float | None = None

    def tokenizing(self, done_bytes: int, total_bytes: int) -> None:
        """A line (a live one on a terminal) with MB/s and the ETA while a big DATA is tokenized."""
        if total_bytes < TOKENIZE_SHOWN_FROM:
            return
        now = time.monotonic()
        if self.tokenize_started is None:
            self.tokenize_started, self.next_line_at = now, now
        if now < self.next_line_at and done_bytes < total_bytes:
            return
        self.next_line_at = now + (LIVE_EVERY_S if self.live else PLAIN_EVERY_S)
        rate = done_bytes / max(now - self.tokenize_started, 1e-9)
        line = (f"Tokenizing: {done_bytes / 1e6:,.0f} of {total_bytes / 1e6:,.0f} MB | {rate / 1e6:,.0f} MB/s | "
                f"ETA: {format_duration((total_bytes - done_bytes) / rate) if done_bytes else '-'}")
        if self.live:            # one line, rewritten in place
            self.console.print(line.ljust(72), end="\r" if done_bytes < total_bytes else "\n", highlight=False)
        elif done_bytes:
            self._print(line)

    def start(self, facts: dict, resumed_from: str | None, step: int) -> None:
        from rich.panel import Panel
        from rich.table import Table
        from rich.text import Text

        grid = Table.grid(padding=(0, 1))
        for name, value in facts["panel"].items():
            grid.add_row(f"{name}:", Text(str(value)))     # as written: "[bf16]" or a path is no markup
        self.console.print(Panel(grid, title="Training Configuration", expand=False))
        if resumed_from:
            self.console.print(f"Resuming from {resumed_from} at step {step}", markup=False)

    def epoch_start(self, epoch: int, epochs: int, steps: int, done: int) -> None:
        self.epoch_label, self.steps = f"Epoch {epoch}/{epochs}", steps
        self.console.print()
        self.console.print(self.epoch_label, style="bold", highlight=False)
        if self.first_step_note:
            self._print(self.first_step_note)
            self.first_step_note = None
        self.next_line_at = time.monotonic() + PLAIN_EVERY_S
        if not self.live:
            return
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

        self.progress = Progress(
            BarColumn(bar_width=20), TaskProgressColumn(),
            TextColumn("| Loss: {task.fields[loss]} | Val Loss: {task.fields[val]} | {task.fields[tps]} tok/s "
                       "| ETA: {task.fields[eta]}"),
            console=self.console, refresh_per_second=4)
        self.task = self.progress.add_task(self.epoch_label, total=steps, completed=done, loss="-", val="-",
                                           tps="-", eta="-")
        self.progress.start()

    def step(self, done: int, loss, val_loss, tokens_per_s: float, eta_s: float) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=done, loss=_fmt(loss), val=_fmt(val_loss),
                                 tps=f"{tokens_per_s:,.0f}", eta=format_duration(eta_s))
        elif not self.live and time.monotonic() >= self.next_line_at:
            self.next_line_at = time.monotonic() + PLAIN_EVERY_S
            self._print(f"  step {done}/{self.steps} ({100 * done // self.steps}%) | Loss: {_fmt(loss)} | "
                        f"Val Loss: {_fmt(val_loss)} | {tokens_per_s:,.0f} tok/s | ETA: {format_duration(eta_s)}")

    def evaluated(self, record: dict) -> None:
        if self.progress is not None:
            self.progress.update(self.task, val=_fmt(record["val_loss"]))
        if not record["end_of_epoch"]:
            self._print(f"  step {record['step']}: val loss {record['val_loss']:.4f}"
                        f"{' (best so far)' if record['best'] else ''}")

    def epoch_end(self, record: dict, checkpoint) -> None:
        self._stop_bar()
        self._print(f"  train loss {record['train_loss']:.4f} | val loss {record['val_loss']:.4f} | "
                    f"perplexity {record['val_perplexity']:.2f} | {record['tokens_per_s']:,.0f} tok/s | "
                    f"{format_duration(record['epoch_time_s'])}")
        self._print(f"Checkpoint saved: {checkpoint}")

    def stopped(self, reason: str, checkpoint) -> None:
        self._stop_bar()
        self._print(STOP_REASONS.get(reason, reason))
        self._print(f"Checkpoint saved: {checkpoint}")

    def finish(self, summary: dict, val_losses: list) -> None:
        from rich.panel import Panel
        from rich.table import Table
        from rich.text import Text

        self._stop_bar()
        if summary.get("val_loss") is None:
            self._print(final_line(summary))
            return
        grid = Table.grid(padding=(0, 1))
        rows = {
            "Best epoch": f"{summary['best_epoch']} (step {summary['best_step']})",
            "Trained": f"{summary['epochs_done']} of {summary['epochs']} epochs, {summary['steps']} steps"
                       + (f" (stopped by {STOP_OPTIONS[summary['reason']]})" if summary["reason"] in STOP_OPTIONS else ""),
            "Val loss": f"{summary['val_loss']:.4f}",
            "Perplexity": f"{summary['perplexity']:.2f}",
            "Bits/char": f"{summary['bits_per_char']:.3f}",
            "Time": format_duration(summary["total_time_s"]),
            "Val loss curve": f"{sparkline(val_losses)}  {val_losses[0]:.3f} -> {val_losses[-1]:.3f}",
            "Final model": summary["final_model"],
        }
        for name, value in rows.items():
            grid.add_row(f"{name}:", Text(value))
        self.console.print()
        self.console.print(Panel(grid, title="Training Complete", expand=False))

    def close(self) -> None:
        self._stop_bar()

    def _stop_bar(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def _print(self, line: str) -> None:
        self.console.print(line, highlight=False, markup=False, soft_wrap=True)
        if not self.live:
            sys.stdout.flush()
