"""kernels/layernorm.py and kernels/rmsnorm.py: version 1 against the reference in float32 and
float64 on awkward shapes (C = 1, empty), non-contiguous input, and the loop read as Python.

Tolerances (``kernels/_lesson.py``): 1e-5 in float32 and 1e-12 in float64, relative to
each element plus the array's largest value.
"""

from __future__ import annotations

import numpy as np
import pytest
from kernel_cases import DTYPES, assert_all_close, normal

from scratchlm.kernels import layernorm, rmsnorm

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

# ---- the compiled kernels are readable Python ----
def test_kernels_run_as_plain_python(rng):
    # .py_func is the loop as written (prange is range): same answer as the compiled kernel
    x = normal(rng, (3, 5), np.float64)
    w, b = normal(rng, 5, np.float64), normal(rng, 5, np.float64)
    y, mean, rstd = np.empty_like(x), np.empty(3), np.empty(3)
    layernorm._layernorm_forward_kernel.py_func(x, w, b, 1e-5, y, mean, rstd)
    assert_all_close((y, mean, rstd), layernorm.layernorm_forward_reference(x, w, b), np.float64)
