"""kernels/dropout.py: the compiled version equals the reference bit for bit, and the mask
behaves like independent draws (the right share kept, no pattern between neighbours, a new
mask for a new key). The CUDA version is checked in tests/kernels/test_cuda.py."""

from __future__ import annotations

import numpy as np
import pytest

from scratchlm.kernels import dropout

DTYPES = [np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(1,), (3, 5, 7), (8, 64, 130)])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_numba_equals_the_reference_bit_for_bit(compiled_kernels, rng, dtype, shape, p):
    x = rng.standard_normal(shape).astype(dtype)
    key = int(rng.integers(2**63))
    want = dropout.dropout_reference(x, p, key)
    got = dropout.dropout_v1(x, p, key)
    assert got.dtype == dtype and got.shape == shape
    np.testing.assert_array_equal(got, want)
    kept = want != 0
    np.testing.assert_array_equal(want[kept], x[kept] * dtype(1.0 / (1.0 - p)))   # survivors scaled once


def test_strided_input_is_read_in_its_logical_order(compiled_kernels, rng):
    x = rng.standard_normal((6, 10)).astype(np.float32)
    view = x[:, ::2]                                                        # (6, 5), not contiguous
    np.testing.assert_array_equal(dropout.dropout(view, 0.3, 11), dropout.dropout_reference(view.copy(), 0.3, 11))


def test_forward_and_backward_keep_the_same_elements(compiled_kernels, rng):
    x = rng.standard_normal((4, 300)).astype(np.float32)
    out, grad = dropout.dropout(x, 0.4, 5), dropout.dropout(np.ones_like(x), 0.4, 5)
    np.testing.assert_array_equal(out != 0, grad != 0)


@pytest.mark.parametrize("p", [0.1, 0.3, 0.7])
def test_the_mask_keeps_one_minus_p_and_has_no_pattern(p):
    n = 400_000
    keep = dropout.keep_mask_reference(np, n, p, 123_456_789)
    sigma = np.sqrt(p * (1 - p) / n)
    assert abs(keep.mean() - (1 - p)) < 5 * sigma
    both = (keep[1:] & keep[:-1]).mean()                                    # neighbours independent
    assert abs(both - (1 - p) ** 2) < 5 * np.sqrt((1 - p) ** 2 / n)
    rows = keep.reshape(-1, 100).mean(axis=0)                               # no column pattern
    assert np.all(np.abs(rows - (1 - p)) < 6 * np.sqrt(p * (1 - p) / (n / 100)))
    other = dropout.keep_mask_reference(np, n, p, 123_456_790)              # the next key: a new mask
    assert abs((keep == other).mean() - (p * p + (1 - p) ** 2)) < 5 * sigma * 2


def test_the_hash_is_splitmix64():
    """Element 0 of key k is splitmix64's first output from state k (a known answer)."""
    key, golden = 1234567, 0x9E3779B97F4A7C15
    z = (key + golden) % 2**64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % 2**64
    z ^= z >> 31
    assert z == 0x599ED017FB08FC85
    top = z >> 40
    for p in (top / 2**24 - 1e-7, top / 2**24 + 1e-7):                      # just below, just above
        assert bool(dropout.keep_mask_reference(np, 1, p, key)[0]) == (top >= dropout.threshold(p))


def test_bad_keys_and_probabilities_are_refused_and_integers_promoted(compiled_kernels):
    with pytest.raises(ValueError, match=r"\[0, 2\^63\)"):
        dropout.dropout(np.ones(3, np.float32), 0.5, -1)
    for p in (-0.1, 1.0):
        with pytest.raises(ValueError, match=r"probability must be in \[0, 1\)"):
            dropout.dropout(np.ones(3, np.float32), p, 1)
    out = dropout.dropout(np.ones(50, np.int64), 0.5, 3)                   # an integer gradient
    assert out.dtype == np.float64 and set(np.unique(out)) == {0.0, 2.0}
