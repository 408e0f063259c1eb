"""kernels/buffers.py: zero, accumulate, scale and add on both cores equal NumPy's, and the engine uses them."""

from __future__ import annotations

import numpy as np
import pytest

from scratchlm.autograd.tensor import Tensor
from scratchlm.kernels import buffers, numba_tools
from scratchlm.optim import AdamW

SIZES = [1, 1000, numba_tools.SERIAL_BELOW + 3, 300_001]      # one thread, then the cores (odd splits)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", SIZES)
def test_v1_equals_reference_bit_for_bit(rng, dtype, size):
    start, other = (rng.standard_normal(size).astype(dtype) for _ in range(2))
    for v1, reference, extra in [(buffers.zero_v1, buffers.zero_reference, ()),
                                 (buffers.accumulate_v1, buffers.accumulate_reference, (other,)),
                                 (buffers.scale_v1, buffers.scale_reference, (0.3,))]:
        got, want = start.copy(), start.copy()
        v1(got, *extra)
        reference(want, *extra)
        np.testing.assert_array_equal(got, want)
        assert not np.array_equal(want, start)               # the pass changed something


def test_v1_works_on_views_of_a_flat_buffer(rng):
    flat = rng.standard_normal(70_000).astype(np.float32)
    want = flat.copy()
    view, part = flat[10_000:50_000].reshape(200, 200), rng.standard_normal((200, 200)).astype(np.float32)
    buffers.accumulate_v1(view, part)
    want[10_000:50_000] += part.reshape(-1)
    np.testing.assert_array_equal(flat, want)               # only the view's elements moved


def test_dispatchers_pick_v1_for_big_contiguous_float_arrays(monkeypatch, rng, kernel_mode):
    calls = []
    for name in ("zero_v1", "accumulate_v1", "scale_v1", "add_v1"):
        monkeypatch.setattr(buffers, name, lambda *a, name=name: calls.append(name))
    g = rng.standard_normal((300, 200)).astype(np.float32)
    buffers.zero(g)
    buffers.accumulate(g, g.copy())
    buffers.scale(g, 0.5)
    buffers.add(g, g)
    assert calls == ([] if kernel_mode == "reference" else ["zero_v1", "accumulate_v1", "scale_v1", "add_v1"])
    calls.clear()
    small = g[:100].copy()                                   # 20,000 elements: NumPy on one core
    buffers.zero(small)
    buffers.accumulate(small, small.copy())
    buffers.scale(small, 0.5)
    assert buffers.add(small, small).shape == small.shape
    assert calls == []


@pytest.mark.parametrize("make_x", [
    lambda t: t.astype(np.float64),                          # another dtype: NumPy casts
    lambda t: np.asfortranarray(t),                          # not C-contiguous
    lambda t: t[:1],                                         # broadcast over the rows
    lambda t: t.astype(np.float16)])
def test_accumulate_falls_back_to_numpy_where_v1_does_not_apply(monkeypatch, rng, make_x):
    monkeypatch.setattr(buffers, "accumulate_v1", lambda *a: pytest.fail("v1 called"))
    total = rng.standard_normal((40, 30)).astype(np.float32)
    x = make_x(rng.standard_normal((40, 30)).astype(np.float32))
    want = total.copy()
    want += x
    buffers.accumulate(total, x)
    np.testing.assert_array_equal(total, want)


def test_zero_and_scale_fall_back_for_strided_buffers(rng):
    g = rng.standard_normal((100, 400)).astype(np.float32)[:, ::2]     # every other column
    want = g * np.float32(0.25)
    buffers.scale(g, 0.25)
    np.testing.assert_array_equal(g, want)
    buffers.zero(g)
    assert not g.any()


def test_optimizer_and_autograd_use_the_passes(monkeypatch, rng, kernel_mode):
    """zero_grad zeroes the whole flat buffer and a second backward adds into each view."""
    calls = []
    for name in ("zero_v1", "accumulate_v1"):
        real = getattr(buffers, name)
        monkeypatch.setattr(buffers, name, lambda *a, real=real, name=name: calls.append(name) or real(*a))
    w = Tensor(rng.standard_normal((300, 200)).astype(np.float32), requires_grad=True)
    b = Tensor(rng.standard_normal(200).astype(np.float32), requires_grad=True)
    opt = AdamW([w, b])
    x = rng.standard_normal((5, 300)).astype(np.float32)
    for _ in range(2):                                       # two backwards: the second adds
        ((Tensor(x) @ w + b) * (Tensor(x) @ w + b)).sum().backward()
    once = 2 * x.T @ (x @ w.data + b.data)                   # d/dw sum((xw + b)^2)
    np.testing.assert_allclose(w.grad, 2 * once, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(b.grad, 2 * (2 * (x @ w.data + b.data)).sum(axis=0), rtol=1e-4, atol=1e-3)
    opt.zero_grad()
    assert not opt.flat_grads.any()
    assert np.shares_memory(w.grad, opt.flat_grads)         # still views, still zero
    assert not w.grad.any() and not b.grad.any()
    # w's 60,000 gradients are added on both cores (two uses per backward); b's 200 stay with NumPy
    assert calls == ([] if kernel_mode == "reference" else ["accumulate_v1"] * 4 + ["zero_v1"])


@pytest.mark.parametrize("norm_scale", [0.5, 3.0])
def test_clip_grad_norm_scales_the_gradients_to_the_limit(rng, kernel_mode, norm_scale):
    w = Tensor(rng.standard_normal(70_000).astype(np.float64), requires_grad=True)
    opt = AdamW([w])
    g = rng.standard_normal(70_000)
    opt.flat_grads[:] = g * (norm_scale / np.linalg.norm(g))          # a gradient of norm norm_scale
    before = opt.flat_grads.copy()
    norm = opt.clip_grad_norm(1.0)
    assert norm == pytest.approx(norm_scale, rel=1e-12)
    if norm_scale > 1.0:
        np.testing.assert_allclose(opt.flat_grads, before / (norm_scale + 1e-6), rtol=1e-14)
        assert np.linalg.norm(w.grad) == pytest.approx(1.0, rel=1e-6)
    else:
        np.testing.assert_array_equal(opt.flat_grads, before)          # under the limit: untouched


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3,), (2, 5), (8, 64, 70)])            # one thread, then the cores
def test_add_v1_equals_numpy(rng, dtype, shape):
    a, b = (rng.standard_normal(shape).astype(dtype) for _ in range(2))
    got = buffers.add_v1(a, b)
    np.testing.assert_array_equal(got, a + b)
    assert got.shape == shape and got.dtype == dtype and not np.shares_memory(got, a)


@pytest.mark.parametrize("b", [2.0, np.float32(2.0), np.ones(7, np.float32), np.ones((3, 7), np.float64),
                               np.ones((7, 3), np.float32).T])
def test_add_falls_back_to_numpy_for_scalars_broadcasts_casts_and_strides(monkeypatch, b):
    monkeypatch.setattr(buffers, "add_v1", lambda *a: pytest.fail("v1 called"))
    a = np.arange(21, dtype=np.float32).reshape(3, 7)
    got = buffers.add(a, b)
    want = a + b
    np.testing.assert_array_equal(got, want)
    assert got.dtype == want.dtype


def test_residual_add_and_gradient_sum_go_through_add(monkeypatch, rng, kernel_mode):
    """x + f(x): forward adds two arrays, and backward adds the two gradients that reach x."""
    calls = []
    real_add = buffers.add
    monkeypatch.setattr(buffers, "add", lambda a, b: calls.append(a.shape) or real_add(a, b))
    x = Tensor(rng.standard_normal((4, 6)).astype(np.float32), requires_grad=True)
    h = x * 3.0                                              # not a leaf: its gradients meet in the tape
    y = h + h * h                                            # dy/dx = 3 (1 + 2h)
    y.sum().backward()
    np.testing.assert_allclose(x.grad, 3 * (1 + 2 * h.data), rtol=1e-6)
    assert calls == [(4, 6)] * 3            # the forward add; h's three gradients (add's, mul's two) summed twice
