"""kernels/cross_entropy.py: version 1 against the reference, with and without the gradient,
ignored targets, masked logits, and the dispatcher's fallback.
"""

from __future__ import annotations

import numpy as np
import pytest
from kernel_cases import DTYPES, assert_all_close, normal

from scratchlm.kernels import cross_entropy
from scratchlm.kernels._lesson import assert_close


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
