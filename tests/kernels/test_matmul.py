"""kernels/matmul.py (teaching only): every version against BLAS.
"""

from __future__ import annotations

import pytest
from kernel_cases import DTYPES, normal

from scratchlm.kernels import matmul
from scratchlm.kernels._lesson import assert_close


# ---- matmul (teaching only) -------------------------------------------------------------
@pytest.mark.parametrize("fn", [matmul.matmul_v1, matmul.matmul_v2, matmul.matmul_v3])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 7, 3), (33, 18, 65)])   # K % 4 != 0
def test_matmul_versions_match_blas(rng, fn, dtype, shape):
    M, K, N = shape
    a, b = normal(rng, (M, K), dtype), normal(rng, (K, N), dtype)
    assert_close(fn(a, b), a @ b, dtype)
