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

What the engine uses. A vendor's bf16 gemm (bf16 a and b, float32 c): MKL's
``cblas_gemm_bf16bf16f32`` on Intel CPUs, where it picks AMX or AVX512-BF16, and oneDNN's
``dnnl_gemm_bf16bf16f32`` on AMD ones, where MKL does not use the bf16 units and oneDNN does
(``vendor_gemm.py`` chooses). Intel's ``mkl`` and ``onednn-cpu-gomp`` wheels ship them
(``pip install 'scratchlm[bf16]'``: an optional extra, never part of the default install).
``matmul`` below calls the product the way ``blas.py`` calls OpenBLAS: as a Numba external
function running on the calling thread, with the rows of the result cut into one block per
Numba thread. At config c's shapes on 2 cores it reaches ~1,000-1,500 GFLOP/s on a Xeon with
AMX (MKL) and ~900 on an EPYC Zen 5 with AVX512-BF16 (oneDNN), against ~250-500 for float32.

Versions of the rounding: 0 the NumPy reference (the bit trick on uint32 views); 1 Numba,
the same trick over the cores. Of the product: 0 NumPy on the bf16 values widened back to
float32; 1 the vendor's gemm on Numba's threads. ``available()`` says whether the product can
run here: a CPU with bf16 units (AMX-BF16 or AVX512-BF16, read from the CPU at run time),
Numba, and MKL or oneDNN; ``unavailable_reason()`` says why not in one line.
"""

from __future__ import annotations

import functools

import numpy as np

from ._lesson import Kernel, run_lesson
from .blas import NO_TRANS, ROW_MAJOR, TRANS, _as_operand
from .dispatch import use_numba
from .numba_tools import chunk_bounds, lazy_njit, prange, thread_count
from .vendor_gemm import ExternalProduct, bf16_product, cpu_features, describe, why_no_bf16_product

ROUND_BIAS = 0x7FFF          # just under half of the 16 bits that rounding drops
QUIET_NAN = 0x0040           # the top mantissa bit of a bf16: set, a NaN stays a NaN


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


# ---- the CPU's bf16 units, and the library's product called from compiled code -----------
@functools.cache
def cpu_bf16_units() -> tuple[str, ...]:
    """This CPU's bf16 multiply units ("AMX-BF16", "AVX512-BF16"), read at run time; () for none."""
    named = {"amx-bf16": "AMX-BF16", "avx512bf16": "AVX512-BF16"}
    return tuple(label for key, label in named.items() if cpu_features().get(key))


def unavailable_reason() -> str | None:
    """None when bf16 products can run here, else what is missing and how to get it, in one line."""
    from .dispatch import numba_available

    if not cpu_bf16_units():
        return "this CPU has no bf16 matrix units (AMX-BF16 or AVX512-BF16)"
    if not numba_available():
        return "Numba is not installed"
    if bf16_product() is None:
        return why_no_bf16_product()
    return None


def available() -> bool:
    return unavailable_reason() is None


gemm_bf16bf16f32 = ExternalProduct(bf16_product)       # MKL's or oneDNN's: vendor_gemm.py


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


# blas.py's row split with the bf16 gemm. Not one kernel for both: compiled code links every
# external function it names, and float32 training must compile where no bf16 gemm is installed.
@lazy_njit(parallel=True)
def _matmul_rows_kernel(c, a, trans_a, b, trans_b, blocks):
    # c (M, N) float32 = op(a) op(b); block p of c's rows is one gemm call on its own thread
    for p in prange(blocks):
        r0, r1 = chunk_bounds(p, c.shape[0], blocks)
        if r0 < r1:
            if trans_a:                                  # op(a) = a^T: its rows are a's columns
                gemm(a[:, r0:r1], True, b, trans_b, c[r0:r1])
            else:
                gemm(a[r0:r1], False, b, trans_b, c[r0:r1])


# ---- the product: version 1 (the vendor's gemm on Numba's threads) and the dispatcher -----------------
def matmul_v1(a, b):
    """a (M, K) @ b (K, N) bf16 -> float32 (M, N): the vendor's gemm, c's rows cut into one block per thread."""
    (a_op, trans_a), (b_op, trans_b) = _as_operand(a), _as_operand(b)
    c = np.empty((a.shape[0], b.shape[1]), dtype=np.float32)                  # (M, N)
    _matmul_rows_kernel.dispatcher()(c, a_op, trans_a, b_op, trans_b, thread_count())
    return c


def matmul(a, b):
    """a (M, K) @ b (K, N) for bf16 bits (uint16 NumPy arrays, transposed views read in place)
    -> float32 (M, N), accumulated in float32. MKL or oneDNN where ``available()``, NumPy otherwise."""
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


NEEDS_PRODUCT = {"numba v1": available}
KERNELS = (
    Kernel("round_to_bf16", round_to_bf16,
           {"reference": round_to_bf16_reference, "numba v1": round_to_bf16_v1}, example_rounding,
           results=as_numbers, float32_only=frozenset({"numba v1"})),
    Kernel("matmul_bf16", matmul, {"reference": matmul_reference, "numba v1": matmul_v1}, example_product,
           unit="GFLOP/s", float32_only=frozenset({"numba v1"}), requires=NEEDS_PRODUCT),
)


if __name__ == "__main__":
    reason = unavailable_reason()
    product = bf16_product()
    print(f"bf16 products: {describe(product) + ' ' + product.path if reason is None else 'unavailable: ' + reason}")
    run_lesson(KERNELS)
