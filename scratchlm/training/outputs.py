"""The files a training run writes beside its checkpoints, and the numbers in them.

- ``config.yaml``: every setting (the keys ``--config`` reads back) plus a ``run`` section
  recording the data, vocabulary, parameter count, fixed optimizer constants and versions;
- ``metrics.jsonl``: one JSON record per evaluation;
- ``training_log.txt``: a table with one row per epoch and, at the end, the best epoch,
  the final perplexity and the total time;
- ``loss_curve.svg``: train and validation loss against optimizer steps, written by hand.

Bits per character = val loss (nats per token) / ln 2 x tokens per character. With the
char tokenizer a token is a character (the factor is 1); with the byte tokenizer the factor
is the validation split's bytes per UTF-8 character (bytes that are not 0b10xxxxxx
continuation bytes start a character). Every file is rewritten whole and renamed into
place, so a crash never leaves half of one.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
from pathlib import Path

import numpy as np

from scratchlm import __version__
from scratchlm.checkpoint import drop_optimizer_state, saved_step, sync_folder, write_atomically
from scratchlm.model import perplexity

SPARK = "▁▂▃▄▅▆▇█"


def format_duration(seconds) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def sparkline(values) -> str:
    """One block character per value, low to high."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return ""
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    return "".join(SPARK[min(int((v - lo) / span * (len(SPARK) - 1) + 0.5), len(SPARK) - 1)] for v in values)


def link_or_copy(src: Path, dst: Path) -> None:
    """Make ``dst`` hold the same bytes as ``src`` (a hard link when the file system allows), atomically."""
    tmp = dst.with_name(f".{dst.name}.link.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    sync_folder(dst.parent)


def prune_checkpoints(output_dir: Path, epoch: int, keep: int) -> None:
    """Delete epoch checkpoints older than the newest ``keep`` (never final_model.pt)."""
    if keep <= 0:
        return
    for path in output_dir.glob("checkpoint_epoch_*.pt"):
        number = path.stem.rsplit("_", 1)[-1]
        if number.isdigit() and int(number) <= epoch - keep:
            path.unlink(missing_ok=True)


def slim_older_checkpoints(output_dir: Path, epoch: int) -> None:
    """Drop AdamW's moments from the epoch checkpoints before ``epoch``: each keeps its weights (to
    generate from, evaluate, compare), and the newest alone keeps the full state to resume from
    exactly, so a many-epoch run takes about a third of the disk (docs/tutorial.md, step 3).
    ``final_model.pt``, ``interrupted.pt`` and step checkpoints are left whole."""
    for path in output_dir.glob("checkpoint_epoch_*.pt"):
        number = path.stem.rsplit("_", 1)[-1]
        if number.isdigit() and int(number) < epoch:
            drop_optimizer_state(path)


def remove_passed_interruption(output_dir: Path, step: int) -> bool:
    """Delete ``interrupted.pt`` once a run has finished past the step it was saved at (a resumed run
    that ended); True if it was there and went."""
    path = output_dir / "interrupted.pt"
    saved = saved_step(path) if path.exists() else None
    if saved is None or saved > step:
        return False
    path.unlink()
    sync_folder(output_dir)
    return True


def bits_per_char(job, loss: float) -> float:
    return loss / math.log(2) * job.tokens_per_char


# ---- records -------------------------------------------------------------------------------
def scored_val_tokens(job) -> int:
    """How many validation tokens each periodic evaluation predicts (all, or --eval-tokens' sample)."""
    from scratchlm.data.batches import scored_tokens

    return scored_tokens(len(job.val_ids), job.window, job.settings.eval_tokens)


def validation_summary(job) -> str:
    """Where the validation text comes from and how much of it each evaluation scores."""
    s, n = job.settings, len(job.val_ids)
    source = f"{s.validation_data}" if s.validation_data else f"the last {s.val_split:g} of DATA"
    from scratchlm.data.batches import predicted_tokens

    scored = scored_val_tokens(job)
    share = "all scored" if scored == predicted_tokens(n, job.window) else \
        f"a fixed sample of {scored:,} scored per evaluation (--eval-tokens)"
    return f"{source}: {n:,} tokens, {share}"


def data_label(info: dict) -> str:
    """'a.txt', or '12 files (a.txt, b.txt, c.txt and 9 more)'."""
    files = info.get("files", 1)
    return info["path"] if files == 1 else f"{files} files ({info['path']})"


def run_facts(job) -> dict:
    """What the configuration panel shows ("panel") and what config.yaml records ("run")."""
    from scratchlm.training.job import ADAM_BETAS, ADAM_EPS, MIN_LR_RATIO

    s, cfg, info = job.settings, job.model.config, job.data_info
    params = job.model.num_parameters()
    panel = {
        "Model": f"Transformer (GPT, pre-{cfg.norm}, {cfg.pos_encoding} positions)",
        "Parameters": f"{params:,}",
        "Hidden dim": cfg.d_model,
        "Layers": cfg.n_layers,
        "Attention heads": cfg.n_heads,
        "Context": f"{cfg.max_seq_len} tokens",
        "Vocabulary": f"{cfg.vocab_size} ({job.tokenizer.kind})",
        "Data": f"{data_label(info)}: {info['characters']:,} characters "
                f"({info['train_tokens']:,} train / {info['val_tokens']:,} val tokens)",
        "Validation": validation_summary(job),
        **({"Tokens": job.cache_note} if job.cache_note else {}),
        "Steps per epoch": f"{job.steps_per_epoch:,} (batch {s.batch_size})" if job.processes == 1 else
                           f"{job.steps_per_epoch:,} (batch {s.batch_size} = {job.processes} MPI processes x "
                           f"{s.batch_size // job.processes})",
        "Epochs": s.epochs,
        **learning_rate_change(job),
        **({"Optimizer": f"AdamW's moments start again from zero: {job.resumed_from} keeps the weights only "
                         "(the newest epoch checkpoint resumes exactly)"} if job.fresh_moments else {}),
        "Device": job.device,
        "Precision": precision_summary(job),
        "Output": str(job.output_dir),
    }
    run = {
        "data_files": info.get("files", 1), "data_sources": info["path"],
        "data_characters": info["characters"], "train_tokens": info["train_tokens"], "val_tokens": info["val_tokens"],
        "vocab_size": cfg.vocab_size, "parameters": params, "steps_per_epoch": job.steps_per_epoch,
        "schedule_steps": job.schedule_steps, "device_used": job.device, "processes": job.processes,
        "adam_betas": list(ADAM_BETAS), "adam_eps": ADAM_EPS, "min_lr_ratio": MIN_LR_RATIO,
        "val_tokens_per_char": round(job.tokens_per_char, 6),
        "validation": info.get("validation", {"tail_of_data": s.val_split}),
        "val_tokens_scored_per_eval": scored_val_tokens(job),
        "versions": {"scratchlm": __version__, "numpy": np.__version__, "python": platform.python_version()},
    }
    return {"panel": panel, "run": run}


def learning_rate_change(job) -> dict:
    """A "Learning rate" panel row when a resumed run's schedule moved (more --epochs stretch the
    cosine, so the rate at the resumed step jumps back up); else nothing."""
    from scratchlm.optim import lr_at
    from scratchlm.training.job import MIN_LR_RATIO

    s, before, step = job.settings, job.resumed_settings, job.state.step
    keys = ("epochs", "learning_rate", "lr_schedule", "warmup_steps")
    if not before or any(key not in before for key in keys) or all(before[k] == getattr(s, k) for k in keys):
        return {}
    old = lr_at(step, before["learning_rate"], before["lr_schedule"], before["warmup_steps"],
                before["epochs"] * job.steps_per_epoch, MIN_LR_RATIO)
    new = lr_at(step, s.learning_rate, s.lr_schedule, s.warmup_steps, job.schedule_steps, MIN_LR_RATIO)
    if math.isclose(old, new, rel_tol=1e-9):
        return {}
    why = (f"the schedule now spans {s.epochs} epochs, not {before['epochs']}" if before["epochs"] != s.epochs
           else "the schedule's settings changed")
    return {"Learning rate": f"{'raised' if new > old else 'lowered'} at step {step}, {old:.3g} -> {new:.3g}: {why}"}


def write_config(job) -> None:
    import yaml

    values = job.settings.hyperparameters()
    values["resumed_from"] = job.resumed_from
    values["run"] = run_facts(job)["run"]
    header = ("# Settings of a scratchlm training run. Train again with them:\n"
              "#   scratchlm train DATA --config config.yaml   (options on the command line win)\n"
              "# The 'run' section and 'resumed_from' are a record and are ignored when read back.\n")
    write_atomically(job.output_dir / "config.yaml", header + yaml.safe_dump(values, sort_keys=False))


def eval_record(job, epoch: int, end_of_epoch: bool, val: float, best: bool, lr: float,
                tokens_per_s: float, epoch_time_s: float) -> dict:
    state = job.state
    return {
        "step": state.step, "epoch": epoch, "end_of_epoch": end_of_epoch,
        "train_loss": state.epoch_loss_sum / max(state.epoch_loss_steps, 1),
        "val_loss": val, "val_perplexity": perplexity(val), "val_bits_per_char": bits_per_char(job, val),
        "lr": lr, "tokens_per_s": round(tokens_per_s, 1), "epoch_time_s": round(epoch_time_s, 3),
        "elapsed_s": round(state.elapsed_s, 3), "best": best,
    }


def summary(job, reason: str) -> dict:
    state, best = job.state, job.state.best_val_loss
    return {
        "reason": reason, "epochs_done": state.epochs_done, "epochs": job.settings.epochs, "steps": state.step,
        "best_epoch": state.best_epoch, "best_step": state.best_step, "val_loss": best,
        "perplexity": None if best is None else perplexity(best),
        "bits_per_char": None if best is None else bits_per_char(job, best),
        "total_time_s": state.elapsed_s, "output_dir": str(job.output_dir),
        "final_model": str(job.output_dir / "final_model.pt"),
    }


# ---- the report files ----------------------------------------------------------------------
def write_reports(job, final: dict | None = None) -> None:
    """Rewrite metrics.jsonl, training_log.txt and loss_curve.svg from the run's history."""
    history = job.state.history
    write_atomically(job.output_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
    write_atomically(job.output_dir / "training_log.txt", training_log(job, final))
    write_atomically(job.output_dir / "loss_curve.svg",
                      loss_curve_svg(job.state.curve, [(r["step"], r["val_loss"]) for r in history]))


def precision_summary(job) -> str:
    """fp32, or bf16 with the CPU units its products run on, or why a bf16 run fell back to fp32."""
    if job.precision_note:
        return job.precision_note
    if job.settings.precision == "bf16":
        from scratchlm.kernels.bf16 import cpu_bf16_units
        from scratchlm.kernels.vendor_gemm import bf16_product, describe

        return f"bf16 products ({describe(bf16_product())}, {'/'.join(cpu_bf16_units())}), fp32 weights"
    return "fp32"


def training_log(job, final: dict | None) -> str:
    s, cfg, info = job.settings, job.model.config, job.data_info
    per_char = ("one token is one character" if job.tokenizer.kind == "char"
                else f"x {job.tokens_per_char:.4f} bytes per character of the validation text")
    lines = [
        "scratchlm training log",
        f"data: {data_label(info)} ({info['characters']:,} characters; {info['train_tokens']:,} train and "
        f"{info['val_tokens']:,} validation tokens)",
        *([f"tokens: {job.cache_note}"] if job.cache_note else []),
        f"model: {job.model.num_parameters():,} parameters; d_model {cfg.d_model}, {cfg.n_layers} layers, "
        f"{cfg.n_heads} heads, context {cfg.max_seq_len}, vocabulary {cfg.vocab_size} ({job.tokenizer.kind})",
        f"training: {s.epochs} epochs x {job.steps_per_epoch} steps, batch {s.batch_size}, AdamW lr {s.learning_rate:g} "
        f"({s.lr_schedule}, {s.warmup_steps} warm-up steps), seed {s.seed}, device {job.device}"
        + (f", {job.processes} MPI processes" if job.processes > 1 else ""),
        f"precision: {precision_summary(job)}",
        f"val bits/char = val loss / ln 2 ({per_char})",
        "",
        f"{'epoch':>5} {'step':>7} {'train_loss':>10} {'val_loss':>9} {'val_ppl':>9} {'val_bpc':>8} "
        f"{'lr':>9} {'tokens/s':>10} {'epoch_time':>10}",
    ]
    for r in job.state.history:
        if r["end_of_epoch"]:
            lines.append(f"{r['epoch']:>5} {r['step']:>7} {r['train_loss']:>10.4f} {r['val_loss']:>9.4f} "
                         f"{r['val_perplexity']:>9.2f} {r['val_bits_per_char']:>8.3f} {r['lr']:>9.2e} "
                         f"{r['tokens_per_s']:>10,.0f} {format_duration(r['epoch_time_s']):>10}")
    if final and final["val_loss"] is not None:
        lines += [
            "",
            f"best epoch: {final['best_epoch']} (step {final['best_step']}), val loss {final['val_loss']:.4f}",
            f"final perplexity: {final['perplexity']:.2f} (final_model.pt; val bits/char {final['bits_per_char']:.3f})",
            f"total time: {format_duration(final['total_time_s'])}",
            f"stopped: {final['reason']} after {final['epochs_done']} epochs, {final['steps']} steps",
        ]
    return "\n".join(lines) + "\n"


def loss_curve_svg(train_points, val_points, width: int = 640, height: int = 400) -> str:
    """An SVG line chart of train loss (blue) and val loss (orange, dots) against steps."""
    left, right, top, bottom = 64, 20, 36, 48
    points = [p for p in list(train_points) + list(val_points) if math.isfinite(p[1])]
    max_step = max([p[0] for p in points] + [1])
    lo = min((p[1] for p in points), default=0.0)
    hi = max((p[1] for p in points), default=1.0)
    pad = (hi - lo) * 0.05 or 0.5
    lo, hi = lo - pad, hi + pad

    def x(step):
        return left + (width - left - right) * step / max_step

    def y(loss):
        return top + (height - top - bottom) * (hi - loss) / (hi - lo)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="15">Loss</text>']
    for i in range(6):
        loss, step = lo + (hi - lo) * i / 5, round(max_step * i / 5)
        out.append(f'<line x1="{left}" y1="{y(loss):.1f}" x2="{width - right}" y2="{y(loss):.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{left - 6}" y="{y(loss) + 4:.1f}" text-anchor="end">{loss:.2f}</text>')
        out.append(f'<text x="{x(step):.1f}" y="{height - bottom + 18}" text-anchor="middle">{step}</text>')
    out.append(f'<polyline points="{left},{top} {left},{height - bottom} {width - right},{height - bottom}" '
               'fill="none" stroke="black"/>')
    out.append(f'<text x="{width / 2}" y="{height - 8}" text-anchor="middle">optimizer step</text>')
    for name, series, color in (("train", train_points, "#1f77b4"), ("validation", val_points, "#ff7f0e")):
        good = [(s, v) for s, v in series if math.isfinite(v)]
        if good:
            coords = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in good)
            out.append(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="2"/>')
        if name == "validation":
            out += [f'<circle cx="{x(s):.1f}" cy="{y(v):.1f}" r="3" fill="{color}"/>' for s, v in good]
    for i, (name, color) in enumerate((("train loss", "#1f77b4"), ("val loss", "#ff7f0e"))):
        ly = top + 8 + 18 * i
        out.append(f'<line x1="{width - right - 110}" y1="{ly}" x2="{width - right - 90}" y2="{ly}" '
                   f'stroke="{color}" stroke-width="2"/>')
        out.append(f'<text x="{width - right - 84}" y="{ly + 4}">{name}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
