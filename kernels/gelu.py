"""GELU, the tanh approximation (GPT-2's), forward and backward.

Math, element-wise on x of any shape (in the MLP: (B, T, 4C)):

    u  = sqrt(2/pi) * (x + 0.044715 x^3)
    y  = 0.5 x (1 + tanh(u))

Backward, with t = tanh(u):

    dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)
    dx    = dy * dy/dx

Nothing is cached but the input x (the op keeps it); t is recomputed in backward.

Versions: 0 the NumPy reference; 1 Numba with the scalar libm tanh (a lesson in what
not to do here); 2 Numba with a rational tanh that vectorises (float32; the default);
CUDA (CuPy arrays), one thread per element. Then the MLP's two fused passes, each with
its reference (the separate calls) and a Numba version 1. Run
``python -m scratchlm.kernels.gelu`` to check and time them.
"""

from __future__ import annotations

import math

import numpy as np

from . import bias as bias_kernels
from ._cuda import STRIDE_THREADS, cupy_module, launch, stride_blocks
from ._lesson import Kernel, run_lesson
from .bf16 import bf16_bits, round_to_bf16
from .dispatch import use_cuda, use_numba
from .numba_tools import chunk_bounds, lazy_njit, prange

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
GELU_COEFF = 0.044715


# ---- version 0: the NumPy reference ------------------------------------------------
def gelu_forward_reference(x):
    """x: any shape -> y, same shape."""
    from scratchlm.backend import get_array_module

    xp = get_array_module(x)
    u = SQRT_2_OVER_PI * (x + GELU_COEFF * x * x * x)
    return 0.5 * x * (1.0 + xp.tanh(u))


def gelu_backward_reference(dy, x):
    """dy, x: same shape -> dx."""
    from scratchlm.backend import get_array_module

    xp = get_array_module(x)
    t = xp.tanh(SQRT_2_OVER_PI * (x + GELU_COEFF * x * x * x))
    du_dx = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_COEFF * x * x)
    return dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du_dx)


# ---- scalar pieces shared by the compiled versions ----------------------------------------
# Each takes and returns one number; ``real = type(x)`` makes every constant x's dtype, so
# float32 math stays float32 (a bare 0.5 is a float64 and would promote the whole loop).
@lazy_njit()
def tanh_argument(x):
    real = type(x)
    return real(SQRT_2_OVER_PI) * (x + real(GELU_COEFF) * x * x * x)


@lazy_njit()
def gelu_from_tanh(x, t):
    real = type(x)
    return real(0.5) * x * (real(1.0) + t)


@lazy_njit()
def gelu_slope_from_tanh(x, t):
    real = type(x)
    du_dx = real(SQRT_2_OVER_PI) * (real(1.0) + real(3.0 * GELU_COEFF) * x * x)
    return real(0.5) * (real(1.0) + t) + real(0.5) * x * (real(1.0) - t * t) * du_dx


# ---- version 1: Numba, one element per loop step, spread over the cores ----------------
# Better than the reference: one pass over memory instead of ten (B, T, 4C) temporaries.
# But ``np.tanh`` of one number is a scalar libm call (~27 ns here), and Numba has no SVML
# vector maths library on this machine, so the loop cannot use SIMD: slower than the
# reference, whose np.tanh on a whole array is NumPy's own vector code.
@lazy_njit(parallel=True)
def _gelu_forward_kernel_v1(x, y):
    for i in prange(x.size):
        y[i] = gelu_from_tanh(x[i], np.tanh(tanh_argument(x[i])))


@lazy_njit(parallel=True)
def _gelu_backward_kernel_v1(dy, x, dx):
    for i in prange(x.size):
        dx[i] = dy[i] * gelu_slope_from_tanh(x[i], np.tanh(tanh_argument(x[i])))


# ---- version 2: a tanh made of + * / only, so LLVM can vectorise the loop (float32) ------
# tanh(u) ~ u P(u^2) / Q(u^2) on [-9, 9], degrees 4 and 4, clamped outside (where float32
# tanh is +-1 anyway). The coefficients were fitted in float64 by least squares reweighted
# towards minimax (Lawson's method): max relative error 2.1e-8 in float64, 3.6e-7 (6 ulp)
# evaluated in float32. Not accurate enough
# for float64, where the dispatcher keeps the reference (faster than version 1 there).
# ``error_model="numpy"``: by default Numba checks every float division for a zero divisor
# (to raise ZeroDivisionError as Python would), and that branch alone stops the loop from
# vectorising; NumPy's model (x / 0 is inf) lets the division run 8 lanes at a time.
NO_DIVISION_CHECK = "numpy"
TANH_NUMERATOR = (0.9999999795777684, 0.13380945981304843, 0.003495493230051649,
                  2.0607528913242635e-05, 1.3352557290475253e-08)
TANH_DENOMINATOR = (1.0, 0.46714261635051163, 0.02587662163012633,
                    0.00032854797583971665, 7.775685128906315e-07)
TANH_CLAMP = 9.0


@lazy_njit(error_model=NO_DIVISION_CHECK)
def tanh_rational(u):
    real = type(u)
    p, q = TANH_NUMERATOR, TANH_DENOMINATOR
    u = min(max(u, real(-TANH_CLAMP)), real(TANH_CLAMP))
    s = u * u
    num = (((real(p[4]) * s + real(p[3])) * s + real(p[2])) * s + real(p[1])) * s + real(p[0])
    den = (((real(q[4]) * s + real(q[3])) * s + real(q[2])) * s + real(q[1])) * s + real(q[0])
    return u * num / den


@lazy_njit(parallel=True, error_model=NO_DIVISION_CHECK)
def _gelu_forward_kernel_v2(x, y):
    for i in prange(x.size):
        y[i] = gelu_from_tanh(x[i], tanh_rational(tanh_argument(x[i])))


@lazy_njit(parallel=True, error_model=NO_DIVISION_CHECK)
def _gelu_backward_kernel_v2(dy, x, dx):
    for i in prange(x.size):
        dx[i] = dy[i] * gelu_slope_from_tanh(x[i], tanh_rational(tanh_argument(x[i])))


def _elementwise(kernel, *arrays):
    """Run ``kernel(*flat_inputs, flat_out)`` over same-shape arrays (x last); out has x's shape."""
    x = arrays[-1]
    flat = [np.ascontiguousarray(a, dtype=x.dtype).reshape(-1) for a in arrays]
    out = np.empty(x.shape, dtype=x.dtype)
    kernel(*flat, out.reshape(-1))
    return out


def gelu_forward_v1(x):
    return _elementwise(_gelu_forward_kernel_v1, x)


def gelu_backward_v1(dy, x):
    return _elementwise(_gelu_backward_kernel_v1, dy, x)


def gelu_forward_v2(x):
    return _elementwise(_gelu_forward_kernel_v2, x)


def gelu_backward_v2(dy, x):
    return _elementwise(_gelu_backward_kernel_v2, dy, x)


# ---- CUDA version (CuPy arrays): one thread per element --------------------------------
# On a GPU, CUDA's tanh is a few inlined instructions, not a library call, so version 1's
# plan works here: one pass over memory, no temporaries. Each thread runs a grid-stride
# loop (elements i, i + all the grid's threads, ...), so any number of elements fits a
# bounded grid.
GELU_CUDA_SOURCE = f"""
#define SQRT_2_OVER_PI {SQRT_2_OVER_PI!r}
#define GELU_COEFF {GELU_COEFF!r}
""" + r"""
__device__ real tanh_argument(real x) { return real(SQRT_2_OVER_PI) * (x + real(GELU_COEFF) * x * x * x); }

extern "C" __global__ void gelu_forward(const real* x, long long n, real* y) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        const real t = tanh(tanh_argument(x[i]));
        y[i] = real(0.5) * x[i] * (real(1) + t);
    }
}

extern "C" __global__ void gelu_backward(const real* dy, const real* x, long long n, real* dx) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        const real xi = x[i], t = tanh(tanh_argument(xi));
        const real du_dx = real(SQRT_2_OVER_PI) * (real(1) + real(3 * GELU_COEFF) * xi * xi);
        dx[i] = dy[i] * (real(0.5) * (real(1) + t) + real(0.5) * xi * (real(1) - t * t) * du_dx);
    }
}
"""


def _elementwise_cuda(name, *arrays):
    """Run CUDA kernel ``name(*flat_inputs, n, flat_out)`` over same-shape arrays (x last)."""
    cp = cupy_module()
    x = arrays[-1]
    flat = [cp.ascontiguousarray(a, dtype=x.dtype).reshape(-1) for a in arrays]
    out = cp.empty(x.shape, dtype=x.dtype)
    launch(GELU_CUDA_SOURCE, name, x.dtype, stride_blocks(x.size), STRIDE_THREADS,
           (*flat, np.int64(x.size), out.reshape(-1)))
    return out


def gelu_forward_cuda(x):
    return _elementwise_cuda("gelu_forward", x)


def gelu_backward_cuda(dy, x):
    return _elementwise_cuda("gelu_backward", dy, x)


# ---- dispatch ----------------------------------------------------------------------
# float32 runs version 2; float64 (gradient checks) the reference: 38 ms against version
# 1's 52 ms, as NumPy's array tanh beats a scalar one even at double the bytes. CuPy
# arrays run the CUDA version in both dtypes.
def gelu_forward(x):
    if use_cuda(x) and x.dtype in (np.float32, np.float64) and x.size:
        return gelu_forward_cuda(x)
    if use_numba(x) and x.dtype == np.float32:
        return gelu_forward_v2(x)
    return gelu_forward_reference(x)


def gelu_backward(dy, x):
    if use_cuda(dy, x) and x.dtype in (np.float32, np.float64) and x.size and dy.shape == x.shape:
        return gelu_backward_cuda(dy, x)
    if use_numba(dy, x) and x.dtype == np.float32 and dy.shape == x.shape:   # v2 reads flat arrays
        return gelu_backward_v2(dy, x)
    return gelu_backward_reference(dy, x)


# ---- fused with the MLP around it (float32; what training runs) ---------------------------
# Better than calling version 2 between NumPy passes: the MLP's forward adds fc's bias to
# h = x W^T and applies GELU; its backward recomputes gelu(h) (the op keeps only h), takes
# GELU's backward and sums dh's columns for fc's bias gradient. As separate calls that is
# two passes over the (N, 4C) hidden in forward and three in backward (two of them also
# computing tanh); fused, one each, with tanh computed once in backward. dh overwrites the
# incoming gradient in place. With ``to_bf16`` (the MLP's bf16 products, autograd/precision.py)
# they write gelu(h) and dh as the bf16 bits the next products read, rounded as each value is
# made (kernels/bf16.py's bf16_bits), instead of float32 arrays a second pass would round.
def bias_gelu_forward_reference(h, b, to_bf16=False):
    """h (N, H) += b (H,) in place; returns gelu(h) (N, H), as the separate calls compute it."""
    h += b
    return _maybe_bits(gelu_forward_reference(h), to_bf16)


def gelu_backward_recompute_reference(da, h, to_bf16=False):
    """da, h (N, H) -> gelu(h), dh, dh summed over rows (H,), as the separate calls compute them."""
    dh = gelu_backward_reference(da, h)
    return _maybe_bits(gelu_forward_reference(h), to_bf16), _maybe_bits(dh, to_bf16), dh.sum(axis=0)


def _maybe_bits(x, to_bf16):
    return round_to_bf16(x) if to_bf16 else x


@lazy_njit(parallel=True, error_model=NO_DIVISION_CHECK)
def _bias_gelu_forward_kernel(h, b, y, y_bits):
    # h (N, H) += b (H,) in place; gelu(h) into y (N, H), or, when y is empty, its bf16 bits
    # into y_bits (N, H); a loop for each, so that each one vectorises
    to_bits = y.size == 0
    for n in prange(h.shape[0]):
        if to_bits:
            for i in range(h.shape[1]):
                x = h[n, i] + b[i]
                h[n, i] = x
                y_bits[n, i] = bf16_bits(gelu_from_tanh(x, tanh_rational(tanh_argument(x))))
        else:
            for i in range(h.shape[1]):
                x = h[n, i] + b[i]
                h[n, i] = x
                y[n, i] = gelu_from_tanh(x, tanh_rational(tanh_argument(x)))


@lazy_njit(parallel=True, error_model=NO_DIVISION_CHECK)
def _gelu_backward_recompute_kernel(da, h, y, y_bits, dh_bits, db_parts):
    # da (N, H) -> dh, in place, and y (N, H) = gelu(h); or, when y is empty, both as bf16 bits
    # into dh_bits and y_bits (N, H) (da then stays); db_parts (chunks, H) zeros, as bias.py
    N, H = h.shape
    n_chunks = db_parts.shape[0]
    to_bits = y.size == 0
    for k in prange(n_chunks):
        first, end = chunk_bounds(k, N, n_chunks)
        for n in range(first, end):
            if to_bits:
                for i in range(H):
                    x = h[n, i]
                    t = tanh_rational(tanh_argument(x))
                    dh = da[n, i] * gelu_slope_from_tanh(x, t)
                    y_bits[n, i] = bf16_bits(gelu_from_tanh(x, t))
                    dh_bits[n, i] = bf16_bits(dh)
                    db_parts[k, i] += dh
            else:
                for i in range(H):
                    x = h[n, i]
                    t = tanh_rational(tanh_argument(x))
                    dh = da[n, i] * gelu_slope_from_tanh(x, t)
                    y[n, i] = gelu_from_tanh(x, t)
                    da[n, i] = dh
                    db_parts[k, i] += dh


def _fusable(*arrays):
    """float32 NumPy arrays, C-contiguous, the first 2-D: what the fused kernels take."""
    return (use_numba(*arrays) and all(a.dtype == np.float32 and a.flags.c_contiguous for a in arrays)
            and arrays[0].ndim == 2)


def _outputs(h, to_bf16):
    """(float32 output like h, its bf16 bits): the kernels take both, the one not written empty."""
    if to_bf16:
        return np.empty((0, 0), np.float32), np.empty(h.shape, np.uint16)
    return np.empty_like(h), np.empty((0, 0), np.uint16)


def bias_gelu_forward_v1(h, b, to_bf16=False):
    y, y_bits = _outputs(h, to_bf16)                     # (N, H) float32 or uint16
    _bias_gelu_forward_kernel(h, b, y, y_bits)
    return y_bits if to_bf16 else y


def gelu_backward_recompute_v1(da, h, to_bf16=False):
    y, y_bits = _outputs(h, to_bf16)                     # (N, H)
    dh_bits = np.empty(h.shape, np.uint16) if to_bf16 else y_bits
    parts = bias_kernels.column_sum_parts(h.shape[0], h.shape[1], h.dtype)   # (chunks, H)
    _gelu_backward_recompute_kernel(da, h, y, y_bits, dh_bits, parts)
    db = bias_kernels.finish_column_sums(parts, h.dtype)
    return (y_bits, dh_bits, db) if to_bf16 else (y, da, db)


def bias_gelu_forward(h, b, to_bf16=False):
    """h (N, H) += b (H,) in place (b may be None); returns gelu(h) (N, H): float32, or with
    ``to_bf16`` its bf16 bits (uint16)."""
    if b is not None and _fusable(h, b) and b.shape == h.shape[1:]:
        return bias_gelu_forward_v1(h, b, to_bf16)
    if b is not None:
        bias_kernels.add_bias(h, b)
    return _maybe_bits(gelu_forward(h), to_bf16)


def gelu_backward_recompute(da, h, to_bf16=False):
    """da (dloss / dgelu(h)), h: (N, H) -> gelu(h), dh, dh summed over rows (H,) (float32);
    with ``to_bf16``, gelu(h) and dh as bf16 bits (uint16).

    dh may be written over da (the caller gives da up).
    """
    if _fusable(da, h) and da.shape == h.shape:
        return gelu_backward_recompute_v1(da, h, to_bf16)
    dh = gelu_backward(da, h)
    return _maybe_bits(gelu_forward(h), to_bf16), _maybe_bits(dh, to_bf16), bias_kernels.bias_grad(dh)


# ---- the declaration: what __main__, the tests and the benchmarks read ------------------
def example_forward(dtype, rng, shape):
    """x (B, T, 4C), the MLP's hidden, at a configuration's shape; the bytes one forward moves."""
    x = 2 * rng.standard_normal((shape.batch, shape.seq_len, 4 * shape.d_model)).astype(dtype)
    return (x,), 2 * x.nbytes


def example_backward(dtype, rng, shape):
    (x,), _ = example_forward(dtype, rng, shape)
    dy = 2 * rng.standard_normal(x.shape).astype(dtype)
    return (dy, x), 3 * x.nbytes


def example_bias_forward(dtype, rng, shape):
    """h (N, 4C) and fc's bias (4C,): the fused forward reads and writes h, writes gelu(h)."""
    h = 2 * rng.standard_normal((shape.rows, 4 * shape.d_model)).astype(dtype)
    b = rng.standard_normal(h.shape[1]).astype(dtype)
    return (h, b), 3 * h.nbytes


def example_recompute(dtype, rng, shape):
    (h, _), _ = example_bias_forward(dtype, rng, shape)
    da = 2 * rng.standard_normal(h.shape).astype(dtype)
    return (da, h), 4 * h.nbytes


def _h_and_gelu(args, returned):
    return args[0], returned                                # the fused forward changes h too


KERNELS = (
    Kernel("gelu_forward", gelu_forward,
           {"reference": gelu_forward_reference, "numba v1": gelu_forward_v1, "numba v2": gelu_forward_v2,
            "cuda": gelu_forward_cuda}, example_forward, float32_only=frozenset({"numba v2"})),
    Kernel("gelu_backward", gelu_backward,
           {"reference": gelu_backward_reference, "numba v1": gelu_backward_v1, "numba v2": gelu_backward_v2,
            "cuda": gelu_backward_cuda}, example_backward, float32_only=frozenset({"numba v2"})),
    Kernel("bias_gelu_forward", bias_gelu_forward,
           {"reference": bias_gelu_forward_reference, "numba v1": bias_gelu_forward_v1},
           example_bias_forward, results=_h_and_gelu, float32_only=frozenset({"numba v1"})),
    Kernel("gelu_backward_recompute", gelu_backward_recompute,
           {"reference": gelu_backward_recompute_reference, "numba v1": gelu_backward_recompute_v1},
           example_recompute, float32_only=frozenset({"numba v1"})),
)


if __name__ == "__main__":
    run_lesson(KERNELS)
