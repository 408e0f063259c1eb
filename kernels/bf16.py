"""bfloat16: half the bytes of float32, the same range, and matrix units that multiply it fast.

The format. A float32 is 1 sign bit, 8 exponent bits and 23 mantissa bits. A bfloat16 is
the top half of it: 1 sign bit, the SAME 8 exponent bits, and the top 7 mantissa bits.

    float32   s eeeeeeee mmmmmmmmmmmmmmmmmmmmmmm      ~7 significant decimal digits
    bfloat16  s eeeeeeee mmmmmmm                      ~3 (a relative step of 2^-8 = 0.4%)

So converting back is exact and free (shift the 16 bits left: ``bf16_to_float32``), and
converting to bf16 is a rounding of the low 16 bits away.

Round to nearest, ties to even. Dropping the low half would always round towards zero (a
bias that adds up over a sum of thousands of terms). Instead add 0x7FFF, plus one more
when the bit that will become the last kept bit is 1, and then drop the low half: below
halfway rounds down, above rounds up, and exactly halfway rounds to the neighbour whose
last bit is 0. A carry out of the mantissa lands in the exponent, which is right (1.11..1
x 2^e rounds up to 1.0 x 2^(e+1)); the largest float32s round up to infinity, as they
should. NaN is the one case the trick gets wrong (its mantissa can carry into the sign),
so a NaN keeps its top half with the "quiet" bit set.

Why no loss scaling. float16 has 5 exponent bits: numbers below 6e-5 lose precision and
below 6e-8 become 0, so fp16 training multiplies the loss by a large factor to keep small
gradients alive. bf16 keeps float32's exponent (down to 1e-38), so a gradient that
float32 can hold, bf16 can hold to 3 digits: no scaling, no overflow checks.

Why it is fast. Intel's AMX units (Sapphire Rapids and later) multiply 16x32 tiles of
bf16 into 16x16 float32 tiles: ~16x the float32 operations per cycle of AVX-512 FMA.
AVX512-BF16 (Zen 4, Cooper Lake and later) has VDPBF16PS, a dot product of bf16 pairs
into float32 lanes: 2x the FMA rate. The product of two bf16 numbers (8-bit mantissas)
is exact in float32 (24 bits), and the sums are float32: only the inputs are rounded.

What the engine uses. MKL's ``cblas_gemm_bf16bf16f32`` (bf16 a and b, float32 c) picks
AMX, AVX512-BF16 or an emulation from the CPU it runs on; Intel's ``mkl`` wheel ships it
(``pip install 'scratchlm[bf16]'``: an optional extra under Intel's Simplified Software
License, never part of the default install). ``matmul`` below calls it the way
``blas.py`` calls OpenBLAS: as a Numba external function, MKL set to run sequentially,
with the rows of the result cut into one block per Numba thread. At config c's shapes on
a 2-core Xeon with AMX it reaches ~1,000-1,500 GFLOP/s, against ~300 for float32 gemm.

Versions of the rounding: 0 the NumPy reference (the bit trick on uint32 views); 1 Numba,
the same trick over the cores. Of the product: 0 NumPy on the bf16 values widened back to
float32; 1 MKL on Numba's threads. ``available()`` says whether the product can run here:
a CPU with bf16 units (AMX-BF16 or AVX512-BF16, read from the CPU at run time), Numba,
and MKL's library; ``unavailable_reason()`` says why not in one line.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os
import sys

import numpy as np

from ._lesson import Kernel, run_lesson
from .blas import NO_TRANS, ROW_MAJOR, TRANS, _as_operand
from .dispatch import use_numba
from .numba_tools import chunk_bounds, lazy_njit, prange, thread_count

ROUND_BIAS = 0x7FFF          # just under half of the 16 bits that rounding drops
QUIET_NAN = 0x0040           # the top mantissa bit of a bf16: set, a NaN stays a NaN
MKL_LP64, MKL_SEQUENTIAL = 0, 1                           # MKL_Set_Interface_Layer / _Threading_Layer


# ---- the format and the product: NumPy references --------------------------------------
def round_to_bf16_reference(x):
    """float32 x (...) -> its bf16 bits as uint16 (...), rounded to nearest, ties to even."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    last_kept = (bits >> 16) & 1
    rounded = ((bits + (ROUND_BIAS + last_kept)) >> 16).astype(np.uint16)   # wraps only for NaNs
    nan = np.isnan(x)
    rounded[nan] = ((bits[nan] >> 16) | QUIET_NAN).astype(np.uint16)
    return rounded


def bf16_to_float32(h):
    """bf16 bits (uint16) (...) -> the float32 numbers they are (...), exactly."""
    return (np.asarray(h, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def matmul_reference(a, b):
    """a (M, K) @ b (K, N), both bf16 bits (uint16) -> float32 (M, N), in float32 arithmetic."""
    return bf16_to_float32(a) @ bf16_to_float32(b)


# ---- rounding, version 1: Numba over the cores ------------------------------------------
@lazy_njit(inline="always")
def bf16_bits(value):
    """One number -> the bf16 bits of its float32 (the reference's trick on one value). Kernels
    that make a product's operand call it as they write each value (gelu.py's fused MLP)."""
    b = np.float32(value).view(np.uint32)
    rounded = np.uint32((b + np.uint32(ROUND_BIAS + ((b >> 16) & 1))) >> 16)
    kept_nan = np.uint32((b >> 16) | QUIET_NAN)         # both uint32, so the select stays integer
    # a select, not a branch, so that loops calling this vectorise
    return np.uint16(kept_nan if (b & 0x7FFFFFFF) > 0x7F800000 else rounded)


@lazy_njit(parallel=True)
def _round_kernel(x, out):
    # x (n,) float32; out (n,) uint16
    for i in prange(x.shape[0]):
        out[i] = bf16_bits(x[i])


def round_to_bf16_v1(x):
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty(x.shape, dtype=np.uint16)                # (...)
    _round_kernel(x.reshape(-1), out.reshape(-1))
    return out


def round_to_bf16(x):
    """float32 x (...) -> bf16 bits (...) uint16: the operand a bf16 product reads."""
    if use_numba(x) and x.size >= 1024:
        return round_to_bf16_v1(x)
    return round_to_bf16_reference(x)


# ---- MKL: finding it, and calling it from compiled code ----------------------------------
@functools.cache
def cpu_bf16_units() -> tuple[str, ...]:
    """This CPU's bf16 multiply units ("AMX-BF16", "AVX512-BF16"), read at run time; () for none."""
    try:
        import llvmlite.binding

        features = llvmlite.binding.get_host_cpu_features()
        named = {"amx-bf16": "AMX-BF16", "avx512bf16": "AVX512-BF16"}
        return tuple(label for key, label in named.items() if features.get(key))
    except Exception:                                       # no llvmlite (no Numba): no product anyway
        return ()


def _candidate_libraries() -> list[str]:
    """MKL's runtime library: the ``mkl`` wheel's copy (in the environment's lib/), else the system's."""
    found = []
    for root in dict.fromkeys((sys.prefix, sys.base_prefix)):
        found += sorted(glob.glob(os.path.join(root, "lib", "libmkl_rt.so*")), reverse=True)
        found += sorted(glob.glob(os.path.join(root, "Library", "bin", "mkl_rt*.dll")))
    import ctypes.util

    system = ctypes.util.find_library("mkl_rt")
    return found + ([system] if system else [])


@functools.cache
def find_mkl():
    """(path, ctypes library) of MKL, set to LP64 integers and sequential threading; None if absent."""
    for path in _candidate_libraries():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        if not hasattr(lib, "cblas_gemm_bf16bf16f32"):
            continue
        # Before any other MKL call: 32-bit integers, and no threads of MKL's own (Numba's
        # threads each call it on a block of rows, as blas.py does with OpenBLAS).
        if lib.MKL_Set_Interface_Layer(MKL_LP64) != MKL_LP64:
            continue                                        # set up already, with 64-bit integers
        if lib.MKL_Set_Threading_Layer(MKL_SEQUENTIAL) != MKL_SEQUENTIAL:
            lib.MKL_Set_Num_Threads(1)                      # threaded already: one thread per call
        return path, lib
    return None


def unavailable_reason() -> str | None:
    """None when bf16 products can run here, else what is missing and how to get it, in one line."""
    from .dispatch import numba_available

    if not cpu_bf16_units():
        return "this CPU has no bf16 matrix units (AMX-BF16 or AVX512-BF16)"
    if not numba_available():
        return "Numba is not installed"
    if find_mkl() is None:
        return "MKL is not installed (pip install 'scratchlm[bf16]' adds Intel's mkl wheel)"
    return None


def available() -> bool:
    return unavailable_reason() is None


class _ExternalBf16Gemm:
    """MKL's ``cblas_gemm_bf16bf16f32``: a Numba ExternalFunction when compiled, ctypes as Python."""

    name = "cblas_gemm_bf16bf16f32"

    def numba_external(self):
        import llvmlite.binding
        from numba import types

        path, _ = find_mkl()
        llvmlite.binding.load_library_permanently(path)     # so the JIT's linker resolves the name
        i32 = types.int32
        return types.ExternalFunction(self.name, types.void(
            i32, i32, i32, i32, i32, i32, types.float32, types.voidptr, i32,
            types.voidptr, i32, types.float32, types.voidptr, i32))

    def __call__(self, *args):
        function = getattr(find_mkl()[1], self.name)
        i32, pointer = ctypes.c_int32, ctypes.c_void_p
        function.argtypes = [i32, i32, i32, i32, i32, i32, ctypes.c_float, pointer, i32,
                             pointer, i32, ctypes.c_float, pointer, i32]
        function.restype = None
        function(*args)


gemm_bf16bf16f32 = _ExternalBf16Gemm()


@lazy_njit(inline="always")
def gemm(a, trans_a, b, trans_b, c):
    """c (m, n) float32 = op(a) op(b); a and b bf16 bits (uint16), columns contiguous."""
    m, n = c.shape
    k = a.shape[0] if trans_a else a.shape[1]
    op_a = TRANS if trans_a else NO_TRANS
    op_b = TRANS if trans_b else NO_TRANS
    lda, ldb, ldc = a.strides[0] // 2, b.strides[0] // 2, c.strides[0] // 4   # row distances
    gemm_bf16bf16f32(ROW_MAJOR, op_a, op_b, m, n, k, 1.0, a.ctypes.data, lda,
                     b.ctypes.data, ldb, 0.0, c.ctypes.data, ldc)


# blas.py's row split with MKL's gemm. Not one kernel for both: compiled code links every
# external function it names, and float32 training must compile where MKL is not installed.
@lazy_njit(parallel=True)
def _matmul_rows_kernel(c, a, trans_a, b, trans_b, blocks):
    # c (M, N) float32 = op(a) op(b); block p of c's rows is one MKL call on its own thread
    for p in prange(blocks):
        r0, r1 = chunk_bounds(p, c.shape[0], blocks)
        if r0 < r1:
            if trans_a:                                  # op(a) = a^T: its rows are a's columns
                gemm(a[:, r0:r1], True, b, trans_b, c[r0:r1])
            else:
                gemm(a[r0:r1], False, b, trans_b, c[r0:r1])


# ---- the product: version 1 (MKL on Numba's threads) and the dispatcher -----------------
def matmul_v1(a, b):
    """a (M, K) @ b (K, N) bf16 -> float32 (M, N): MKL, c's rows cut into one block per thread."""
    (a_op, trans_a), (b_op, trans_b) = _as_operand(a), _as_operand(b)
    c = np.empty((a.shape[0], b.shape[1]), dtype=np.float32)                  # (M, N)
    _matmul_rows_kernel.dispatcher()(c, a_op, trans_a, b_op, trans_b, thread_count())
    return c


def matmul(a, b):
    """a (M, K) @ b (K, N) for bf16 bits (uint16 NumPy arrays, transposed views read in place)
    -> float32 (M, N), accumulated in float32. MKL where ``available()``, NumPy otherwise."""
    if not (a.dtype == b.dtype == np.uint16 and a.ndim == b.ndim == 2):
        raise TypeError(f"matmul takes 2-D bf16 bits (uint16), got {a.dtype} {a.shape} and {b.dtype} {b.shape}")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not fit")
    if use_numba(a, b) and a.size and b.size and available():
        return matmul_v1(a, b)
    return matmul_reference(a, b)


# ---- the declaration: what __main__, the tests and the benchmarks read ------------------
def example_rounding(dtype, rng, shape):
    """The MLP's hidden activations (N, 4C), in float32 whatever ``dtype``: read 4 bytes, write 2."""
    x = rng.standard_normal((shape.rows, 4 * shape.d_model)).astype(np.float32)
    return (x,), 6 * x.size


def example_product(dtype, rng, shape):
    """x @ w.T at the MLP's fc, in bf16: x (N, C), w (4C, C) read through its transpose."""
    x = round_to_bf16_reference(rng.standard_normal((shape.rows, shape.d_model)))
    w = round_to_bf16_reference(rng.standard_normal((4 * shape.d_model, shape.d_model)))
    return (x, w.T), 2 * shape.rows * shape.d_model * 4 * shape.d_model


def as_numbers(args, returned):
    """What to compare: bf16 bits as the numbers they are (a one-step error then shows as 0.4%)."""
    return bf16_to_float32(returned) if returned.dtype == np.uint16 else returned


NEEDS_MKL = {"numba v1": available}
KERNELS = (
    Kernel("round_to_bf16", round_to_bf16,
           {"reference": round_to_bf16_reference, "numba v1": round_to_bf16_v1}, example_rounding,
           results=as_numbers, float32_only=frozenset({"numba v1"})),
    Kernel("matmul_bf16", matmul, {"reference": matmul_reference, "numba v1": matmul_v1}, example_product,
           unit="GFLOP/s", float32_only=frozenset({"numba v1"}), requires=NEEDS_MKL),
)


if __name__ == "__main__":
    reason = unavailable_reason()
    print(f"bf16 products: {'MKL ' + find_mkl()[0] if reason is None else 'unavailable: ' + reason}")
    run_lesson(KERNELS)
