"""Where does a scratchlm training step spend its time? cProfile, grouped by op.

    python benchmarks/profile_step.py --config c --steps 3
    python benchmarks/profile_step.py --config c --top 25     # also the hottest functions

Runs warm-up steps (so Numba compiles are not counted), then profiles ``--steps`` full
training steps and sums, per group of ops, the time spent inside their ``forward`` and
``backward`` (each op's arithmetic runs in ``kernels/`` under those two methods), plus
the optimizer's clip, AdamW step and zero_grad. Time a group spends calling another
group's function goes to the inner one (the GELU inside the fused FeedForward is gelu,
not GEMM). What is left is the autograd walk and Tensor wrapping.
"""

from __future__ import annotations

import argparse
import cProfile
import inspect
import os
import pstats
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import scratch_gpt
from configs import CONFIGS
from machine_load import OthersMeter

from scratchlm import optim
from scratchlm.autograd.function import Function
from scratchlm.autograd.ops import elementwise, shape, transformer
from scratchlm.kernels import gelu as gelu_kernels

# group -> the functions whose time (minus the time of other groups' functions they call) it gets
GROUPS = {
    "GEMMs (Linear, FeedForward fwd+bwd)": [(transformer, "Linear"), (transformer, "FeedForward")],
    "attention (fwd+bwd)": [(transformer, "CausalAttention"), (transformer, "CausalSelfAttention")],
    "gelu (fwd+bwd)": [(gelu_kernels, "gelu_forward"), (gelu_kernels, "gelu_backward")],
    "layernorm (fwd+bwd)": [(transformer, "LayerNorm")],
    "softmax-cross-entropy": [(transformer, "SoftmaxCrossEntropy")],
    "embeddings (fwd+bwd)": [(transformer, "Embedding")],
    "primitive ops (add, split, reshape, permute)": [(module, name) for module in (elementwise, shape)
                                                    for name, value in vars(module).items()
                                                    if isinstance(value, type) and issubclass(value, Function)
                                                    and value.__module__ == module.__name__],
    "AdamW step": [(optim.AdamW, "step")],
    "grad norm + clip": [(optim.AdamW, "clip_grad_norm")],
    "zero_grad": [(optim.AdamW, "zero_grad")],
}


def code_key(function) -> tuple[str, int, str]:
    """The (file, first line, name) key cProfile files ``function`` under."""
    code = inspect.unwrap(function).__code__
    return code.co_filename, code.co_firstlineno, code.co_name


def group_of_code() -> dict:
    """cProfile key -> group. A Function contributes its forward and backward; names missing
    from the engine (it changes) are skipped."""
    groups = {}
    for group, members in GROUPS.items():
        for owner, name in members:
            value = getattr(owner, name, None)
            if isinstance(value, type) and issubclass(value, Function):
                groups[code_key(value.forward)] = group
                groups[code_key(value.backward)] = group
            elif callable(value):
                groups[code_key(value)] = group
    return groups


def profile(key: str, steps: int, warmup: int):
    trainer = scratch_gpt.Trainer(CONFIGS[key])
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


def grouped(stats: pstats.Stats, steps: int) -> dict[str, float]:
    """Seconds per step in each group: cumulative time of its functions, less the time spent in
    other groups' functions they call (the GELU inside FeedForward counts as gelu, not GEMMs)."""
    groups = group_of_code()
    totals: dict[str, float] = {}
    for func, (_, _, _, cumulative, callers) in stats.stats.items():
        group = groups.get(func)
        if group is None:
            continue
        totals[group] = totals.get(group, 0.0) + cumulative / steps
        for caller, (_, _, _, nested) in callers.items():
            outer = groups.get(caller)
            if outer is not None and outer != group:
                totals[outer] -= nested / steps
    return totals


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="c", choices=sorted(CONFIGS))
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--top", type=int, default=0, help="also print the N functions with most own time")
    args = parser.parse_args(argv)
    stats, wall, others_busy = profile(args.config, args.steps, args.warmup)
    totals = grouped(stats, args.steps)
    profiled = stats.total_tt / args.steps
    totals["autograd walk, Tensor wrapping (the rest)"] = profiled - sum(totals.values())
    print(f"config {CONFIGS[args.config].describe()}: {1000 * wall:.1f} ms/step under the profiler "
          f"({args.steps} steps; other processes used {100 * others_busy:.0f}% of the CPUs meanwhile)")
    print("| where | ms/step | share |\n|---|---|---|")
    for group, seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"| {group} | {1000 * seconds:.1f} | {100 * seconds / profiled:.0f}% |")
    if args.top:
        stats.sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
