"""One new position through the whole model: the step of generating a token.

When a model writes text one token at a time (batch 1, one new position), a block does
four matrix-vector products and a handful of small vector steps whose cost in NumPy is
almost all call overhead (~1 us per array operation, whatever its size). Version 1 fuses
the small steps into one call each; version 2 runs the whole token, every block and the
head, in one call. The small steps are:

    add_norm:  x += delta + bias            the residual update, in place      x, delta (C,)
               out = norm(x)                LayerNorm (w, b) or RMSNorm (w)    out (C,)
    attend:    K[:, slot] = k; V[:, slot] = v                                  k, v (H, D)
               s_j = q . K[:, j] / sqrt(D)  for the first n slots              q (H, D)
               out = softmax(s) V                                              out (H, D)
    gelu_row:  out = 0.5 f (1 + tanh(sqrt(2/pi) (f + 0.044715 f^3)))           f (4C,)

K, V are one layer's cache buffers (H, capacity, D). Attention over cached positions has
no mask: every cached position is in the past of the new one, and the slot order does not
matter to a softmax-weighted sum (which is what lets a rolling cache reuse slots).

Versions: 0 the NumPy reference (runs on NumPy and CuPy); 1 Numba on one core, one
call per step (one core on purpose: each is microseconds of work, less than waking a
thread pool from Python); 2 the whole token step, every block and the head, in one
compiled call whose big matrix-vector products and attention heads are spread over the
cores (from compiled code a parallel region costs ~2 us). Run
``python -m scratchlm.kernels.token_step`` to check and time them. Version 2's reference is
``token_step_per_op``: the same steps one call each, on version 0 or 1 (what the decoder runs
on CuPy arrays and in reference mode).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ._lesson import Kernel, run_lesson
from .dispatch import use_numba
from .gelu import gelu_forward_reference, gelu_from_tanh, tanh_argument, tanh_rational
from .numba_tools import NUMPY_ERRORS, REORDER_SUMS, SERIAL_BELOW, chunk_bounds, lazy_njit, prange, thread_count
from .rope import rotate, rotate_in_place, rotate_reference
from .softmax_rows import exp_minus_max


# ---- version 0: the NumPy reference ------------------------------------------------
def add_norm_reference(x, delta, bias, w, b, eps, rms):
    """x (C,) += delta + bias (in place); return LayerNorm (or RMSNorm if ``rms``) of x."""
    x += delta
    x += bias
    centred = x if rms else x - x.sum() / x.shape[0]                           # (C,)
    rstd = 1.0 / math.sqrt(float(centred @ centred) / x.shape[0] + eps)
    return centred * (w * x.dtype.type(rstd)) + b                               # (C,)


def attend_reference(q, k, v, keys, values, slot, n, scale):
    """Store k, v (H, D) at ``slot`` of keys/values (H, cap, D); attend q over n slots -> (H, D)."""
    from scratchlm.backend import get_array_module

    xp = get_array_module(q)
    keys[:, slot] = k
    values[:, slot] = v
    scores = xp.matmul(keys[:, :n], q[:, :, None])[:, :, 0] * scale            # (H, n)
    scores -= scores.max(axis=1, keepdims=True)
    weights = xp.exp(scores)
    weights /= weights.sum(axis=1, keepdims=True)                               # (H, n)
    return xp.matmul(weights[:, None, :], values[:, :n])[:, 0]                  # (H, D)


def gelu_row_reference(f):
    return gelu_forward_reference(f)


# ---- version 1: Numba, one core, no temporaries ----------------------------------------
# Faster than the reference because each is one call instead of 5-10 NumPy calls; the
# sums use SIMD lanes (REORDER_SUMS); exp and tanh are the vectorisable ones of
# vector_exp.py and gelu.py (libm's scalar calls would cost more than the rest).
@lazy_njit(fastmath=REORDER_SUMS)
def _add_norm_kernel(x, delta, bias, w, b, eps, rms, out):
    C = x.shape[0]
    total = 0.0
    for i in range(C):
        x[i] += delta[i] + bias[i]
        total += x[i]
    mean = 0.0 if rms else total / C
    squares = 0.0
    for i in range(C):
        centred = x[i] - mean
        squares += centred * centred
    m, r = x.dtype.type(mean), x.dtype.type(1.0 / np.sqrt(squares / C + eps))
    for i in range(C):
        out[i] = (x[i] - m) * r * w[i] + b[i]


@lazy_njit(fastmath=REORDER_SUMS, error_model=NUMPY_ERRORS)
def _attend_head(h, q, k, v, keys, values, slot, n, scale, scores, out):
    """Head h of ``attend``; scores (n,) is this head's scratch row."""
    D = q.shape[1]
    for d in range(D):
        keys[h, slot, d] = k[h, d]
        values[h, slot, d] = v[h, d]
    for j in range(n):
        s = q.dtype.type(0.0)
        for d in range(D):
            s += q[h, d] * keys[h, j, d]
        scores[j] = s * scale
    _, total = exp_minus_max(scores, n, n)             # scores[:n] <- exp(s - max)
    inverse = q.dtype.type(1.0) / total
    for d in range(D):
        out[h, d] = 0.0
    for j in range(n):
        p = scores[j] * inverse
        for d in range(D):
            out[h, d] += p * values[h, j, d]


@lazy_njit(fastmath=REORDER_SUMS, error_model=NUMPY_ERRORS)
def _attend_kernel(q, k, v, keys, values, slot, n, scale, scores, out):
    for h in range(q.shape[0]):
        _attend_head(h, q, k, v, keys, values, slot, n, scale, scores, out)


@lazy_njit(error_model=NUMPY_ERRORS)
def _gelu_row_kernel(f, out):
    for i in range(f.shape[0]):
        out[i] = gelu_from_tanh(f[i], tanh_rational(tanh_argument(f[i])))


def add_norm_v1(x, delta, bias, w, b, eps, rms):
    out = np.empty_like(x)
    _add_norm_kernel(x, delta, bias, w, b, float(eps), bool(rms), out)
    return out


def attend_v1(q, k, v, keys, values, slot, n, scale):
    out = np.empty_like(q)
    scores = np.empty(n, dtype=q.dtype)
    _attend_kernel(q, k, v, keys, values, slot, n, q.dtype.type(scale), scores, out)
    return out


def gelu_row_v1(f):
    out = np.empty_like(f)
    _gelu_row_kernel(f, out)
    return out


# ---- version 2: the whole token step in one call, the big products on every core ------
# Version 1 still leaves ~40 calls per token to Python (per block: three kernels and four
# NumPy matrix-vector products), ~5-20 us of overhead each, and NumPy runs a
# matrix-vector product on one core. At config c the products stream 19 MB of weights
# per token, which one core reads at ~25 GB/s and two at ~45. Version 2 is ONE compiled
# call per token that walks every block itself. Products with at least SERIAL_BELOW
# weights (dispatch.py's threshold) split their rows among the threads, smaller ones stay
# on one core: a parallel region costs ~2 us from compiled code, ~20 us from Python.
#
# Every block's arrays come stacked along a first axis of L blocks (``StackedBlocks``), so
# that the kernel has one Numba type whatever the model's depth. (Numba types a tuple by
# its length: a tuple of per-block arrays would compile again for every depth.)
class StackedBlocks(NamedTuple):
    """All blocks' arrays, block l at index l; missing biases as zeros."""
    qkv: np.ndarray             # (L, 3C, C)
    attn_out: np.ndarray        # (L, C, C)
    fc: np.ndarray              # (L, F, C)
    mlp_out: np.ndarray         # (L, C, F)
    norm1_w: np.ndarray         # (L, C)
    norm1_b: np.ndarray         # (L, C)
    qkv_bias: np.ndarray        # (L, 3C)
    attn_out_bias: np.ndarray   # (L, C)
    norm2_w: np.ndarray         # (L, C)
    norm2_b: np.ndarray         # (L, C)
    fc_bias: np.ndarray         # (L, F)
    mlp_out_bias: np.ndarray    # (L, C)
    keys: np.ndarray            # (L, H, capacity, D) the KV cache, written in place
    values: np.ndarray          # (L, H, capacity, D)


@lazy_njit(fastmath=REORDER_SUMS, error_model=NUMPY_ERRORS)
def _rows_times_vector(w, x, bias, out, first, last, gelu, exact_tanh):
    """out[r] = w[r] . x + bias[r] for rows first..last-1; then GELU if ``gelu``.

    ``exact_tanh`` picks libm's tanh (float64, where the rational one is not accurate enough).
    The dot product vectorises because w is a C-contiguous 2-D array (an offset into one
    flat buffer of all the weights does not).
    """
    real = w.dtype.type
    for r in range(first, last):
        s = real(0.0)
        for k in range(w.shape[1]):
            s += w[r, k] * x[k]
        s += bias[r]
        if gelu:
            u = tanh_argument(s)
            s = gelu_from_tanh(s, real(math.tanh(u)) if exact_tanh else tanh_rational(u))
        out[r] = s


@lazy_njit(parallel=True, fastmath=REORDER_SUMS, error_model=NUMPY_ERRORS)
def _rows_times_vector_split(w, x, bias, out, parts, gelu, exact_tanh):
    for part in prange(parts):
        first, end = chunk_bounds(part, w.shape[0], parts)
        _rows_times_vector(w, x, bias, out, first, end, gelu, exact_tanh)


@lazy_njit(fastmath=REORDER_SUMS, error_model=NUMPY_ERRORS)
def _matvec(w, x, bias, threads, gelu, exact_tanh):
    """w (N, K) @ x (K,) + bias (N,), GELU'd if asked -> (N,); on every thread when big."""
    out = np.empty(w.shape[0], dtype=w.dtype)
    if threads > 1 and w.size >= SERIAL_BELOW:
        _rows_times_vector_split(w, x, bias, out, threads, gelu, exact_tanh)
    else:
        _rows_times_vector(w, x, bias, out, 0, w.shape[0], gelu, exact_tanh)
    return out


@lazy_njit(parallel=True, fastmath=REORDER_SUMS, error_model=NUMPY_ERRORS)
def _attend_kernel_split(q, k, v, keys, values, slot, n, scale, scores, out):
    """``attend`` with the heads spread over the threads; scores (H, >= n), a row per head."""
    for h in prange(q.shape[0]):
        _attend_head(h, q, k, v, keys, values, slot, n, scale, scores[h], out)


@lazy_njit(fastmath=REORDER_SUMS, error_model=NUMPY_ERRORS)
def _token_step_kernel(x, blocks, cos, sin, rope, slot, n, heads, scale, eps, rms, head, final_w, final_b,
                       threads, exact_tanh):
    """x (C,) through every block, the final norm and the head -> logits (V,); see token_step_v2.

    The same order of steps as the decoder's one-call-at-a-time path: per block, norm,
    qkv, (RoPE), attention with the cache write, the output product, the residual add and
    norm, fc with GELU, the MLP's output product (added to x at the next norm).
    """
    C = x.shape[0]
    D = C // heads
    zeros = np.zeros_like(x)                                   # (C,)
    delta = zeros                                              # (C,) the MLP's output, added at the next norm
    h = np.empty_like(x)                                       # (C,) normalised residual stream
    y = np.empty((heads, D), dtype=x.dtype)                    # (H, D) attention output
    scores = np.empty((heads, blocks.keys.shape[2]), dtype=x.dtype)   # (H, capacity)
    for l in range(blocks.qkv.shape[0]):
        _add_norm_kernel(x, delta, zeros, blocks.norm1_w[l], blocks.norm1_b[l], eps, rms, h)
        qkv = _matvec(blocks.qkv[l], h, blocks.qkv_bias[l], threads, False, exact_tanh).reshape((3, heads, D))
        if rope:
            rotate_in_place(qkv[0], cos, sin)
            rotate_in_place(qkv[1], cos, sin)
        keys, values = blocks.keys[l], blocks.values[l]                                 # (H, capacity, D)
        if threads > 1 and n * C >= SERIAL_BELOW:            # the keys and values attention reads
            _attend_kernel_split(qkv[0], qkv[1], qkv[2], keys, values, slot, n, scale, scores, y)
        else:
            _attend_kernel(qkv[0], qkv[1], qkv[2], keys, values, slot, n, scale, scores[0], y)
        attended = _matvec(blocks.attn_out[l], y.reshape(C), blocks.attn_out_bias[l], threads, False, exact_tanh)
        _add_norm_kernel(x, attended, zeros, blocks.norm2_w[l], blocks.norm2_b[l], eps, rms, h)
        f = _matvec(blocks.fc[l], h, blocks.fc_bias[l], threads, True, exact_tanh)              # (F,)
        delta = _matvec(blocks.mlp_out[l], f, blocks.mlp_out_bias[l], threads, False, exact_tanh)  # (C,)
    _add_norm_kernel(x, delta, zeros, final_w, final_b, eps, rms, h)
    return _matvec(head, h, np.zeros(head.shape[0], dtype=x.dtype), threads, False, exact_tanh)  # (V,)


def token_step_v2(x, blocks, rope, slot, n, heads, eps, rms, head, final_w, final_b):
    """One new position through every block and the head -> logits (V,).

    x (C,): the token's embedding plus its position's (changed in place: it becomes the
    residual stream). blocks: ``StackedBlocks``. rope: (cos, sin) (D/2,) for this position,
    or None. The new key and value go to ``slot`` of each layer's cache; attention reads
    slots 0..n-1. The arrays must pass ``token_step_ready``.
    """

    cos, sin = rope if rope is not None else (x[:0], x[:0])
    scale = x.dtype.type(1.0 / math.sqrt(x.shape[0] // heads))
    return _token_step_kernel(x, blocks, cos, sin, rope is not None, slot, n, heads, scale, float(eps),
                              bool(rms), head, final_w, final_b, thread_count(), x.dtype == np.float64)


def token_step_ready(*arrays) -> bool:
    """Whether version 2 can take these arrays: NumPy, C-contiguous, writeable, one float dtype
    (Numba types read-only arrays apart, and a tuple must hold arrays of one type).

    Checked once per text by the decoder (checking every array per token would cost more
    than the token); the mode (``SCRATCHLM_KERNELS``) is checked per token with ``use_numba``.
    """
    return _compiled(*arrays) and all(a.flags.writeable for a in arrays)


# ---- dispatch ----------------------------------------------------------------------
# Version 1 wants C-contiguous arrays of one float dtype (the decoder's buffers are);
# anything else takes the reference.
def _compiled(*arrays) -> bool:
    dtype = arrays[0].dtype
    return (use_numba(*arrays) and dtype in (np.float32, np.float64)
            and all(a.dtype == dtype and a.flags.c_contiguous for a in arrays))


def add_norm(x, delta, bias, w, b, eps, rms):
    if _compiled(x, delta, bias, w, b):
        return add_norm_v1(x, delta, bias, w, b, eps, rms)
    return add_norm_reference(x, delta, bias, w, b, eps, rms)


def attend(q, k, v, keys, values, slot, n, scale):
    if _compiled(q, k, v, keys, values):
        return attend_v1(q, k, v, keys, values, slot, n, scale)
    return attend_reference(q, k, v, keys, values, slot, n, scale)


def gelu_row(f):
    if _compiled(f) and f.dtype == np.float32:  # the rational tanh is a float32 approximation
        return gelu_row_v1(f)
    return gelu_row_reference(f)


def _steps_one_call_each(steps, x, blocks, rope, slot, n, heads, eps, rms, head, final_w, final_b):
    """``token_step_v2``'s arguments and result, one call of ``steps`` (add_norm, attend,
    gelu_row, rotate) or one matrix product per step."""
    add_norm_step, attend_step, gelu_step, rotate_step = steps
    C = x.shape[0]
    D = C // heads
    scale = x.dtype.type(1.0 / math.sqrt(D))
    zeros = x * 0                                                               # (C,)
    delta, delta_bias = zeros, zeros                                            # (C,) to add to x at the next norm
    for l in range(len(blocks.qkv)):
        h = add_norm_step(x, delta, delta_bias, blocks.norm1_w[l], blocks.norm1_b[l], eps, rms)     # (C,)
        q, k, v = (blocks.qkv[l] @ h + blocks.qkv_bias[l]).reshape(3, heads, D)                     # 3 x (H, D)
        if rope is not None:
            q, k = rotate_step(q, *rope), rotate_step(k, *rope)
        y = attend_step(q, k, v, blocks.keys[l], blocks.values[l], slot, n, scale)                  # (H, D)
        h = add_norm_step(x, blocks.attn_out[l] @ y.reshape(C), blocks.attn_out_bias[l],
                          blocks.norm2_w[l], blocks.norm2_b[l], eps, rms)                           # (C,)
        f = gelu_step(blocks.fc[l] @ h + blocks.fc_bias[l])                                         # (F,)
        delta, delta_bias = blocks.mlp_out[l] @ f, blocks.mlp_out_bias[l]                           # (C,)
    return head @ add_norm_step(x, delta, delta_bias, final_w, final_b, eps, rms)                   # (V,)


def token_step_reference(*args):
    """Version 2's reference: the steps one NumPy (or CuPy) call each, on their references."""
    return _steps_one_call_each((add_norm_reference, attend_reference, gelu_row_reference, rotate_reference), *args)


def token_step_per_op(*args):
    """``token_step_v2``'s arguments and result, one dispatched kernel or matrix product per step
    (version 1 of each small step where it runs): what the decoder runs on CuPy arrays and in
    reference mode. ``blocks`` may hold per-layer lists instead of stacked arrays."""
    return _steps_one_call_each((add_norm, attend, gelu_row, rotate), *args)


def example_model(dtype, rng, layers, heads, head_dim, vocab=65, capacity=256):
    """Random arrays of a model with a KV cache: ``(StackedBlocks, head, final_w, final_b)``."""
    C = heads * head_dim
    F = 4 * C

    def normal(*shape, scale=0.02):
        return (scale * rng.standard_normal(shape)).astype(dtype)

    blocks = StackedBlocks(
        qkv=normal(layers, 3 * C, C), attn_out=normal(layers, C, C), fc=normal(layers, F, C),
        mlp_out=normal(layers, C, F), norm1_w=1 + normal(layers, C, scale=0.1), norm1_b=normal(layers, C),
        qkv_bias=normal(layers, 3 * C), attn_out_bias=normal(layers, C), norm2_w=1 + normal(layers, C, scale=0.1),
        norm2_b=normal(layers, C), fc_bias=normal(layers, F), mlp_out_bias=normal(layers, C),
        keys=normal(layers, heads, capacity, head_dim, scale=1.0),
        values=normal(layers, heads, capacity, head_dim, scale=1.0))
    return blocks, normal(vocab, C), 1 + normal(C, scale=0.1), normal(C)


# ---- the declaration: what __main__, the tests and the benchmarks read ------------------
def example_add_norm(dtype, rng, shape):
    """x, delta, bias, w, b (C,), RMSNorm off; the bytes moved (read five vectors, write two)."""
    x, delta, bias, w, b = (rng.standard_normal(shape.d_model).astype(dtype) for _ in range(5))
    return (x, delta, bias, w, b, 1e-5, False), 7 * x.nbytes


def example_attend(dtype, rng, shape):
    """One new query over a cache half-way through a window of T (slot n - 1 written)."""
    H, D, n = shape.heads, shape.head_dim, shape.seq_len // 2
    q, k, v = (rng.standard_normal((H, D)).astype(dtype) for _ in range(3))
    keys, values = (rng.standard_normal((H, shape.seq_len, D)).astype(dtype) for _ in range(2))
    return (q, k, v, keys, values, n - 1, n, 1 / np.sqrt(D)), 2 * H * n * D * q.itemsize


def example_gelu_row(dtype, rng, shape):
    f = rng.standard_normal(4 * shape.d_model).astype(dtype)
    return (f,), 2 * f.nbytes


def example_token_step(dtype, rng, shape):
    """A token n = T/2 positions into its window, through every block of a RoPE model (6
    blocks at config c's width and up, 2 below); the bytes of the four weight matrices."""
    layers = 6 if shape.d_model >= 256 else 2
    blocks, head, final_w, final_b = example_model(dtype, rng, layers, shape.heads, shape.head_dim,
                                                   shape.vocab, shape.seq_len)
    half = shape.head_dim // 2
    rope = (np.cos(np.arange(half)).astype(dtype), np.sin(np.arange(half)).astype(dtype))
    x = rng.standard_normal(shape.d_model).astype(dtype)
    n = shape.seq_len // 2
    return (x, blocks, rope, n - 1, n, shape.heads, 1e-5, False, head, final_w, final_b), \
        sum(w.nbytes for w in blocks[:4])


KERNELS = (
    Kernel("add_norm", add_norm, {"reference": add_norm_reference, "numba v1": add_norm_v1}, example_add_norm,
           results=lambda args, out: (out, args[0])),                   # the normalised row and x, added to
    Kernel("attend", attend, {"reference": attend_reference, "numba v1": attend_v1}, example_attend,
           results=lambda args, out: (out, args[3], args[4])),          # and the cache, written at the slot
    Kernel("gelu_row", gelu_row, {"reference": gelu_row_reference, "numba v1": gelu_row_v1}, example_gelu_row,
           float32_only=frozenset({"numba v1"})),                       # the rational tanh is float32's
    Kernel("token_step", token_step_v2,
           {"reference": token_step_reference, "numba v1": token_step_per_op, "numba v2": token_step_v2},
           example_token_step, results=lambda args, out: (out, args[0], args[1].keys, args[1].values)),
)


if __name__ == "__main__":
    run_lesson(KERNELS)
