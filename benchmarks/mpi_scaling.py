"""Data-parallel training steps: one process with T threads vs ``mpirun -n N`` with T/N threads each.

    OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 NUMBA_NUM_THREADS=2 python benchmarks/mpi_scaling.py c
    mpirun -n 2 -x OMP_NUM_THREADS=1 -x OPENBLAS_NUM_THREADS=1 -x NUMBA_NUM_THREADS=1 \\
        python benchmarks/mpi_scaling.py c

Times the steps of ``scratchlm train`` itself (``Trainer._step``: each rank's forward and
backward on its B/N rows, the gradient all-reduce, clipping, AdamW) on random tokens of a
configuration from ``configs.py``, after warm-up steps. Rank 0 prints one JSON line: ms per
step and tokens/s (medians over the timed steps, global batch), the all-reduce's ms per
step inside the step (it includes waiting for the slowest rank) and its share of the step,
and the same all-reduce timed alone after a barrier (the transfer itself). The results and
how they were taken are in docs/scale-out.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import string
import tempfile
import time
from pathlib import Path

import numpy as np
from configs import CONFIGS, VOCAB_SIZE

from scratchlm.data.batches import epoch_order
from scratchlm.training import distributed
from scratchlm.training.job import TrainSettings, prepare
from scratchlm.training.loop import Trainer
from scratchlm.training.progress import Reporter

ALPHABET = (string.ascii_letters + string.digits + ".,;:!?' \n-()")[:VOCAB_SIZE]


def settings_for(key: str, data: Path, out: Path) -> TrainSettings:
    cfg = CONFIGS[key]
    return TrainSettings(
        data=str(data), output_dir=str(out), model_dim=cfg.d_model, num_heads=cfg.n_heads,
        num_layers=cfg.n_layers, max_seq_len=cfg.seq_len, dropout=0.0, epochs=1, max_steps=0,
        batch_size=cfg.batch, learning_rate=1e-3, weight_decay=0.1, warmup_steps=0, lr_schedule="constant",
        val_split=0.1, gradient_clip=1.0, grad_accum=1, eval_interval=0, patience=0, seed=0,
        tokenizer="char", pos_encoding="learned", norm="layernorm", keep_checkpoints=0, device="cpu")


def measure(key: str, warmup: int, steps: int) -> dict | None:
    group = distributed.current()
    cfg = CONFIGS[key]
    rng = np.random.default_rng(0)                                      # the same batches on every rank
    with tempfile.TemporaryDirectory() as tmp:                          # each rank writes the same text
        data = Path(tmp) / "random.txt"
        chars = rng.integers(0, len(ALPHABET), 4 * cfg.batch * (cfg.seq_len + 1))
        data.write_text(ALPHABET + "".join(ALPHABET[i] for i in chars), encoding="utf-8")
        job = prepare(settings_for(key, data, Path(tmp) / "out"))
    job.processes = group.size
    trainer = Trainer(job, Reporter(), group)
    order = epoch_order(len(job.train_ids), job.window, rng)             # the same windows on every rank
    n_batches = len(order) // cfg.batch
    times, comm = [], []
    for i in range(warmup + steps):
        first = (i % n_batches) * cfg.batch
        group.barrier()
        comm_before, start = group.comm_s, time.perf_counter()
        trainer._step(order, first, first + cfg.batch)                  # each rank gathers its rows
        times.append(time.perf_counter() - start)
        comm.append(group.comm_s - comm_before)
    times, comm = times[warmup:], comm[warmup:]
    alone = []
    for _ in range(steps):                                               # the all-reduce by itself
        group.barrier()
        before = group.comm_s
        group.allreduce_sum_(job.optimizer.flat_grads)
        alone.append(group.comm_s - before)
    if not group.is_main:
        return None
    step_s = statistics.median(times)
    return {
        "config": CONFIGS[key].describe(), "processes": group.size,
        "threads_per_process": int(os.environ.get("NUMBA_NUM_THREADS", "0")) or None,
        "params": job.model.num_parameters(), "step_ms": round(1e3 * step_s, 1),
        "tokens_per_s": round(cfg.tokens_per_step / step_s, 1),
        "allreduce_in_step_ms": round(1e3 * statistics.median(comm), 1),
        "allreduce_share": round(statistics.median(comm) / step_s, 3),
        "allreduce_alone_ms": round(1e3 * statistics.median(alone), 1),
        "step_ms_all": [round(1e3 * t, 1) for t in times], "load_average": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", choices=sorted(CONFIGS))
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    result = measure(args.config, args.warmup, args.steps)
    if result is not None:
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
