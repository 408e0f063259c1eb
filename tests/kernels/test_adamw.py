"""kernels/adamw.py: version 1 against the reference after five steps (held to 1e-6 in float32
and 1e-12 in float64: it does the reference's operations in its order), and the grad norm.
"""

from __future__ import annotations

import numpy as np
import pytest
from kernel_cases import DTYPES, normal

from scratchlm.kernels import adamw

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
