"""kernels/vector_exp.py: the vectorisable exps against NumPy's, at the edges of their ranges.
"""

from __future__ import annotations

import numpy as np
import pytest

from scratchlm.kernels.numba_tools import lazy_njit
from scratchlm.kernels.vector_exp import exp_float32, exp_for, exp_vectorisable


# ---- the vectorisable exps ----------------------------------------------------------------
@lazy_njit()
def _exp_loop(x, y):
    for i in range(x.shape[0]):
        y[i] = exp_vectorisable(x[i])


@lazy_njit()
def _exp_float32_loop(x, y):
    for i in range(x.shape[0]):
        y[i] = exp_float32(x[i])


@lazy_njit()
def _exp_for_loop(x, y):
    for i in range(x.shape[0]):
        y[i] = exp_for(x, x[i])


EXP_LOOPS = [  # (loop, dtype, rtol, the top of the range it is exact on)
    (_exp_loop, np.float32, 2e-7, 88.0), (_exp_loop, np.float64, 3e-14, 700.0),
    (_exp_float32_loop, np.float32, 2e-7, 88.7228), (_exp_for_loop, np.float32, 2e-7, 88.7228),
    (_exp_for_loop, np.float64, 3e-14, 700.0)]


@pytest.mark.parametrize("loop, dtype, rtol, top", EXP_LOOPS)
def test_exp_versions_match_numpy(loop, dtype, rtol, top):
    x = np.linspace(-100.0 if dtype == np.float32 else -700.0, top, 200_001).astype(dtype)
    y = np.empty_like(x)
    loop(x, y)
    want = np.exp(x.astype(np.float64))
    normal_range = want > 2 * np.finfo(dtype).tiny
    np.testing.assert_allclose(y[normal_range], want[normal_range], rtol=rtol)
    assert y.dtype == dtype


@pytest.mark.parametrize("loop, dtype", [(loop, dtype) for loop, dtype, _, _ in EXP_LOOPS])
def test_exp_versions_edges(loop, dtype):
    x = np.array([0.0, -0.0, -np.inf, -750.0, -1e30, np.nan, -90.0], dtype)
    y = np.empty_like(x)
    loop(x, y)
    assert y[0] == 1.0 and y[1] == 1.0
    assert y[2] == 0.0 and y[3] == 0.0 and y[4] == 0.0
    assert np.isnan(y[5])
    if loop is _exp_float32_loop or (loop is _exp_for_loop and dtype == np.float32):
        assert y[6] == 0.0                                  # float32's version stops at the normal floats
    else:
        assert 0.0 < y[6] < 1e-38                           # the other goes on (subnormal in float32)


@pytest.mark.parametrize("loop", [_exp_float32_loop, _exp_for_loop])
def test_exp_float32_overflows_to_inf_and_no_earlier(loop):
    x = np.array([88.0, 88.5, 88.7228, 88.7229, 89.5, 100.0, 1e30, np.inf], np.float32)
    y = np.empty_like(x)
    loop(x, y)
    np.testing.assert_allclose(y[:3], np.exp(x[:3].astype(np.float64)), rtol=2e-7)   # 2^128 is no float32
    assert np.all(y[3:] == np.inf)                          # beyond 3.4e38


def test_exp_for_picks_the_version_of_the_arrays_dtype():
    x32 = np.linspace(-20.0, 0.0, 10_001).astype(np.float32)
    picked, by_32, by_generic = (np.empty_like(x32) for _ in range(3))
    _exp_for_loop(x32, picked)
    _exp_float32_loop(x32, by_32)
    _exp_loop(x32, by_generic)
    np.testing.assert_array_equal(picked, by_32)
    assert not np.array_equal(by_32, by_generic)            # the two versions round differently
    x64 = x32.astype(np.float64)
    picked64, by_generic64 = np.empty_like(x64), np.empty_like(x64)
    _exp_for_loop(x64, picked64)
    _exp_loop(x64, by_generic64)
    np.testing.assert_array_equal(picked64, by_generic64)
