"""Every compiled version of attention, AdamW (and the teaching matmul, and the vectorisable
exp) against its NumPy reference, in float32 and float64, on awkward shapes; and the
dispatchers' choice between them.

Tolerances (``kernels/_lesson.py``): 1e-5 in float32 and 1e-12 in float64, relative to
each element plus the array's largest value. AdamW is held tighter: 1e-6 and 1e-12
relative after five steps, since version 1 does the reference's operations in its order.
"""

from __future__ import annotations

import numpy as np
import pytest

from scratchlm.kernels import adamw, attention, matmul
from scratchlm.kernels._lesson import assert_close
from scratchlm.kernels.numba_tools import lazy_njit
from scratchlm.kernels.vector_exp import exp_float32, exp_for, exp_vectorisable

DTYPES = [np.float32, np.float64]


def normal(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


# ---- attention ------------------------------------------------------------------------
ATTENTION_VERSIONS = [
    (attention.attention_forward_v1, attention.attention_backward_v1),
    (attention.attention_forward_v2, attention.attention_backward_v2),
]
# (B, H, Tq, Tk, D): one token; Tq < Tk (a KV cache) with partial 4-row tiles; D not a
# multiple of 8; a single head; a training shape; decoding one new token
ATTENTION_SHAPES = [(1, 1, 1, 1, 1), (2, 3, 5, 9, 7), (1, 1, 6, 6, 5), (1, 1, 13, 13, 16),
                    (2, 2, 16, 16, 12), (3, 2, 1, 11, 8), (1, 2, 7, 7, 33)]


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ATTENTION_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_attention_versions_match_reference(rng, version, dtype, shape):
    B, H, Tq, Tk, D = shape
    q, dout = normal(rng, (B, H, Tq, D), dtype), normal(rng, (B, H, Tq, D), dtype)
    k, v = 2 * normal(rng, (B, H, Tk, D), dtype), normal(rng, (B, H, Tk, D), dtype)
    forward, backward = ATTENTION_VERSIONS[version - 1]
    out, p = attention.attention_forward_reference(q, k, v)
    got_out, got_p = forward(q, k, v)
    assert got_out.shape == out.shape and got_p.shape == p.shape and got_p.dtype == dtype
    assert_close(got_out, out, dtype)
    assert_close(got_p, p, dtype)
    assert np.all(got_p[..., attention.causal_mask(np, Tq, Tk)] == 0)   # masked: exact zeros
    want = attention.attention_backward_reference(dout, q, k, v, p)
    for got_grad, want_grad in zip(backward(dout, q, k, v, p), want, strict=True):
        assert got_grad.shape == want_grad.shape and got_grad.dtype == dtype
        assert_close(got_grad, want_grad, dtype)


def test_attention_takes_permuted_views(rng):
    # the engine hands in q, k, v as (B, T, H, D) -> (B, H, T, D) transposed views
    qkv = normal(rng, (2, 9, 3, 4, 8), np.float32)                    # (B, T, 3, H, D)
    q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))  # (B, H, T, D) views
    dout = normal(rng, (2, 9, 4, 8), np.float32).transpose(0, 2, 1, 3)
    assert not q.flags.c_contiguous and not dout.flags.c_contiguous
    out, p = attention.attention_forward_reference(q, k, v)
    want = attention.attention_backward_reference(dout, q, k, v, p)
    for forward, backward in ATTENTION_VERSIONS:
        got_out, got_p = forward(q, k, v)
        assert_close(got_out, out, np.float32)
        assert_close(got_p, p, np.float32)
        for got_grad, want_grad in zip(backward(dout, q, k, v, p), want, strict=True):
            assert_close(got_grad, want_grad, np.float32)


@pytest.mark.parametrize("forward", [f for f, _ in ATTENTION_VERSIONS])
def test_attention_nan_in_gives_nan_out_not_an_exception(forward):
    q, k, v = (np.ones((1, 1, 6, 4), np.float32) for _ in range(3))
    q[0, 0, 3, 1] = np.nan                                 # one query goes bad
    out, _ = forward(q, k, v)
    assert np.isnan(out[0, 0, 3]).all()
    assert np.isfinite(np.delete(out, 3, axis=2)).all()   # the other queries are fine


def test_attention_large_scores_stay_finite(rng):
    # scores of +-300: exp(s) overflows, exp(s - max) must not
    q, k, v = (30 * normal(rng, (1, 2, 8, 10), np.float32) for _ in range(3))
    out, p = attention.attention_forward_reference(q, k, v)
    for forward, _ in ATTENTION_VERSIONS:
        got_out, got_p = forward(q, k, v)
        assert np.isfinite(got_out).all()
        assert_close(got_p, p, np.float32)


def test_attention_kernels_run_as_plain_python(rng):
    # .py_func is the loop as written (prange is range): same answer as the reference
    q, k, v = (normal(rng, (2, 5, 3), np.float64) for _ in range(3))
    out, p = np.empty_like(q), np.empty((2, 5, 5))
    attention._forward_kernel_v1.py_func(q, k, v, out, p)
    want_out, want_p = attention.attention_forward_reference(q, k, v)
    assert_close(out, want_out, np.float64)
    assert_close(p, want_p, np.float64)


# ---- the vectorisable exps ----------------------------------------------------------------
@lazy_njit()
def _exp_loop(x, y):
    for i in range(x.shape[0]):
        y[i] = exp_vectorisable(x[i])


@lazy_njit()
def _exp_float32_loop(x, y):
    for i in range(x.shape[0]):
        y[i] = exp_float32(x[i])


@lazy_njit()
def _exp_for_loop(x, y):
    for i in range(x.shape[0]):
        y[i] = exp_for(x, x[i])


EXP_LOOPS = [  # (loop, dtype, rtol, the top of the range it is exact on)
    (_exp_loop, np.float32, 2e-7, 88.0), (_exp_loop, np.float64, 3e-14, 700.0),
    (_exp_float32_loop, np.float32, 2e-7, 88.7228), (_exp_for_loop, np.float32, 2e-7, 88.7228),
    (_exp_for_loop, np.float64, 3e-14, 700.0)]


@pytest.mark.parametrize("loop, dtype, rtol, top", EXP_LOOPS)
def test_exp_versions_match_numpy(loop, dtype, rtol, top):
    x = np.linspace(-100.0 if dtype == np.float32 else -700.0, top, 200_001).astype(dtype)
    y = np.empty_like(x)
    loop(x, y)
    want = np.exp(x.astype(np.float64))
    normal_range = want > 2 * np.finfo(dtype).tiny
    np.testing.assert_allclose(y[normal_range], want[normal_range], rtol=rtol)
    assert y.dtype == dtype


@pytest.mark.parametrize("loop, dtype", [(loop, dtype) for loop, dtype, _, _ in EXP_LOOPS])
def test_exp_versions_edges(loop, dtype):
    x = np.array([0.0, -0.0, -np.inf, -750.0, -1e30, np.nan, -90.0], dtype)
    y = np.empty_like(x)
    loop(x, y)
    assert y[0] == 1.0 and y[1] == 1.0
    assert y[2] == 0.0 and y[3] == 0.0 and y[4] == 0.0
    assert np.isnan(y[5])
    if loop is _exp_float32_loop or (loop is _exp_for_loop and dtype == np.float32):
        assert y[6] == 0.0                                  # float32's version stops at the normal floats
    else:
        assert 0.0 < y[6] < 1e-38                           # the other goes on (subnormal in float32)


@pytest.mark.parametrize("loop", [_exp_float32_loop, _exp_for_loop])
def test_exp_float32_overflows_to_inf_and_no_earlier(loop):
    x = np.array([88.0, 88.5, 88.7228, 88.7229, 89.5, 100.0, 1e30, np.inf], np.float32)
    y = np.empty_like(x)
    loop(x, y)
    np.testing.assert_allclose(y[:3], np.exp(x[:3].astype(np.float64)), rtol=2e-7)   # 2^128 is no float32
    assert np.all(y[3:] == np.inf)                          # beyond 3.4e38


def test_exp_for_picks_the_version_of_the_arrays_dtype():
    x32 = np.linspace(-20.0, 0.0, 10_001).astype(np.float32)
    picked, by_32, by_generic = (np.empty_like(x32) for _ in range(3))
    _exp_for_loop(x32, picked)
    _exp_float32_loop(x32, by_32)
    _exp_loop(x32, by_generic)
    np.testing.assert_array_equal(picked, by_32)
    assert not np.array_equal(by_32, by_generic)            # the two versions round differently
    x64 = x32.astype(np.float64)
    picked64, by_generic64 = np.empty_like(x64), np.empty_like(x64)
    _exp_for_loop(x64, picked64)
    _exp_loop(x64, by_generic64)
    np.testing.assert_array_equal(picked64, by_generic64)


# ---- AdamW ------------------------------------------------------------------------------
HYPER = dict(lr=3e-3, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1)


def run_adamw(step_fn, start, num_decayed, steps=5, **overrides):
    params, grads = (a.copy() for a in start)
    m, v = np.zeros_like(params), np.zeros_like(params)
    hyper = {**HYPER, **overrides}
    for step in range(1, steps + 1):
        step_fn(params, grads, m, v, step, num_decayed=num_decayed, **hyper)
        grads = grads[::-1].copy()                          # a different gradient each step
    return params, m, v


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-6), (np.float64, 1e-12)])
@pytest.mark.parametrize("size, num_decayed", [(1, 0), (1, 1), (37, 20), (10_007, 9_000),
                                               (10_007, 10_007)])
def test_adamw_v1_matches_reference(rng, dtype, rtol, size, num_decayed):
    start = (normal(rng, size, dtype), normal(rng, size, dtype))
    want = run_adamw(adamw.adamw_step_reference, start, num_decayed)
    got = run_adamw(adamw.adamw_step_v1, start, num_decayed)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * np.abs(w).max())
    assert not np.allclose(got[0], start[0])                # the step did move the params


def test_adamw_v1_no_weight_decay_and_decay_only_first_block(rng):
    start = (normal(rng, 100, np.float32), np.zeros(100, np.float32))   # zero gradients
    params, _, _ = run_adamw(adamw.adamw_step_v1, start, num_decayed=60, steps=1)
    np.testing.assert_array_equal(params[60:], start[0][60:])           # not decayed
    np.testing.assert_allclose(params[:60], start[0][:60] * np.float32(1 - 3e-3 * 0.1), rtol=1e-7)
    params, _, _ = run_adamw(adamw.adamw_step_v1, start, num_decayed=60, steps=1, weight_decay=0.0)
    np.testing.assert_array_equal(params, start[0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [1, 7, 100_003])
def test_grad_norm_v1_matches_reference(rng, dtype, size):
    grads = normal(rng, size, dtype)
    got, want = adamw.grad_norm_v1(grads), adamw.grad_norm_reference(grads)
    assert isinstance(got, float)
    assert got == pytest.approx(want, rel=1e-6 if dtype == np.float32 else 1e-12)


def test_adamw_dispatch_keeps_non_contiguous_buffers_in_place(rng):
    # a strided buffer is no flat buffer: the dispatcher must still update it in place
    backing = normal(rng, 40, np.float64)
    params, grads = backing[::2], normal(rng, 20, np.float64)
    m, v = np.zeros(20), np.zeros(20)
    want = params.copy()
    adamw.adamw_step_reference(want, grads, np.zeros(20), np.zeros(20), 1, num_decayed=10, **HYPER)
    adamw.adamw_step(params, grads, m, v, 1, num_decayed=10, **HYPER)
    np.testing.assert_allclose(backing[::2], want, rtol=1e-12)


# ---- matmul (teaching only) -------------------------------------------------------------
@pytest.mark.parametrize("fn", [matmul.matmul_v1, matmul.matmul_v2, matmul.matmul_v3])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 7, 3), (33, 18, 65)])   # K % 4 != 0
def test_matmul_versions_match_blas(rng, fn, dtype, shape):
    M, K, N = shape
    a, b = normal(rng, (M, K), dtype), normal(rng, (K, N), dtype)
    assert_close(fn(a, b), a @ b, dtype)


# ---- dispatch ---------------------------------------------------------------------------
def _attention_forward_args():
    return tuple(np.ones((1, 2, 3, 4), np.float32) for _ in range(3))          # q, k, v


def _attention_backward_args():
    q, k, v = _attention_forward_args()
    return np.ones_like(q), q, k, v, attention.attention_forward_reference(q, k, v)[1]


DISPATCHERS = [  # (module, dispatcher, fast version it should pick, arguments)
    (attention, "attention_forward", "attention_forward_v2", _attention_forward_args),
    (attention, "attention_backward", "attention_backward_v2", _attention_backward_args),
    (adamw, "adamw_step", "adamw_step_v1",
     lambda: (*(np.ones(5, np.float32) for _ in range(4)), 1, 1e-3, 0.9, 0.99, 1e-8, 0.1, 3)),
    (adamw, "grad_norm", "grad_norm_v1", lambda: (np.ones(5, np.float32),)),
]


def test_attention_dispatch_falls_back_where_v2_does_not_apply(monkeypatch, kernel_mode):
    monkeypatch.setattr(attention, "attention_forward_v2", lambda *a: pytest.fail("v2 called"))
    q = np.ones((1, 1, 4, 3), np.float32)
    with np.errstate(invalid="ignore"):                               # fully masked rows: NaN
        attention.attention_forward(q, q[:, :, :2], q[:, :, :2])     # Tk < Tq
    attention.attention_forward(q, q.astype(np.float64), q)          # mixed dtypes
    attention.attention_forward(np.concatenate([q, q]), q, q)        # k, v broadcast over B
    attention.attention_forward(q.astype(np.float16), q.astype(np.float16), q.astype(np.float16))


def test_dispatched_results_equal_reference_in_both_modes(rng, kernel_mode):
    q, k, v, dout = (normal(rng, (2, 3, 6, 5), np.float32) for _ in range(4))
    out, p = attention.attention_forward(q, k, v)
    want_out, want_p = attention.attention_forward_reference(q, k, v)
    assert_close(out, want_out, np.float32)
    grads = attention.attention_backward(dout, q, k, v, p)
    for g, w in zip(grads, attention.attention_backward_reference(dout, q, k, v, want_p)):
        assert_close(g, w, np.float32)


def _subnormal_count(a):
    tiny = np.finfo(a.dtype).tiny
    return int(((a != 0) & (np.abs(a) < tiny)).sum())


def test_peaked_attention_makes_no_subnormal_weights_or_gradients(kernel_mode):
    """A trained model's sharp attention underflows exp(); subnormal floats are ~100x slower."""
    from scratchlm.kernels.attention import attention_backward, attention_forward

    rng = np.random.default_rng(0)
    q, k, v, dout = (rng.standard_normal((2, 2, 32, 8)).astype(np.float32) for _ in range(4))
    q *= 40.0                                               # scores spread over hundreds: exp underflows
    out, p = attention_forward(q, k, v)
    grads = attention_backward(dout, q, k, v, p)
    assert _subnormal_count(p) == 0
    assert all(_subnormal_count(g) == 0 for g in grads)
    masked = 2 * 2 * (32 * 31 // 2)                         # the future keys of every query
    assert (p == 0).sum() > masked + 100                    # many visible weights underflowed to 0
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=1e-6)
