"""attention_packed.py: versions 3 and 4 against the reference, and the reference against attention.py's.

The packed kernels read q, k, v from the fused projection's (B, T, 3C) output and keep
one log-denominator per row instead of the weights, so the chain of trust is: the packed
reference equals attention.py's reference (which finite differences check), and the
Numba versions 3 (loops) and 4 (BLAS calls inside the loop) equal the packed reference.
"""

from __future__ import annotations

import numpy as np
import pytest

from scratchlm.kernels import attention, attention_packed, blas
from scratchlm.kernels._lesson import assert_close

DTYPES = [np.float32, np.float64]
# (B, T, H, D): one token; partial 4-row tiles; D not a multiple of 8; one head; a longer row;
# T over version 2's BLOCK of 32 with a partial last block, and exactly two blocks
PACKED_SHAPES = [(1, 1, 1, 1), (2, 5, 3, 7), (1, 6, 1, 5), (2, 13, 2, 16), (1, 33, 2, 12), (3, 9, 4, 8),
                 (1, 70, 2, 12), (2, 64, 1, 8)]
needs_blas = pytest.mark.skipif(not blas.available(), reason="NumPy's OpenBLAS was not found")
# (forward, backward) of each compiled version
VERSIONS = {"v1": ("packed_forward_v1", "packed_backward_v1"),
            "v2": pytest.param(("packed_forward_v2", "packed_backward_v2"), marks=needs_blas)}


@pytest.fixture(params=list(VERSIONS.values()), ids=list(VERSIONS))
def version(request):
    """The (forward, backward) functions of one compiled version."""
    return tuple(getattr(attention_packed, name) for name in request.param)


def _inputs(rng, shape, dtype):
    B, T, H, D = shape
    qkv = rng.standard_normal((B, T, 3 * H * D)).astype(dtype)
    qkv[..., H * D : 2 * H * D] *= 2                        # keys a little larger: sharper weights
    dout = rng.standard_normal((B, T, H * D)).astype(dtype)
    return qkv, dout


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", PACKED_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_packed_reference_equals_unpacked_reference(rng, dtype, shape):
    B, T, H, D = shape
    qkv, dout = _inputs(rng, shape, dtype)
    q, k, v = attention_packed.unpack_heads(qkv, H)                    # (B, H, T, D)
    want_out, p = attention.attention_forward_reference(q, k, v)
    out, lse = attention_packed.packed_forward_reference(qkv, H)
    assert out.shape == (B, T, H * D) and lse.shape == (B, H, T)
    assert_close(out, want_out.transpose(0, 2, 1, 3).reshape(B, T, H * D), dtype)
    # lse is the log of each row's softmax denominator: exp(s - lse) are the weights
    s = (q @ k.swapaxes(-1, -2)) / np.sqrt(D)
    s[..., attention.causal_mask(np, T, T)] = -np.inf
    assert_close(np.exp(s - lse[..., None]), p, dtype)
    g = dout.reshape(B, T, H, D).transpose(0, 2, 1, 3)
    want = attention_packed.pack_heads(np, *attention.attention_backward_reference(g, q, k, v, p))
    assert_close(attention_packed.packed_backward_reference(dout, qkv, out, lse, H), want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", PACKED_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_compiled_version_matches_packed_reference(rng, dtype, shape, version):
    forward, backward = version
    H = shape[2]
    qkv, dout = _inputs(rng, shape, dtype)
    out, lse = attention_packed.packed_forward_reference(qkv, H)
    got_out, got_lse = forward(qkv, H)
    assert got_out.dtype == dtype and got_lse.dtype == dtype
    assert_close(got_out, out, dtype)
    assert_close(got_lse, lse, dtype)
    want = attention_packed.packed_backward_reference(dout, qkv, out, lse, H)
    got = backward(dout, qkv, out, lse, H)
    assert got.shape == qkv.shape and got.dtype == dtype
    assert_close(got, want, dtype)


@pytest.mark.parametrize("T", [7, 40])
def test_compiled_version_is_causal(rng, version, T):
    # changing the last position's key and value changes only the last position's output
    forward, _ = version
    qkv, _ = _inputs(rng, (1, T, 2, 4), np.float32)
    out, _ = forward(qkv, 2)
    qkv[:, -1, 8:] += 5.0                                              # k and v of the last position
    out2, _ = forward(qkv, 2)
    np.testing.assert_array_equal(out2[:, :-1], out[:, :-1])
    assert not np.allclose(out2[:, -1], out[:, -1])


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_a_bad_future_key_never_reaches_earlier_rows(rng, version, bad):
    """Version 4 computes the masked scores of a block and drops them: an inf or NaN in the
    last position's key must change nothing in the outputs and log-denominators of the rows
    before it. (Only the forward pass: backward's products multiply the zero weights by that
    key, and 0 * inf is NaN in BLAS as anywhere.)"""
    forward, _ = version
    H, D, T = 2, 4, 40                                                 # blocks of 32: a ragged last one
    qkv, _ = _inputs(rng, (1, T, H, D), np.float32)
    out, lse = forward(qkv, H)
    bad_qkv = qkv.copy()
    bad_qkv[:, -1, H * D:2 * H * D] = bad                              # the last position's keys
    with np.errstate(invalid="ignore", over="ignore"):
        bad_out, bad_lse = forward(bad_qkv, H)
    np.testing.assert_array_equal(bad_out[:, :-1], out[:, :-1])
    np.testing.assert_array_equal(bad_lse[:, :, :-1], lse[:, :, :-1])


def test_compiled_version_nan_in_gives_nan_out_not_an_exception(version):
    qkv = np.ones((1, 6, 3 * 4), np.float32)
    qkv[0, 3, 1] = np.nan                                              # one query goes bad
    out, _ = version[0](qkv, 1)
    assert np.isnan(out[0, 3]).all()
    assert np.isfinite(np.delete(out, 3, axis=1)).all()


def test_compiled_version_large_scores_stay_finite(rng, version):
    qkv = 30 * rng.standard_normal((1, 8, 3 * 2 * 10)).astype(np.float32)  # scores of +-300
    out, lse = version[0](qkv, 2)
    want_out, want_lse = attention_packed.packed_forward_reference(qkv, 2)
    assert np.isfinite(out).all() and np.isfinite(lse).all()
    assert_close(out, want_out, np.float32)
    assert_close(lse, want_lse, np.float32)


def test_compiled_version_peaked_attention_makes_no_subnormal_gradients(version):
    """A trained model's sharp attention underflows exp(); subnormal floats are ~100x slower."""
    forward, backward = version
    rng = np.random.default_rng(0)
    B, T, H, D = 2, 32, 2, 8
    qkv = rng.standard_normal((B, T, 3 * H * D)).astype(np.float32)
    qkv[..., : H * D] *= 40.0                               # scores spread over hundreds
    dout = rng.standard_normal((B, T, H * D)).astype(np.float32)
    out, lse = forward(qkv, H)
    dqkv = backward(dout, qkv, out, lse, H)
    tiny = np.finfo(np.float32).tiny
    assert not ((dqkv != 0) & (np.abs(dqkv) < tiny)).any()
    assert np.isfinite(dqkv).all()


def test_v1_kernels_run_as_plain_python(rng):
    # .py_func is the loop as written (prange is range): same answer as the reference
    B, T, H, D = 1, 6, 2, 3
    qkv, dout = _inputs(rng, (B, T, H, D), np.float64)
    out, lse = np.empty((B, T, H, D)), np.empty((B, H, T))
    attention_packed._forward_kernel_v1.py_func(qkv.reshape(B, T, 3, H, D), out, lse)
    want_out, want_lse = attention_packed.packed_forward_reference(qkv, H)
    assert_close(out.reshape(B, T, H * D), want_out, np.float64)
    assert_close(lse, want_lse, np.float64)


@pytest.mark.parametrize("blas_kernels", ["1", "0"])
def test_dispatch_runs_the_fastest_version_and_the_reference_when_asked(monkeypatch, kernel_mode, blas_kernels):
    # auto: version 2 where NumPy's OpenBLAS is found, version 1 without it (or with
    # SCRATCHLM_BLAS_KERNELS=0); reference mode: neither
    monkeypatch.setenv("SCRATCHLM_BLAS_KERNELS", blas_kernels)
    calls = []
    for name in ("packed_forward_v1", "packed_forward_v2"):
        real = getattr(attention_packed, name)
        monkeypatch.setattr(attention_packed, name, lambda *a, name=name, real=real: calls.append(name) or real(*a))
    qkv = np.ones((1, 4, 6), np.float32)
    attention_packed.packed_forward(qkv, 1)
    attention_packed.packed_forward(qkv.astype(np.float16), 1)        # no compiled float16
    fastest = "packed_forward_v2" if blas.available() else "packed_forward_v1"
    assert calls == ([fastest] if kernel_mode == "auto" else [])
