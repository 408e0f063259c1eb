"""pytest-benchmark suite for the kernels of attention, AdamW (step and gradient norm) and
the teaching matmul.

    NUMBA_NUM_THREADS=2 pytest benchmarks/bench_kernels_b.py
    pytest benchmarks/bench_kernels_b.py -k "attention and c" --benchmark-columns=median,ops

Every case is one kernel x one implementation (the NumPy reference, then each Numba
version) x one shape, float32, at the sizes of benchmark configuration a (tiny) and c
(good): attention on (batch, heads, seq, d_model / heads), and the packed attention of
attention_packed.py on the (batch, seq, 3 d_model) qkv; AdamW over all the model's
parameters; matmul as the fused qkv projection (batch * seq, d) @ (d, 3 d). Each kernel
runs once before timing, so Numba's compile (or cache load) is never timed.
``extra_info`` holds the median ms and either ``GFLOP_per_s`` (attention counts 2 D
flops per visible query-key pair per product, 2 products forward and 4 backward, 5 for
the packed backward, which recomputes q k^T; matmul
2 M N K) or ``GB_per_s`` (the bytes a kernel must read and write at least). The asserts
only check the work happened.
"""

from __future__ import annotations

import numpy as np
import pytest
from configs import CONFIGS, VOCAB_SIZE, kernel_versions

from scratchlm.kernels import adamw, attention, attention_packed, matmul

SHAPES = ("a", "c")
F32 = 4  # bytes
HYPER = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1)


def _parameter_counts(config):
    """(all parameters, the decayed ones: the matrices) of the benchmark GPT of ``config``."""
    d, layers = config.d_model, config.n_layers
    matrices = VOCAB_SIZE * d + config.seq_len * d + layers * 12 * d * d
    vectors = layers * 13 * d + 2 * d                   # biases and norm weights
    return matrices + vectors, matrices


# ---- cases: (arguments, work) where work is (flops, 0) or (0, bytes) -------------------
def attention_case(config, rng, backward):
    B, H, T = config.batch, config.n_heads, config.seq_len
    D = config.d_model // H
    q, k, v, dout = (rng.standard_normal((B, H, T, D)).astype(np.float32) for _ in range(4))
    flops = (4 if backward else 2) * 2 * D * B * H * T * (T + 1) // 2
    if not backward:
        return (q, k, v), (flops, 0)
    _, p = attention.attention_forward_reference(q, k, v)
    return (dout, q, k, v, p), (flops, 0)


def packed_attention_case(config, rng, backward):
    B, H, T, C = config.batch, config.n_heads, config.seq_len, config.d_model
    qkv, dout = (rng.standard_normal((B, T, n * C)).astype(np.float32) for n in (3, 1))
    flops = (5 if backward else 2) * 2 * (C // H) * B * H * T * (T + 1) // 2   # backward recomputes q k^T
    if not backward:
        return (qkv, H), (flops, 0)
    out, lse = attention_packed.packed_forward_reference(qkv, H)
    return (dout, qkv, out, lse, H), (flops, 0)


def adamw_case(config, rng):
    total, decayed = _parameter_counts(config)
    params, grads = (rng.standard_normal(total).astype(np.float32) for _ in range(2))
    m, v = np.zeros_like(params), np.zeros_like(params)
    args = (params, grads, m, v, 10, *HYPER.values(), decayed)
    return args, (0, 7 * total * F32)                   # read p g m v, write p m v


def grad_norm_case(config, rng):
    total, _ = _parameter_counts(config)
    return (rng.standard_normal(total).astype(np.float32),), (0, total * F32)


def matmul_case(config, rng):
    M, K, N = config.batch * config.seq_len, config.d_model, 3 * config.d_model
    a, b = rng.standard_normal((M, K)), rng.standard_normal((K, N))
    return (a.astype(np.float32), b.astype(np.float32)), (2 * M * N * K, 0)


# kernel name -> (its module, the name its versions share, the case builder)
KERNELS = {
    "attention_forward": (attention, "attention_forward",
                          lambda c, rng: attention_case(c, rng, backward=False)),
    "attention_backward": (attention, "attention_backward",
                           lambda c, rng: attention_case(c, rng, backward=True)),
    "attention_packed_forward": (attention_packed, "packed_forward",
                                 lambda c, rng: packed_attention_case(c, rng, backward=False)),
    "attention_packed_backward": (attention_packed, "packed_backward",
                                  lambda c, rng: packed_attention_case(c, rng, backward=True)),
    "adamw_step": (adamw, "adamw_step", adamw_case),
    "grad_norm": (adamw, "grad_norm", grad_norm_case),
    "matmul": (matmul, "matmul", matmul_case),
}
TOO_SLOW = {("matmul", "numba_v1", "c")}                # the textbook loop: ~1.5 s a call

CASES = [(kernel, impl, key) for kernel, (module, name, _) in KERNELS.items()
         for impl in kernel_versions(module, name) for key in SHAPES
         if (kernel, impl, key) not in TOO_SLOW]


@pytest.mark.parametrize("kernel, impl, key", CASES, ids=["-".join(case) for case in CASES])
def test_kernel(benchmark, kernel, impl, key):
    module, name, build = KERNELS[kernel]
    args, (flops, nbytes) = build(CONFIGS[key], np.random.default_rng(0))
    fn = kernel_versions(module, name)[impl]
    result = fn(*args)                                  # compile / warm up
    outputs = result if isinstance(result, tuple) else (args[0] if result is None else result,)
    assert all(np.all(np.isfinite(r)) for r in outputs)
    benchmark.group = f"{kernel}-{key}"
    benchmark(fn, *args)
    stats = getattr(benchmark.stats, "stats", None)     # None under --benchmark-disable
    if stats is not None and stats.median > 0:
        benchmark.extra_info["ms"] = round(stats.median * 1e3, 4)
        if flops:
            benchmark.extra_info["GFLOP_per_s"] = round(flops / stats.median / 1e9, 2)
        else:
            benchmark.extra_info["GB_per_s"] = round(nbytes / stats.median / 1e9, 2)
