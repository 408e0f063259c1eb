"""Every compiled version of layernorm, rmsnorm, GELU, embedding and cross-entropy against
its NumPy reference (version 0), in float32 and float64, on awkward shapes; and the
dispatchers' choice between them.

Tolerances (``kernels/_lesson.py``): 1e-5 in float32 and 1e-12 in float64, relative to
each element plus the array's largest value (sums over many rows are only as exact as
their largest terms).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from scratchlm.kernels import cross_entropy, embedding, gelu, layernorm, rmsnorm
from scratchlm.kernels._lesson import assert_close

DTYPES = [np.float32, np.float64]


def normal(rng, shape, dtype, scale=1.0, shift=0.0):
    return (rng.standard_normal(shape) * scale + shift).astype(dtype)


def assert_all_close(got, want, dtype):
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape
        assert_close(g, w, dtype)


# ---- layernorm and rmsnorm ---------------------------------------------------------------
# layernorm also runs C = 1 (every dx exactly 0); rmsnorm starts at C = 3, since its C = 1
# dx is r g eps / (x^2 + eps): a cancellation residue, not a value to compare digits of
NORM_SHAPES = [(1, 7), (5, 13), (130, 33), (64, 256), (0, 8)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1)] + NORM_SHAPES)
def test_layernorm_v1_matches_reference(rng, dtype, shape):
    x, dy = normal(rng, shape, dtype, 2.0, 0.5), normal(rng, shape, dtype)
    w, b = normal(rng, shape[1], dtype, 0.3, 1.0), normal(rng, shape[1], dtype)
    y, mean, rstd = layernorm.layernorm_forward_reference(x, w, b)
    assert_all_close(layernorm.layernorm_forward_v1(x, w, b), (y, mean, rstd), dtype)
    want = layernorm.layernorm_backward_reference(dy, x, w, mean, rstd)
    assert_all_close(layernorm.layernorm_backward_v1(dy, x, w, mean, rstd), want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 3)] + NORM_SHAPES)
def test_rmsnorm_v1_matches_reference(rng, dtype, shape):
    x, dy = normal(rng, shape, dtype, 2.0, 0.5), normal(rng, shape, dtype)
    w = normal(rng, shape[1], dtype, 0.3, 1.0)
    y, rstd = rmsnorm.rmsnorm_forward_reference(x, w)
    assert_all_close(rmsnorm.rmsnorm_forward_v1(x, w), (y, rstd), dtype)
    want = rmsnorm.rmsnorm_backward_reference(dy, x, w, rstd)
    assert_all_close(rmsnorm.rmsnorm_backward_v1(dy, x, w, rstd), want, dtype)


def test_norms_accept_non_contiguous_input(rng):
    x = normal(rng, (12, 10), np.float64)[:, ::2]                       # (12, 5), strided
    w, b = normal(rng, 5, np.float64), normal(rng, 5, np.float64)
    assert_all_close(layernorm.layernorm_forward_v1(x, w, b),
                     layernorm.layernorm_forward_reference(x, w, b), np.float64)
    assert_all_close(rmsnorm.rmsnorm_forward_v1(x, w), rmsnorm.rmsnorm_forward_reference(x, w),
                     np.float64)


# ---- GELU ------------------------------------------------------------------------------
GELU_VERSIONS = {
    "v1": (gelu.gelu_forward_v1, gelu.gelu_backward_v1, DTYPES),
    "v2": (gelu.gelu_forward_v2, gelu.gelu_backward_v2, [np.float32]),  # rational tanh
}


@pytest.mark.parametrize("version", GELU_VERSIONS)
@pytest.mark.parametrize("shape", [(1,), (3, 5, 7), (2, 1000)])
def test_gelu_versions_match_reference(rng, version, shape):
    forward, backward, dtypes = GELU_VERSIONS[version]
    for dtype in dtypes:
        x, dy = normal(rng, shape, dtype, 3.0), normal(rng, shape, dtype)
        assert_all_close((forward(x),), (gelu.gelu_forward_reference(x),), dtype)
        assert_all_close((backward(dy, x),), (gelu.gelu_backward_reference(dy, x),), dtype)


def test_gelu_v2_far_from_zero_and_at_zero():
    # beyond |u| = 9 the rational tanh is clamped: GELU(x) = x for large x, 0 for very negative x
    x = np.array([-40.0, -9.0, -4.0, -1e-3, 0.0, 1e-3, 4.0, 9.0, 40.0], dtype=np.float32)
    assert_all_close((gelu.gelu_forward_v2(x),), (gelu.gelu_forward_reference(x),), np.float32)
    dy = np.ones_like(x)
    assert_all_close((gelu.gelu_backward_v2(dy, x),), (gelu.gelu_backward_reference(dy, x),),
                     np.float32)


def test_gelu_backward_dispatch_broadcasts_a_smaller_gradient(rng, kernel_mode):
    # a dy that broadcasts against x must not reach version 2, which reads both as flat arrays
    x, dy = normal(rng, (2, 3), np.float32, 3.0), normal(rng, (3,), np.float32)
    want = gelu.gelu_backward_reference(dy, x)
    assert_all_close((gelu.gelu_backward(dy, x),), (want,), np.float32)


# ---- embedding --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ids_dtype", [np.int64, np.int32, np.uint16])
@pytest.mark.parametrize("vocab, width, ids_shape", [(65, 256, (4, 32)), (7, 13, (3, 5)),
                                                     (1, 5, (2, 3)), (10, 40, (17,))])
def test_embedding_v1_matches_reference(rng, dtype, ids_dtype, vocab, width, ids_shape):
    weight = normal(rng, (vocab, width), dtype)
    ids = rng.integers(0, vocab, size=ids_shape).astype(ids_dtype)    # repeats in every case
    dout = normal(rng, ids_shape + (width,), dtype)
    out = embedding.embedding_forward_v1(weight, ids)
    assert out.shape == ids_shape + (width,)
    np.testing.assert_array_equal(out, embedding.embedding_forward_reference(weight, ids))
    assert_all_close((embedding.embedding_backward_v1(dout, ids, vocab),),
                     (embedding.embedding_backward_reference(dout, ids, vocab),), dtype)


def test_embedding_backward_accumulates_every_repeat():
    ids = np.array([[3, 3, 3, 3], [3, 0, 3, 3]])                      # id 3 seven times
    dweight = embedding.embedding_backward_v1(np.ones((2, 4, 40)), ids, 5)
    np.testing.assert_array_equal(dweight[:, 0], [1.0, 0.0, 0.0, 7.0, 0.0])
    np.testing.assert_array_equal(dweight, np.repeat(dweight[:, :1], 40, axis=1))


def test_embedding_dispatch_rejects_out_of_range_ids(kernel_mode):
    weight = np.zeros((5, 3), dtype=np.float32)
    with pytest.raises(IndexError):
        embedding.embedding_forward(weight, np.array([0, 5]))
    with pytest.raises(IndexError):
        embedding.embedding_backward(np.ones((2, 3), np.float32), np.array([1, 9]), 5)


# ---- cross-entropy ----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows, vocab", [(1, 1), (1, 65), (37, 5), (256, 65)])
@pytest.mark.parametrize("compute_grad", [True, False])
def test_cross_entropy_v1_matches_reference(rng, dtype, rows, vocab, compute_grad):
    logits = normal(rng, (rows, vocab), dtype, 3.0)
    targets = rng.integers(0, vocab, size=rows)
    targets[1::3] = -1                                                # ignored rows
    want_loss, want_grad = cross_entropy.cross_entropy_forward_reference(
        logits, targets, -1, compute_grad)
    loss, dlogits = cross_entropy.cross_entropy_forward_v1(logits, targets, -1, compute_grad)
    assert isinstance(loss, np.ndarray) and loss.shape == () and loss.dtype == dtype
    assert_close(loss, want_loss, dtype)
    if compute_grad:
        assert_all_close((dlogits,), (want_grad,), dtype)
        np.testing.assert_array_equal(dlogits[1::3], 0.0)            # ignored rows: no gradient
    else:
        assert dlogits is None


def test_cross_entropy_v1_all_ignored_and_custom_ignore_index():
    logits = np.arange(12.0).reshape(3, 4)
    loss, dlogits = cross_entropy.cross_entropy_forward_v1(logits, np.full(3, 7), ignore_index=7)
    assert loss == 0.0
    np.testing.assert_array_equal(dlogits, 0.0)


def test_cross_entropy_v1_masked_logits_stay_finite():
    logits = np.array([[0.0, -np.inf, 2.0], [-np.inf, 1.0, -np.inf]], dtype=np.float32)
    targets = np.array([2, 1])
    loss, dlogits = cross_entropy.cross_entropy_forward_v1(logits, targets)
    want_loss, want_grad = cross_entropy.cross_entropy_forward_reference(logits, targets)
    assert np.isfinite(loss) and np.all(np.isfinite(dlogits))
    assert_close(loss, want_loss, np.float32)
    assert_all_close((dlogits,), (want_grad,), np.float32)


def test_cross_entropy_dispatch_falls_back_on_bad_targets(kernel_mode):
    with pytest.raises(IndexError):
        cross_entropy.cross_entropy_forward(np.zeros((2, 3)), np.array([0, 3]))


# ---- the compiled kernels are readable Python, and dispatch picks them -------------------
def test_kernels_run_as_plain_python(rng):
    # .py_func is the loop as written (prange is range): same answer as the compiled kernel
    x = normal(rng, (3, 5), np.float64)
    w, b = normal(rng, 5, np.float64), normal(rng, 5, np.float64)
    y, mean, rstd = np.empty_like(x), np.empty(3), np.empty(3)
    layernorm._layernorm_forward_kernel.py_func(x, w, b, 1e-5, y, mean, rstd)
    assert_all_close((y, mean, rstd), layernorm.layernorm_forward_reference(x, w, b), np.float64)


DISPATCHERS = [  # (module, dispatcher, fast version it should pick, arguments)
    (layernorm, "layernorm_forward", "layernorm_forward_v1",
     lambda: (np.ones((2, 3), np.float32), np.ones(3, np.float32), np.zeros(3, np.float32))),
    (rmsnorm, "rmsnorm_forward", "rmsnorm_forward_v1",
     lambda: (np.ones((2, 3), np.float32), np.ones(3, np.float32))),
    (gelu, "gelu_forward", "gelu_forward_v2", lambda: (np.ones((2, 3), np.float32),)),
    (embedding, "embedding_forward", "embedding_forward_v1",
     lambda: (np.ones((4, 3), np.float32), np.array([0, 3]))),
    (cross_entropy, "cross_entropy_forward", "cross_entropy_forward_v1",
     lambda: (np.ones((2, 3), np.float32), np.array([0, 2]))),
    (layernorm, "layernorm_backward", "layernorm_backward_v1",
     lambda: (np.ones((2, 3), np.float32), np.ones((2, 3), np.float32), np.ones(3, np.float32),
              np.ones(2, np.float32), np.ones(2, np.float32))),
    (rmsnorm, "rmsnorm_backward", "rmsnorm_backward_v1",
     lambda: (np.ones((2, 3), np.float32), np.ones((2, 3), np.float32), np.ones(3, np.float32),
              np.ones(2, np.float32))),
    (gelu, "gelu_backward", "gelu_backward_v2",
     lambda: (np.ones((2, 3), np.float32), np.ones((2, 3), np.float32))),
    (embedding, "embedding_backward", "embedding_backward_v1",
     lambda: (np.ones((2, 3), np.float32), np.array([0, 3]), 4)),
]


def test_importing_scratchlm_does_not_import_numba():
    code = "import sys, scratchlm.model, scratchlm.autograd.ops; print('numba' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"
