"""Finite-difference checks (float64) of the fused transformer ops in scratchlm/autograd/ops/transformer.py.

Every test takes the ``kernel_mode`` fixture, so it runs once on the NumPy reference
kernels and once on the fastest ones (Numba where it is available). The fused transformer
ops' checks also take the ``backend`` fixture: they run again on CuPy arrays (the CUDA
versions, or the references on the GPU) where a GPU is usable, and skip elsewhere.
"""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import assert_gradients_match

from scratchlm.autograd import ops
from scratchlm.autograd.tensor import Tensor
from scratchlm.kernels import dropout as dropout_kernels
from scratchlm.model import rope_tables


def normal(shape, seed=0, scale=1.0):
    return np.random.default_rng(seed).standard_normal(shape) * scale


# ---- linear ------------------------------------------------------------------------
@pytest.mark.parametrize("x_shape", [(4, 3), (2, 5, 3)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear(kernel_mode, x_shape, with_bias):
    x, weight, bias = normal(x_shape, 1), normal((6, 3), 2), normal((6,), 3)
    if with_bias:
        assert_gradients_match(ops.linear, x, weight, bias)
    else:
        assert_gradients_match(ops.linear, x, weight)


def test_linear_with_constant_input(kernel_mode):
    x = normal((2, 5, 3), 1)  # data, not a Tensor: only the weights get gradients
    assert_gradients_match(lambda w, b: ops.linear(x, w, b), normal((6, 3), 2), normal((6,), 3))


# ---- feed-forward (fc -> GELU -> proj as one node) ------------------------------------
@pytest.mark.parametrize("with_bias", [True, False])
def test_feed_forward(kernel_mode, backend, with_bias):
    x, w_fc, w_proj = normal((2, 5, 3), 1), normal((8, 3), 2), normal((3, 8), 3)
    if with_bias:
        assert_gradients_match(ops.feed_forward, x, w_fc, normal((8,), 4), w_proj, normal((3,), 5), xp=backend)
    else:
        assert_gradients_match(lambda *t: ops.feed_forward(t[0], t[1], None, t[2], None), x, w_fc, w_proj,
                               xp=backend)


def test_feed_forward_equals_linear_gelu_linear(kernel_mode):
    x, w_fc, b_fc, w_proj, b_proj = (Tensor(normal(s, i)) for i, s in enumerate([(2, 5, 3), (8, 3), (8,), (3, 8), (3,)]))
    fused = ops.feed_forward(x, w_fc, b_fc, w_proj, b_proj).data
    composed = ops.linear(ops.gelu(ops.linear(x, w_fc, b_fc)), w_proj, b_proj).data
    np.testing.assert_allclose(fused, composed, rtol=1e-12)


# ---- embedding ---------------------------------------------------------------------
def test_embedding_repeated_ids_accumulate(kernel_mode, backend):
    ids = np.array([[0, 3, 3, 1, 3], [1, 0, 3, 3, 5]])  # (B, T) with many repeats; 2 and 4 unused
    on_device = backend.asarray(ids)
    assert_gradients_match(lambda w: ops.embedding(w, on_device), normal((6, 4)), xp=backend)

    weight = Tensor(normal((6, 4)), requires_grad=True)
    ops.embedding(weight, ids).backward(np.ones((2, 5, 4)))
    counts = np.bincount(ids.reshape(-1), minlength=6).astype(np.float64)     # (V,)
    np.testing.assert_array_equal(weight.grad, np.repeat(counts[:, None], 4, axis=1))


# ---- norms and GELU ----------------------------------------------------------------
@pytest.mark.parametrize("x_shape", [(3, 7), (2, 3, 7)])
def test_layer_norm(kernel_mode, backend, x_shape):
    x = normal(x_shape, 1, scale=2.0) + 0.5
    assert_gradients_match(ops.layer_norm, x, 1.0 + normal((7,), 2, 0.3), normal((7,), 3), xp=backend)


@pytest.mark.parametrize("x_shape", [(3, 7), (2, 3, 7)])
def test_rms_norm(kernel_mode, backend, x_shape):
    x = normal(x_shape, 1, scale=2.0) + 0.5
    assert_gradients_match(ops.rms_norm, x, 1.0 + normal((7,), 2, 0.3), xp=backend)


def test_gelu(kernel_mode, backend):
    x = np.linspace(-4.0, 4.0, 24).reshape(2, 3, 4) + normal((2, 3, 4), 1, 0.01)
    assert_gradients_match(ops.gelu, x, xp=backend)


# ---- attention and rotary positions ------------------------------------------------
@pytest.mark.parametrize("tq, tk", [(5, 5), (1, 1), (2, 5), (1, 4)], ids=lambda t: str(t))
def test_causal_attention(kernel_mode, backend, tq, tk):
    B, H, D = 2, 2, 3
    q = normal((B, H, tq, D), 1)
    k = normal((B, H, tk, D), 2)
    v = normal((B, H, tk, D), 3)
    assert_gradients_match(ops.causal_attention, q, k, v, xp=backend)


@pytest.mark.parametrize("T", [1, 5, 9])
def test_causal_self_attention_on_packed_qkv(kernel_mode, backend, T):
    B, H, D = 2, 2, 3
    qkv = normal((B, T, 3 * H * D), 4)                                # (B, T, 3C)
    assert_gradients_match(lambda x: ops.causal_self_attention(x, H), qkv, xp=backend)


def test_causal_attention_is_causal(kernel_mode):
    """The first query sees only the first key, so the output is exactly v[..., 0, :]."""
    q, k, v = normal((1, 2, 4, 3), 1), normal((1, 2, 4, 3), 2), normal((1, 2, 4, 3), 3)
    out = ops.causal_attention(Tensor(q), Tensor(k), Tensor(v)).data               # (B, H, T, D)
    np.testing.assert_allclose(out[:, :, 0], v[:, :, 0], rtol=1e-12)


@pytest.mark.parametrize("start", [0, 3])
def test_rope(kernel_mode, start):
    T, D = 5, 4
    cos, sin = rope_tables(np.arange(start, start + T), D, np.float64)             # 2 x (T, D/2)
    assert_gradients_match(lambda x: ops.rope(x, cos, sin), normal((2, 2, T, D)))


def test_rope_preserves_norms(kernel_mode):
    x = normal((1, 2, 5, 6))
    cos, sin = rope_tables(np.arange(5), 6, np.float64)
    out = ops.rope(Tensor(x), cos, sin).data
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-12)


# ---- cross-entropy -----------------------------------------------------------------
def test_cross_entropy(kernel_mode, backend):
    targets = backend.asarray(np.array([0, 4, 2, 2, 1, 3]))
    assert_gradients_match(lambda logits: ops.cross_entropy(logits, targets), normal((6, 5), scale=2.0), xp=backend)


def test_cross_entropy_skips_ignored_rows(kernel_mode, backend):
    targets = np.array([0, -1, 2, -1, 1, 3])
    logits = normal((6, 5), scale=2.0)
    on_device = backend.asarray(targets)
    assert_gradients_match(lambda lg: ops.cross_entropy(lg, on_device), logits, xp=backend)

    counted = targets != -1
    expected = ops.cross_entropy(Tensor(logits[counted]), targets[counted]).item()
    assert ops.cross_entropy(Tensor(logits), targets).item() == pytest.approx(expected, rel=1e-12)


def test_cross_entropy_other_ignore_index(kernel_mode):
    targets = np.array([0, 4, 2, 4, 1])
    assert_gradients_match(lambda lg: ops.cross_entropy(lg, targets, ignore_index=4), normal((5, 5)))


def test_cross_entropy_all_rows_ignored_is_zero(kernel_mode):
    logits = Tensor(normal((4, 5)), requires_grad=True)
    loss = ops.cross_entropy(logits, np.full(4, -1))
    loss.backward()
    assert loss.item() == 0.0
    assert np.all(logits.grad == 0.0)


# ---- dropout -----------------------------------------------------------------------
def test_dropout_gradient_is_mask_times_scale(kernel_mode):
    p, seed, shape = 0.3, 7, (3, 4, 5)
    x = normal(shape)
    assert_gradients_match(lambda t: ops.dropout(t, p, np.random.default_rng(seed)), x)

    key = int(np.random.default_rng(seed).integers(0, 2**63))                      # the op's one draw
    keep = dropout_kernels.keep_mask_reference(np, x.size, p, key).reshape(shape)   # (3, 4, 5)
    assert 0 < keep.sum() < keep.size
    tensor = Tensor(x, requires_grad=True)
    out = ops.dropout(tensor, p, np.random.default_rng(seed))
    out.backward(np.ones(shape))
    np.testing.assert_allclose(tensor.grad, keep / (1.0 - p), rtol=1e-15)
    np.testing.assert_allclose(out.data, x * keep / (1.0 - p), rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_is_identity_when_off(kernel_mode, dtype):
    x = Tensor(normal((3, 4)).astype(dtype), requires_grad=True)
    rng = np.random.default_rng(0)
    assert ops.dropout(x, 0.0, rng) is x
    assert ops.dropout(x, 0.5, rng, training=False) is x
    out = ops.dropout(x, 0.5, rng)
    assert out.dtype == dtype
