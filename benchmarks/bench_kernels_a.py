"""pytest-benchmark suite for the kernels of layernorm, rmsnorm, GELU, bias, embedding and cross-entropy.

    NUMBA_NUM_THREADS=2 pytest benchmarks/bench_kernels_a.py
    pytest benchmarks/bench_kernels_a.py -k "gelu and c" --benchmark-columns=median,ops

Every case is one kernel direction x one implementation (the NumPy reference, then each
Numba version) x one shape, float32, at the sizes of benchmark configuration a (tiny)
and c (good): N = batch * seq rows of d_model features, GELU on (N, 4 d_model), logits
(N, 65). Each kernel runs once before timing, so Numba's compile (or cache load) is never
timed. ``extra_info["GB_per_s"]`` is the bandwidth reached: the bytes a kernel must read
and write at least, over the median time. The assert only checks the work happened.
"""

from __future__ import annotations

import numpy as np
import pytest
from configs import CONFIGS, VOCAB_SIZE, kernel_versions

from scratchlm.kernels import bias, cross_entropy, embedding, gelu, layernorm, rmsnorm

SHAPES = ("a", "c")
F32 = 4  # bytes


def _sizes(key):
    config = CONFIGS[key]
    return config.batch * config.seq_len, config.d_model                   # N, C


def layernorm_forward_case(n, c, rng):
    x, w, b = rng.standard_normal((n, c)), rng.standard_normal(c), rng.standard_normal(c)
    return (x, w, b), (2 * n * c + 2 * n + 2 * c) * F32


def layernorm_backward_case(n, c, rng):
    x, dy, w = rng.standard_normal((n, c)), rng.standard_normal((n, c)), rng.standard_normal(c)
    _, mean, rstd = layernorm.layernorm_forward_reference(x, w, np.zeros(c))
    return (dy, x, w, mean, rstd), (3 * n * c + 2 * n + 3 * c) * F32


def rmsnorm_forward_case(n, c, rng):
    return (rng.standard_normal((n, c)), rng.standard_normal(c)), (2 * n * c + n + c) * F32


def rmsnorm_backward_case(n, c, rng):
    x, dy, w = rng.standard_normal((n, c)), rng.standard_normal((n, c)), rng.standard_normal(c)
    _, rstd = rmsnorm.rmsnorm_forward_reference(x, w)
    return (dy, x, w, rstd), (3 * n * c + n + 2 * c) * F32


def gelu_forward_case(n, c, rng):
    return (rng.standard_normal((n, 4 * c)),), 2 * n * 4 * c * F32


def gelu_backward_case(n, c, rng):
    return (rng.standard_normal((n, 4 * c)), rng.standard_normal((n, 4 * c))), 3 * n * 4 * c * F32


def add_bias_case(n, c, rng):                                              # fc's (N, 4C) output
    return (rng.standard_normal((n, 4 * c)), rng.standard_normal(4 * c)), 2 * n * 4 * c * F32


def bias_grad_case(n, c, rng):
    return (rng.standard_normal((n, 4 * c)),), n * 4 * c * F32


def embedding_forward_case(n, c, rng):
    ids = rng.integers(0, VOCAB_SIZE, size=n)
    return (rng.standard_normal((VOCAB_SIZE, c)), ids), 2 * n * c * F32 + ids.nbytes


def embedding_backward_case(n, c, rng):
    ids = rng.integers(0, VOCAB_SIZE, size=n)
    return (rng.standard_normal((n, c)), ids, VOCAB_SIZE), (n + VOCAB_SIZE) * c * F32 + ids.nbytes


def cross_entropy_case(n, c, rng):
    targets = rng.integers(0, VOCAB_SIZE, size=n)
    logits = 3 * rng.standard_normal((n, VOCAB_SIZE))
    return (logits, targets), 2 * n * VOCAB_SIZE * F32 + targets.nbytes


# kernel name -> (its module, the case builder)
KERNELS = {
    "layernorm_forward": (layernorm, layernorm_forward_case),
    "layernorm_backward": (layernorm, layernorm_backward_case),
    "rmsnorm_forward": (rmsnorm, rmsnorm_forward_case),
    "rmsnorm_backward": (rmsnorm, rmsnorm_backward_case),
    "gelu_forward": (gelu, gelu_forward_case),
    "gelu_backward": (gelu, gelu_backward_case),
    "add_bias": (bias, add_bias_case),
    "bias_grad": (bias, bias_grad_case),
    "embedding_forward": (embedding, embedding_forward_case),
    "embedding_backward": (embedding, embedding_backward_case),
    "cross_entropy_forward": (cross_entropy, cross_entropy_case),
}


CASES = [(kernel, impl, key) for kernel, (module, _) in KERNELS.items()
         for impl in kernel_versions(module, kernel) for key in SHAPES]


def _float32(value):
    is_float64 = isinstance(value, np.ndarray) and value.dtype == np.float64
    return value.astype(np.float32) if is_float64 else value


@pytest.mark.parametrize("kernel, impl, key", CASES, ids=["-".join(case) for case in CASES])
def test_kernel(benchmark, kernel, impl, key):
    module, build = KERNELS[kernel]
    args, nbytes = build(*_sizes(key), np.random.default_rng(0))
    args = tuple(_float32(a) for a in args)
    fn = kernel_versions(module, kernel)[impl]
    result = fn(*args)                                                     # compile / warm up
    assert all(np.all(np.isfinite(r)) for r in (result if isinstance(result, tuple) else (result,)))
    benchmark.group = f"{kernel}-{key}"
    benchmark(fn, *args)
    benchmark.extra_info["bytes"] = nbytes
    stats = getattr(benchmark.stats, "stats", None)            # None under --benchmark-disable
    if stats is not None and stats.median > 0:
        benchmark.extra_info["GB_per_s"] = round(nbytes / stats.median / 1e9, 2)
        benchmark.extra_info["ms"] = round(stats.median * 1e3, 4)
