"""Where does a scratchlm training step spend its time? cProfile, grouped by op.

    python benchmarks/profile_step.py --config c --steps 3
    python benchmarks/profile_step.py --config c --top 25     # also the hottest functions
    python benchmarks/profile_step.py --config d --precision bf16

Runs warm-up steps (so Numba compiles are not counted), then profiles ``--steps`` full
training steps and prints the grouping of ``scratchlm.training.profile`` (the table
``scratchlm train --profile`` writes): per group of ops, the time inside their ``forward``
and ``backward``, the optimizer's parts, and the autograd walk as the rest.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import scratch_gpt
from configs import CONFIGS
from machine_load import OthersMeter

from scratchlm.training.profile import grouped, markdown_table


def profile(key: str, steps: int, warmup: int, precision: str = "fp32"):
    trainer = scratch_gpt.Trainer(CONFIGS[key], precision=precision)
    for _ in range(warmup):
        trainer.step()
    profiler, others = cProfile.Profile(), OthersMeter()
    others.start()
    start = time.perf_counter()
    profiler.enable()
    for _ in range(steps):
        trainer.step()
    profiler.disable()
    wall = (time.perf_counter() - start) / steps
    return pstats.Stats(profiler), wall, others.stop()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="c", choices=sorted(CONFIGS))
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--top", type=int, default=0, help="also print the N functions with most own time")
    args = parser.parse_args(argv)
    stats, wall, others_busy = profile(args.config, args.steps, args.warmup, args.precision)
    print(f"config {CONFIGS[args.config].describe()}, {args.precision}: {1000 * wall:.1f} ms/step under the profiler "
          f"({args.steps} steps; other processes used {100 * others_busy:.0f}% of the CPUs meanwhile)")
    print(markdown_table(grouped(stats, args.steps)))
    if args.top:
        stats.sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
