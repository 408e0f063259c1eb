"""Where a training step spends its time: cProfile's figures, grouped by op.

The grouping that ``train --profile`` writes to a run's ``profile.md`` and that
``benchmarks/profile_step.py`` prints: per group of ops, the time inside their
``forward`` and ``backward`` (each op's arithmetic runs in ``kernels/`` under those two
methods), plus the optimizer's clip, AdamW step and zero_grad. Time a group spends calling
another group's function goes to the inner one (the GELU inside the fused FeedForward is
gelu, not GEMM). What is left is the autograd walk and Tensor wrapping.
"""

from __future__ import annotations

import cProfile
import inspect
import pstats
import time
from contextlib import contextmanager

from scratchlm import optim
from scratchlm.autograd.function import Function
from scratchlm.autograd.ops import elementwise, shape, transformer
from scratchlm.kernels import gelu as gelu_kernels

REST = "autograd walk, Tensor wrapping (the rest)"
# group -> the functions whose time (minus the time of other groups' functions they call) it gets
GROUPS = {
    "GEMMs (Linear, FeedForward fwd+bwd)": [(transformer, "LinearOp"), (transformer, "FeedForwardOp")],
    "attention (fwd+bwd)": [(transformer, "SplitHeadsAttentionOp"), (transformer, "PackedAttentionOp"),
                            (transformer, "RopeOp")],
    "gelu (fwd+bwd)": [(transformer, "GELUOp"), (gelu_kernels, "gelu_forward"), (gelu_kernels, "gelu_backward"),
                       (gelu_kernels, "gelu_backward_recompute")],
    "norms (layernorm, rmsnorm fwd+bwd)": [(transformer, "LayerNormOp"), (transformer, "RMSNormOp")],
    "softmax-cross-entropy": [(transformer, "CrossEntropyOp")],
    "embeddings, dropout (fwd+bwd)": [(transformer, "EmbeddingOp"), (transformer, "DropoutOp")],
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


def grouped(stats: pstats.Stats, steps: int) -> dict[str, float]:
    """Seconds per step in each group, and the rest of the profiled time as ``REST``."""
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
    totals[REST] = stats.total_tt / steps - sum(totals.values())
    return totals


def markdown_table(totals: dict[str, float]) -> str:
    """The groups as a Markdown table, the largest first: ms per step and share of the step."""
    whole = sum(totals.values())
    lines = ["| where | ms/step | share |", "|---|---|---|"]
    lines += [f"| {group} | {1000 * seconds:.1f} | {100 * seconds / whole:.0f}% |"
              for group, seconds in sorted(totals.items(), key=lambda kv: -kv[1])]
    return "\n".join(lines)


class StepProfiler:
    """Profiles steps ``warmup + 1`` to ``warmup + steps`` of a run (the first ones compile kernels)."""

    def __init__(self, warmup: int = 2, steps: int = 3):
        self.warmup, self.steps = warmup, steps
        self.profiler, self.seen, self.profiled, self.wall_s = cProfile.Profile(), 0, 0, 0.0

    @contextmanager
    def step(self):
        self.seen += 1
        if not self.warmup < self.seen <= self.warmup + self.steps:
            yield
            return
        start = time.perf_counter()
        self.profiler.enable()
        try:
            yield
        finally:
            self.profiler.disable()
            self.wall_s += time.perf_counter() - start
            self.profiled += 1

    def report(self) -> str:
        """A heading line and the table (or why there is none)."""
        if not self.profiled:
            return (f"No profile: the run made {self.seen} step(s), and the profile needs more than "
                    f"{self.warmup} warm-up steps (raise --epochs or --max-steps).")
        totals = grouped(pstats.Stats(self.profiler), self.profiled)
        return (f"Where a training step's time goes ({self.profiled} steps after {self.warmup} warm-up steps, "
                f"{1000 * self.wall_s / self.profiled:.1f} ms/step under the profiler):\n\n" + markdown_table(totals))
