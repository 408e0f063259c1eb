"""End-to-end pytest-benchmark suite: training steps, cached generation, CLI start-up.

    OMP_NUM_THREADS=2 NUMBA_NUM_THREADS=2 pytest benchmarks/bench_end_to_end.py -m "not slow"
    pytest benchmarks/bench_end_to_end.py -k "train and c" --benchmark-save=train_c

- ``test_train_step[a..d]``: one full scratchlm training step (forward, backward,
  clip 1.0, AdamW) per round for each configuration of ``configs.py``; warm-up rounds
  run first, so Numba's compile (or cache load) is never timed. ``extra_info`` holds
  tokens/s. Config d is marked ``slow``.
- ``test_generate[a|c-decode|greedy_decode]``: batch-1 greedy generation of 200 tokens with a
  KV cache, by the product's decoder and by a plain loop over ``GPT.forward``.
- ``test_cli_help``: wall time of ``scratchlm --help`` in a fresh process (target < 0.3 s).

The asserts check that the work really happened (a finite loss, 200 valid ids); the
timings are never asserted. The PyTorch comparison is ``compare_torch.py``.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import scratch_gpt
from configs import CONFIGS, CPU_CONFIGS, GENERATE_CONFIGS, GENERATE_CONTEXT, GENERATE_TOKENS, VOCAB_SIZE

TRAIN_ROUNDS = {"a": 20, "b": 20, "c": 5, "d": 3}


def record_throughput(benchmark, tokens: int) -> None:
    """Put tokens/s (from the median round) into the saved benchmark's extra_info."""
    benchmark.extra_info["tokens_per_round"] = tokens
    stats = getattr(benchmark.stats, "stats", None)  # None under --benchmark-disable
    if stats is not None and stats.median > 0:
        benchmark.extra_info["tokens_per_s"] = round(tokens / stats.median, 1)


@pytest.mark.parametrize("key", [pytest.param(k, marks=[pytest.mark.slow] if k == "d" else [])
                                 for k in CPU_CONFIGS])
def test_train_step(benchmark, key):
    config = CONFIGS[key]
    trainer = scratch_gpt.Trainer(config)
    loss = benchmark.pedantic(trainer.step, rounds=TRAIN_ROUNDS[key], warmup_rounds=2, iterations=1)
    assert math.isfinite(loss) and loss > 0
    benchmark.extra_info["config"] = config.describe()
    record_throughput(benchmark, config.tokens_per_step)


@pytest.mark.parametrize("decoder", ["decode", "greedy_decode"])
@pytest.mark.parametrize("key", GENERATE_CONFIGS)
def test_generate(benchmark, key, decoder):
    """``decode``: the product's Decoder; ``greedy_decode``: a loop over GPT.forward with caches."""
    model = scratch_gpt.build_decoder(CONFIGS[key], GENERATE_CONTEXT)
    run = getattr(scratch_gpt, decoder)
    ids = benchmark.pedantic(run, args=(model, [0], GENERATE_TOKENS), rounds=3, warmup_rounds=1, iterations=1)
    assert len(ids) == GENERATE_TOKENS and all(0 <= i < VOCAB_SIZE for i in ids)
    benchmark.extra_info["config"] = CONFIGS[key].describe()
    benchmark.extra_info["decoder"] = run.__doc__.splitlines()[0]
    record_throughput(benchmark, GENERATE_TOKENS)


def test_cli_help(benchmark):
    script = Path(sys.executable).with_name("scratchlm")
    command = [str(script), "--help"] if script.exists() else [sys.executable, "-m", "scratchlm", "--help"]

    def run_help():
        return subprocess.run(command, capture_output=True, text=True)

    done = benchmark.pedantic(run_help, rounds=10, warmup_rounds=1, iterations=1)
    assert done.returncode == 0 and "Usage:" in done.stdout
    benchmark.extra_info["command"] = " ".join(command)
