"""Dropout with a counter-based mask: zero each element with probability p, scale the rest.

Math, element-wise on x of any shape (flattened in C order, element i), with a 64-bit key:

    keep[i] = top 24 bits of mix(key + (i + 1) * G)  >=  round(p * 2^24)
    forward:   out[i] = x[i] / (1 - p)     where keep[i], else 0
    backward:  dx[i]  = dout[i] / (1 - p)  where keep[i], else 0   (the same map, same key)

``mix`` is splitmix64's finaliser (two xor-shift-multiply rounds and an xor-shift) and G is
its golden-ratio increment 0x9E3779B97F4A7C15: element i's number is the (i + 1)-th output
of a splitmix64 stream that starts at ``key``. The mask is a *function* of (key, i), not a
stream of draws, and that buys three things:

- Nothing is cached but the key and p: backward recomputes the mask instead of keeping it
  (a float mask per call was 4 MiB per dropout at config c, 13 of them per step).
- Every version and device computes the same mask, bit for bit: integer arithmetic that
  wraps modulo 2^64 is the same in NumPy, Numba and CUDA C, and the survivors get one
  multiply each. A run with dropout trains alike on the CPU and the GPU.
- On a GPU only the key travels, as a kernel argument: no mask is drawn on the host and
  copied over in each step.

The key is drawn from the model's host ``numpy.random.Generator`` (ops.DropoutOp, one draw
per call), whose state the checkpoints keep, so a resumed run draws the same keys.

Versions: 0 the NumPy reference (uint64 arrays, a few passes; CuPy arrays too); 1 Numba,
one fused pass over the cores; CUDA (CuPy arrays), one thread per element. Run
``python -m scratchlm.kernels.dropout`` to check and time them.
"""

from __future__ import annotations

import numpy as np

from ._cuda import STRIDE_THREADS, cupy_module, launch, stride_blocks
from ._lesson import Kernel, run_lesson
from .dispatch import use_cuda, use_numba
from .numba_tools import lazy_njit, prange

GOLDEN = np.uint64(0x9E3779B97F4A7C15)     # splitmix64's increment
MIX_1 = np.uint64(0xBF58476D1CE4E5B9)      # its finaliser's multipliers
MIX_2 = np.uint64(0x94D049BB133111EB)
KEEP_BITS = 24                             # p is resolved to 1 / 2^24


def threshold(p: float) -> int:
    """The integer a draw's top KEEP_BITS bits must reach for the element to be kept."""
    return int(round(p * (1 << KEEP_BITS)))


def scale_for(p: float, dtype) -> np.generic:
    """1 / (1 - p) in the array's dtype (one rounding, the same for every version)."""
    return np.dtype(dtype).type(1.0 / (1.0 - p))


# ---- version 0: the NumPy reference ------------------------------------------------
def keep_mask_reference(xp, n: int, p: float, key: int):
    """The (n,) boolean mask for ``key``: True where the element survives."""
    z = np.uint64(key) + xp.arange(1, n + 1, dtype=np.uint64) * GOLDEN          # (n,), wraps mod 2^64
    z = (z ^ (z >> np.uint64(30))) * MIX_1
    z = (z ^ (z >> np.uint64(27))) * MIX_2
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(64 - KEEP_BITS)) >= np.uint64(threshold(p))


def dropout_reference(x, p: float, key: int):
    """x (any shape) -> x / (1 - p) where kept, 0 elsewhere; the same shape and dtype."""
    from scratchlm.backend import get_array_module

    xp = get_array_module(x)
    keep = keep_mask_reference(xp, x.size, p, key).reshape(x.shape)
    return xp.where(keep, x * scale_for(p, x.dtype), x.dtype.type(0))


# ---- version 1: Numba, one fused pass -----------------------------------------------
# Better than the reference: one read of x and one write, the hash computed in registers,
# no (n,) uint64 temporaries (the reference makes several, 8 bytes per element each).
# Every constant and operand is uint64: Numba types uint64 mixed with int64 as float64.
@lazy_njit(parallel=True)
def _dropout_kernel(x, keep_from, scale, key, out):
    # x, out: flat (n,); keep_from: uint64 threshold; key: uint64
    for i in prange(x.size):
        z = key + np.uint64(i + 1) * GOLDEN
        z = (z ^ (z >> np.uint64(30))) * MIX_1
        z = (z ^ (z >> np.uint64(27))) * MIX_2
        z = z ^ (z >> np.uint64(31))
        if (z >> np.uint64(64 - KEEP_BITS)) >= keep_from:
            out[i] = x[i] * scale
        else:
            out[i] = 0


def dropout_v1(x, p: float, key: int):
    flat = np.ascontiguousarray(x).reshape(-1)                                 # (n,)
    out = np.empty_like(flat)                                                  # (n,)
    _dropout_kernel(flat, np.uint64(threshold(p)), scale_for(p, x.dtype), np.uint64(key), out)
    return out.reshape(x.shape)


# ---- CUDA version (CuPy arrays): one thread per element --------------------------------
# The same hash in unsigned 64-bit integers, which wrap in C exactly as in NumPy; each
# thread runs a grid-stride loop, as in gelu.py. The key arrives as a signed 64-bit
# argument (it is drawn below 2^63) and is read as unsigned.
DROPOUT_CUDA_SOURCE = f"""
#define KEEP_SHIFT {64 - KEEP_BITS}
""" + r"""
__device__ bool kept(unsigned long long key, long long i, unsigned long long keep_from) {
    unsigned long long z = key + (unsigned long long)(i + 1) * 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return (z >> KEEP_SHIFT) >= keep_from;
}

extern "C" __global__ void dropout(const real* x, long long n, long long keep_from, real scale,
                                   long long key, real* out) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        out[i] = kept((unsigned long long)key, i, (unsigned long long)keep_from) ? x[i] * scale : real(0);
}
"""


def dropout_cuda(x, p: float, key: int):
    cp = cupy_module()
    flat = cp.ascontiguousarray(x).reshape(-1)                                 # (n,)
    out = cp.empty_like(flat)                                                  # (n,)
    launch(DROPOUT_CUDA_SOURCE, "dropout", x.dtype, stride_blocks(flat.size), STRIDE_THREADS,
           (flat, np.int64(flat.size), np.int64(threshold(p)), scale_for(p, x.dtype), np.int64(key), out))
    return out.reshape(x.shape)


# ---- dispatch ----------------------------------------------------------------------
def dropout(x, p: float, key: int):
    """Forward and backward alike: ``dropout(x, p, key)`` then ``dropout(dout, p, key)``."""
    if not 0 <= key < 2**63:
        raise ValueError(f"a dropout key is drawn in [0, 2^63), got {key}")
    if not 0 <= p < 1:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    if x.dtype.kind != "f":                       # an integer gradient handed to backward
        x = x.astype(np.float64)
    compiled_ok = x.dtype in (np.float32, np.float64) and x.size > 0
    if use_cuda(x) and compiled_ok:
        return dropout_cuda(x, p, key)
    if use_numba(x) and compiled_ok:
        return dropout_v1(x, p, key)
    return dropout_reference(x, p, key)


# ---- the declaration: what __main__, the tests and the benchmarks read ------------------
KEY = 1234567891011                                        # any fixed key below 2^63


def example(dtype, rng, shape):
    """A residual stream x (B, T, C) at p = 0.1; dropout reads x and writes its output."""
    x = rng.standard_normal((shape.batch, shape.seq_len, shape.d_model)).astype(dtype)
    return (x, 0.1, KEY), 2 * x.nbytes


def show_the_mask_is_the_same_everywhere():
    """Every version keeps the same elements, bit for bit: a resumed run drops what the
    unbroken one would have."""
    from scratchlm.backend import to_numpy

    from ._lesson import SIZES, cuda_module

    (x, p, key), _ = example(np.float32, np.random.default_rng(0), SIZES["c"])
    want = dropout_reference(x, p, key)
    cp = cuda_module()
    versions = [(dropout_v1, np)] + ([(dropout_cuda, cp)] if cp is not None else [])
    for fn, xp in versions:
        assert np.array_equal(to_numpy(fn(xp.asarray(x), p, key)), want), f"{fn.__name__} differs"
    print(f"dropout p={p}: kept {np.count_nonzero(want) / want.size:.4f}, the same bits in every version")


KERNELS = (Kernel("dropout", dropout, {"reference": dropout_reference, "numba v1": dropout_v1,
                                        "cuda": dropout_cuda}, example),)


if __name__ == "__main__":
    run_lesson(KERNELS)
    show_the_mask_is_the_same_everywhere()
