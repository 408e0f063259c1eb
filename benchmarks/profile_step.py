"""Where does a scratchlm training step spend its time? cProfile, grouped by op.

    python benchmarks/profile_step.py --config c --steps 3
    python benchmarks/profile_step.py --config c --top 25     # also the hottest functions

Runs warm-up steps (so Numba compiles are not counted), then profiles ``--steps`` full
training steps and sums, per fused op, the time spent inside its ``forward`` and its
``backward`` (each op's arithmetic runs in ``kernels/`` under those two methods), plus
the optimizer's clip, AdamW step and zero_grad. What is left of the step is the
autograd walk, Tensor wrapping and the cheap primitive ops (add, reshape, permute).
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

import scratch_gpt  # noqa: E402
from configs import CONFIGS  # noqa: E402

from scratchlm import optim  # noqa: E402
from scratchlm.function import Function  # noqa: E402
from scratchlm.ops import transformer  # noqa: E402

# fused op (a Function in scratchlm.ops.transformer) -> the group it is reported under
OP_GROUPS = {
    "Linear": "GEMMs (Linear fwd+bwd)",
    "CausalAttention": "attention (fwd+bwd)",
    "LayerNorm": "layernorm (fwd+bwd)",
    "GELU": "gelu (fwd+bwd)",
    "SoftmaxCrossEntropy": "softmax-cross-entropy",
    "Embedding": "embeddings (fwd+bwd)",
}
OPTIMIZER_GROUPS = {"step": "AdamW step", "clip_grad_norm": "grad norm + clip", "zero_grad": "zero_grad"}


def code_keys(function) -> tuple[str, int, str]:
    """The (file, first line, name) key cProfile files ``function`` under."""
    code = inspect.unwrap(function).__code__
    return code.co_filename, code.co_firstlineno, code.co_name


def group_of_code() -> dict:
    groups = {}
    for name, group in OP_GROUPS.items():
        op = getattr(transformer, name)
        assert issubclass(op, Function)
        groups[code_keys(op.forward)] = group
        groups[code_keys(op.backward)] = group
    for name, group in OPTIMIZER_GROUPS.items():
        groups[code_keys(getattr(optim.AdamW, name))] = group
    return groups


def profile(key: str, steps: int, warmup: int):
    trainer = scratch_gpt.Trainer(CONFIGS[key])
    for _ in range(warmup):
        trainer.step()
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    for _ in range(steps):
        trainer.step()
    profiler.disable()
    wall = (time.perf_counter() - start) / steps
    return pstats.Stats(profiler), wall


def grouped(stats: pstats.Stats, steps: int) -> dict[str, float]:
    """Seconds per step in each group (cumulative time of its forward/backward or method)."""
    groups = group_of_code()
    totals: dict[str, float] = {}
    for func, (_, _, _, cumulative, _) in stats.stats.items():
        group = groups.get(func)
        if group is not None:
            totals[group] = totals.get(group, 0.0) + cumulative / steps
    return totals


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="c", choices=sorted(CONFIGS))
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--top", type=int, default=0, help="also print the N functions with most own time")
    args = parser.parse_args(argv)
    stats, wall = profile(args.config, args.steps, args.warmup)
    totals = grouped(stats, args.steps)
    profiled = stats.total_tt / args.steps
    totals["autograd walk, Tensor wrapping, primitive ops (the rest)"] = profiled - sum(totals.values())
    print(f"config {CONFIGS[args.config].describe()}: {1000 * wall:.1f} ms/step under the profiler "
          f"({args.steps} steps, load {os.getloadavg()[0]:.2f})")
    print("| where | ms/step | share |\n|---|---|---|")
    for group, seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"| {group} | {1000 * seconds:.1f} | {100 * seconds / profiled:.0f}% |")
    if args.top:
        stats.sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
