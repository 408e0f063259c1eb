"""pytest-benchmark suite for every kernel version that a kernel file declares.

    NUMBA_NUM_THREADS=2 pytest benchmarks/bench_kernels.py
    pytest benchmarks/bench_kernels.py -k "gelu_forward and c" --benchmark-columns=median,ops

One case per kernel x version (the NumPy reference, then each compiled version this machine
can run) x size, in float32, at the sizes of benchmark configurations a (tiny) and c (good).
The kernels, their versions, their example inputs and the work one call does all come from
the files' ``KERNELS`` declarations (``kernels/_lesson.py``), the same ones that their
``__main__`` and ``tests/kernels/test_declarations.py`` read, so a new version is timed as
soon as it is declared. Each version runs once before timing, so Numba's compile (or cache
load) is never timed. ``extra_info`` holds the median ms and the rate over the declared work:
``GB_per_s`` (the bytes a kernel must read and write at least) or ``GFLOP_per_s``. The
timings are for reading and comparing; the correctness checks are in the tests.
"""

from __future__ import annotations

import numpy as np
import pytest

from scratchlm.kernels import _lesson

SIZES = ("a", "c")
RATE_NAMES = {"GB/s": "GB_per_s", "GFLOP/s": "GFLOP_per_s"}
TOO_SLOW = {("matmul", "numba v1 (i-j-k)", "c")}            # the textbook loop: seconds a call
CASES = [pytest.param(kernel, version, size, id=f"{kernel.name}-{version.split(' (')[0].replace(' ', '_')}-{size}")
         for _, kernel in _lesson.declared_kernels()
         for version in ("reference", *kernel.compiled_versions(np.float32)) for size in SIZES
         if (kernel.name, version, size) not in TOO_SLOW]


@pytest.mark.parametrize("kernel, version, size", CASES)
def test_kernel(benchmark, kernel, version, size):
    args, work = kernel.example(np.float32, np.random.default_rng(0), _lesson.SIZES[size])
    fn = kernel.versions[version]
    fn(*_lesson.fresh(args))                                  # compile / load the cache
    benchmark.group = f"{kernel.name}-{size}"
    # in-place kernels (AdamW, the buffers, add_bias) change their arguments: every round
    # starts from the same inputs, copied outside the timed call
    benchmark.pedantic(fn, setup=lambda: (_lesson.fresh(args), {}), rounds=_rounds(size), warmup_rounds=1)
    stats = getattr(benchmark.stats, "stats", None)            # None under --benchmark-disable
    if stats is not None and stats.median > 0:
        benchmark.extra_info["ms"] = round(stats.median * 1e3, 4)
        benchmark.extra_info[RATE_NAMES[kernel.unit]] = round(work / stats.median / 1e9, 2)


def _rounds(size):
    return 30 if size == "a" else 10
