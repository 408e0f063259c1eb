"""bias.py against its reference, and gelu.py's fused MLP kernels against the unfused calls."""

from __future__ import annotations

import numpy as np
import pytest

from scratchlm.kernels import bias, gelu
from scratchlm.kernels._lesson import assert_close

DTYPES = [np.float32, np.float64]
# (N, width): one row; fewer rows than chunks; rows not a multiple of the chunk count;
# config-c-like; above the size where kernels go parallel
SHAPES = [(1, 5), (3, 7), (130, 9), (256, 64), (700, 96)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_bias_v1_matches_reference(rng, dtype, shape):
    y = rng.standard_normal(shape).astype(dtype)
    b = rng.standard_normal(shape[1]).astype(dtype)
    want = y + b
    got = bias.add_bias_v1(y.copy(), b)
    assert got.dtype == dtype
    assert_close(got, want, dtype)
    db = bias.bias_grad_v1(y)
    assert db.dtype == dtype and db.shape == (shape[1],)
    assert_close(db, y.astype(np.float64).sum(axis=0), dtype)


def test_add_bias_is_in_place_and_dispatch_takes_any_layout(rng, kernel_mode):
    y = rng.standard_normal((40, 6)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    want = y + b
    assert bias.add_bias(y, b) is y
    assert_close(y, want, np.float32)
    strided = rng.standard_normal((40, 12)).astype(np.float32)[:, ::2]        # (40, 6), not contiguous
    assert_close(bias.bias_grad(strided), strided.sum(axis=0), np.float32)
    want_strided = strided + b
    assert_close(bias.add_bias(strided, b), want_strided, np.float32)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_fused_bias_gelu_forward_matches_separate_calls(rng, kernel_mode, shape):
    h = (3 * rng.standard_normal(shape)).astype(np.float32)
    b = rng.standard_normal(shape[1]).astype(np.float32)
    want_h = h + b
    want = gelu.gelu_forward_reference(want_h)
    got = gelu.bias_gelu_forward(h, b)
    assert_close(h, want_h, np.float32)                                     # the bias went in, in place
    assert_close(got, want, np.float32)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_fused_gelu_backward_matches_separate_calls(rng, kernel_mode, dtype, shape):
    h = (3 * rng.standard_normal(shape)).astype(dtype)
    da = rng.standard_normal(shape).astype(dtype)
    want_dh = gelu.gelu_backward_reference(da, h)
    want = (gelu.gelu_forward_reference(h), want_dh, want_dh.astype(np.float64).sum(axis=0))
    got = gelu.gelu_backward_recompute(da.copy(), h)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == dtype and g.shape == w.shape
        assert_close(g, w, dtype)


def test_fused_kernels_run_when_expected(monkeypatch, kernel_mode):
    calls = []
    for name in ("_bias_gelu_forward_kernel", "_gelu_backward_recompute_kernel"):
        real = getattr(gelu, name)
        monkeypatch.setattr(gelu, name, lambda *a, name=name, real=real: calls.append(name) or real(*a))
    h, b = np.ones((4, 3), np.float32), np.ones(3, np.float32)
    gelu.bias_gelu_forward(h, b)
    gelu.gelu_backward_recompute(np.ones((4, 3), np.float32), h)
    gelu.gelu_backward_recompute(np.ones((4, 3)), h.astype(np.float64))     # float64: the references
    fused = ["_bias_gelu_forward_kernel", "_gelu_backward_recompute_kernel"]
    assert calls == (fused if kernel_mode == "auto" else [])
