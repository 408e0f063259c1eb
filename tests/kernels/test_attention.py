"""kernels/attention.py: every version against the NumPy reference in float32 and float64, on
awkward shapes; NaN and large scores; the dispatcher's fallbacks; no subnormal weights.

Tolerances (``kernels/_lesson.py``): 1e-5 in float32 and 1e-12 in float64, relative to
each element plus the array's largest value.
"""

from __future__ import annotations

import numpy as np
import pytest
from kernel_cases import DTYPES, normal

from scratchlm.kernels import attention
from scratchlm.kernels._lesson import assert_close

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

# ---- dispatch ----






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
