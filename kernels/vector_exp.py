"""exp(x) written with + * and a bit-cast only, so a Numba loop that calls it vectorises.

Why: this machine's Numba has no SVML (Intel's vector maths library), so ``math.exp`` in
a compiled loop is one scalar libm call per element and LLVM cannot use SIMD: several
times slower per element than NumPy's own vector ``np.exp``. This version is plain
arithmetic that LLVM turns into vector code, about as fast as ``np.exp`` per element, and
unlike ``np.exp`` it runs inside a fused ``prange`` loop. Used by attention's softmax.

Math (Cody and Waite's range reduction, as every libm does it):

    n = round(x / ln 2)                   so x = n ln 2 + r with |r| <= ln(2) / 2
    r = x - n ln2_hi - n ln2_lo           ln 2 split in two so n ln2_hi is exact
    exp(r) = sum_{i<=11} r^i / i!         Taylor; the first left-out term is < 1e-14
    exp(x) = exp(r) 2^n                   2^n built from its bits: exponent field n + 1023

Accuracy against float64 ``np.exp`` (measured): float32 within 1e-7 relative (about one
ulp), float64 within 1e-14 relative. Below x = -708.4 it returns exactly 0 (where float64
exp goes subnormal, and float32 exp is 0 already below -104); -inf gives 0 and NaN gives
NaN, as exp does. It is meant for x <= 709 (softmax feeds it x - max(x) <= 0).

``exp_float32`` is the same recipe cut to float32's needs, and runs twice the lanes:

    n = round(x / ln 2) as an int32;  2^n from float32's exponent field (n + 127) << 23
    exp(r) = sum_{i<=7} r^i / i!       the first left-out term is < 6e-9, under float32's ulp

``exp_vectorisable`` builds 2^n as a float64 from an int64, so even on float32 input its
loop runs 8 lanes of 64 bits; here every step is 32-bit, 16 lanes per AVX-512 register,
with 8 terms instead of 12 (faster, and within 1e-7 relative of float64 ``np.exp``, as the
other). Below x = -86.98, where float32's
exp nears the end of the normal numbers (1.2e-38), it returns 0; above 88.7228, where it
overflows, inf. In between 2^n runs from 2^-125 to 2^128, one past float32's largest power
of two, so the polynomial makes 2 exp(r) (its coefficients doubled, which is exact) and the
bits make 2^(n-1). (The overflow end costs a little speed; without it, answers above 88.4
are garbage, and softmax never goes there, but other callers might.)

``exp_for(a, x)`` picks the version for the dtype of array ``a``: ``a.itemsize`` is a
constant of the compiled code, so the test costs nothing and the other branch is compiled
away.
"""

from __future__ import annotations

import math

import numpy as np

from ._lesson import Kernel, run_lesson
from .numba_tools import lazy_njit, prange

LOG2_E = 1.0 / math.log(2.0)
LN2_HI = 0.693145751953125          # ln 2 rounded to 16 significant bits: n * LN2_HI is exact
LN2_LO = 1.428606820309417e-06      # ln 2 - LN2_HI
EXP_FLOOR = -708.396                # exp(EXP_FLOOR) = 2.2260e-308 is still a normal float64
C = tuple(1.0 / math.factorial(i) for i in range(12))    # Taylor coefficients 1 / i!
LN2_HI_32 = 0.693359375             # ln 2 in 9 significant bits: n * LN2_HI_32 is exact in float32
LN2_LO_32 = -2.12194440e-4          # ln 2 - LN2_HI_32
EXP_FLOOR_32 = -86.98               # exp(EXP_FLOOR_32) = 1.8e-38, and 2^(n-1) is still a normal float32
EXP_CEILING_32 = 88.7228            # above it exp overflows float32: the answer is inf


@lazy_njit(fastmath={"contract"}, inline="always")
def exp_vectorisable(x):
    """exp(x) for one float32 or float64 number, computed in that dtype."""
    real = type(x)
    y = max(x, real(EXP_FLOOR))                              # keeps 2^n a normal number
    n = int(math.floor(y * real(LOG2_E) + real(0.5)))       # round to nearest
    r = y - real(n) * real(LN2_HI) - real(n) * real(LN2_LO)  # |r| <= ln(2) / 2
    poly = real(C[11])                                       # Horner, all constants x's dtype
    poly = poly * r + real(C[10])
    poly = poly * r + real(C[9])
    poly = poly * r + real(C[8])
    poly = poly * r + real(C[7])
    poly = poly * r + real(C[6])
    poly = poly * r + real(C[5])
    poly = poly * r + real(C[4])
    poly = poly * r + real(C[3])
    poly = poly * r + real(C[2])
    poly = poly * r + real(C[1])
    poly = poly * r + real(C[0])
    two_to_n = np.int64((n + 1023) << 52).view(np.float64)  # 2^n from its exponent bits
    if x > real(EXP_FLOOR):
        return poly * real(two_to_n)
    return x if x != x else real(0.0)                        # NaN stays NaN; -inf gives 0


@lazy_njit(fastmath={"contract"}, inline="always")
def exp_float32(x):
    """exp(x) for one float32 number, in 32-bit steps only (so 16 SIMD lanes)."""
    f32 = np.float32
    y = min(max(x, f32(EXP_FLOOR_32)), f32(EXP_CEILING_32))  # keeps 2^(n-1) a normal number
    n = np.int32(math.floor(y * f32(LOG2_E) + f32(0.5)))    # round to nearest, -125 .. 128
    r = y - f32(n) * f32(LN2_HI_32) - f32(n) * f32(LN2_LO_32)   # |r| <= ln(2) / 2
    poly = f32(2 * C[7])                                     # Horner for 2 exp(r): the 2 is exact
    poly = poly * r + f32(2 * C[6])
    poly = poly * r + f32(2 * C[5])
    poly = poly * r + f32(2 * C[4])
    poly = poly * r + f32(2 * C[3])
    poly = poly * r + f32(2 * C[2])
    poly = poly * r + f32(2 * C[1])
    poly = poly * r + f32(2 * C[0])
    half_two_to_n = np.int32((n + np.int32(126)) << np.int32(23)).view(np.float32)   # 2^(n-1) from its bits
    if f32(EXP_FLOOR_32) < x <= f32(EXP_CEILING_32):
        return poly * half_two_to_n                          # 2 exp(r) 2^(n-1)
    if x > f32(EXP_CEILING_32):
        return f32(np.inf)                                   # overflow, as exp; +inf too
    return x if x != x else f32(0.0)                         # NaN stays NaN; -inf gives 0


@lazy_njit(inline="always")
def exp_for(a, x):
    """exp(x) for an element x of array a, by the version for a's dtype."""
    if a.itemsize == 4:                                      # a compile-time constant
        return exp_float32(x)
    return exp_vectorisable(x)


# ---- the lesson's loops: exp over a whole array, each element by one version ------------------
def exp_reference(x):
    """x (n,) -> exp(x): NumPy's own vector exp."""
    return np.exp(x)


@lazy_njit(parallel=True)
def _exp_loop_v1(x, out):
    for i in prange(x.shape[0]):
        out[i] = exp_vectorisable(x[i])


@lazy_njit(parallel=True)
def _exp_loop_v2(x, out):
    for i in prange(x.shape[0]):
        out[i] = exp_float32(x[i])


def exp_v1(x):
    out = np.empty_like(x)                                  # (n,)
    _exp_loop_v1(x, out)
    return out


def exp_v2(x):
    out = np.empty_like(x)                                  # (n,)
    _exp_loop_v2(x, out)
    return out


# ---- the declaration: what __main__, the tests and the benchmarks read ------------------
def example(dtype, rng, shape):
    """What softmax feeds exp: scores minus their row's max, (B, heads, T, T) flattened, <= 0."""
    n = shape.batch * shape.heads * shape.seq_len * shape.seq_len
    x = -20 * rng.random(n).astype(dtype)
    return (x,), 2 * x.nbytes


# No dispatcher of its own: the engine calls exp_for inside its fused loops, never on an array.
KERNELS = (Kernel("exp", exp_reference, {"reference": exp_reference, "numba v1": exp_v1, "numba v2": exp_v2},
                  example, float32_only=frozenset({"numba v2"})),)


if __name__ == "__main__":
    run_lesson(KERNELS)
