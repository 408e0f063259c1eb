"""kernels/bf16.py: rounding to bf16 against an exact oracle, the compiled rounding bit for bit
against the reference, and MKL's bf16 product against NumPy's (skipped without MKL or bf16 units)."""

from __future__ import annotations

import numpy as np
import pytest
from kernel_cases import needs_bf16_product

from scratchlm.kernels import bf16, gelu


def bits_of(values) -> np.ndarray:
    return np.asarray(values, dtype=np.uint32).view(np.float32)


def nearest_even_oracle(x: np.ndarray) -> np.ndarray:
    """bf16 bits of finite float32 x by exact comparison: the two bf16 neighbours of x (the
    truncation and the next one up in magnitude), whichever is nearer, the even one on a tie."""
    bits = x.view(np.uint32)
    low = (bits >> 16).astype(np.uint32)
    high = low + 1
    as_f64 = lambda b: (b << 16).astype(np.uint32).view(np.float32).astype(np.float64)
    exact = x.astype(np.float64)
    below, above = np.abs(exact - as_f64(low)), np.abs(as_f64(high) - exact)
    # as_f64(high) is inf past the largest bf16: then float32's own overflow rule decides
    above = np.where(np.isinf(as_f64(high)), np.where(np.abs(exact) >= 3.3961775292304610e38, 0.0, np.inf), above)
    pick_high = (above < below) | ((above == below) & (low % 2 == 1))
    return np.where(pick_high, high, low).astype(np.uint16)


SPECIAL = {                     # float32 bits -> bf16 bits
    0x3F800000: 0x3F80,         # 1.0
    0x3F808000: 0x3F80,         # exactly halfway, last kept bit 0: stays
    0x3F818000: 0x3F82,         # exactly halfway, last kept bit 1: up to even
    0x3F808001: 0x3F81,         # just over halfway: up
    0x3F807FFF: 0x3F80,         # just under: down
    0x3FFF8000: 0x4000,         # the carry walks into the exponent: 1.99.. -> 2.0
    0xBF818000: 0xBF82,         # negative numbers round the same way by magnitude
    0x80000000: 0x8000,         # -0.0
    0x00000001: 0x0000,         # the smallest subnormal rounds to 0
    0x00008000: 0x0000,         # a subnormal tie, last kept bit 0
    0x00018000: 0x0002,         # a subnormal tie, last kept bit 1
    0x7F7FFFFF: 0x7F80,         # the largest float32 rounds up to infinity
    0xFF7FFFFF: 0xFF80,
    0x7F800000: 0x7F80,         # infinities stay
    0xFF800000: 0xFF80,
}


@pytest.mark.parametrize("version", [bf16.round_to_bf16_reference, bf16.round_to_bf16_v1])
def test_rounding_is_to_nearest_ties_to_even_on_the_edge_cases(compiled_kernels, version):
    x = bits_of(list(SPECIAL))
    got = version(x)
    assert got.dtype == np.uint16
    assert [hex(v) for v in got] == [hex(v) for v in SPECIAL.values()]


@pytest.mark.parametrize("version", [bf16.round_to_bf16_reference, bf16.round_to_bf16_v1])
def test_nans_stay_nans_of_the_same_sign(compiled_kernels, version):
    nans = bits_of([0x7FC00000, 0x7F800001, 0x7FFFFFFF, 0xFFFFFFFF, 0xFF800001, 0x7FBFFFFF])
    got = bf16.bf16_to_float32(version(nans))
    assert np.isnan(got).all()
    assert list(np.signbit(got)) == [False, False, False, True, True, False]


def test_rounding_matches_the_exact_oracle_on_random_numbers_of_every_size():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32)
    x = bits.view(np.float32)
    x = x[np.isfinite(x)]
    np.testing.assert_array_equal(bf16.round_to_bf16_reference(x), nearest_even_oracle(x))


def test_compiled_rounding_is_bit_for_bit_the_reference(compiled_kernels):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 2**32, (300, 700), dtype=np.uint64).astype(np.uint32).view(np.float32)  # NaNs too
    np.testing.assert_array_equal(bf16.round_to_bf16_v1(x), bf16.round_to_bf16_reference(x))
    assert bf16.round_to_bf16(x).shape == (300, 700)
    strided = x[:, ::3]                                         # any layout comes in; the copy is contiguous
    np.testing.assert_array_equal(bf16.round_to_bf16_v1(strided), bf16.round_to_bf16_reference(strided))


def test_widening_back_is_exact_and_rounding_error_is_under_half_a_step():
    rng = np.random.default_rng(2)
    x = rng.standard_normal(100_000).astype(np.float32) * 10.0 ** rng.integers(-30, 30, 100_000)
    back = bf16.bf16_to_float32(bf16.round_to_bf16_reference(x))
    np.testing.assert_array_equal(bf16.round_to_bf16_reference(back), bf16.round_to_bf16_reference(x))
    assert np.max(np.abs(back - x) / np.abs(x)) <= 2.0 ** -8      # half of a relative step of 2^-7


def product_case(rng, m, k, n):
    a = bf16.round_to_bf16_reference(rng.standard_normal((m, k)).astype(np.float32))
    b = bf16.round_to_bf16_reference(rng.standard_normal((k, n)).astype(np.float32))
    return a, b


@needs_bf16_product
@pytest.mark.parametrize("m, k, n", [(1, 1, 1), (1, 64, 7), (3, 5, 2), (257, 129, 65), (2048, 64, 192), (64, 4096, 96)])
def test_mkl_product_matches_numpy_on_the_same_bf16_values(compiled_kernels, m, k, n):
    a, b = product_case(np.random.default_rng(m + k + n), m, k, n)
    got = bf16.matmul_v1(a, b)
    want = bf16.matmul_reference(a, b)
    assert got.dtype == np.float32 and got.shape == (m, n)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.sqrt(k))


@needs_bf16_product
def test_mkl_product_reads_transposed_and_row_strided_views_in_place(compiled_kernels):
    rng = np.random.default_rng(3)
    packed = bf16.round_to_bf16_reference(rng.standard_normal((300, 3 * 48)).astype(np.float32))  # (N, 3C)
    head = packed[:, 48:96]                                    # rows 3C apart, as a qkv slice
    w = bf16.round_to_bf16_reference(rng.standard_normal((80, 48)).astype(np.float32))
    for a, b in [(head, w.T), (head.T, packed[:, :80]), (w, head.T)]:
        np.testing.assert_allclose(bf16.matmul_v1(a, b), bf16.matmul_reference(a, b), rtol=1e-5, atol=1e-4)


@needs_bf16_product
def test_mkl_product_with_more_threads_than_rows(compiled_kernels):
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one Numba thread")
    previous = numba.get_num_threads()
    numba.set_num_threads(2)
    try:
        a, b = product_case(np.random.default_rng(4), 1, 33, 17)
        np.testing.assert_allclose(bf16.matmul_v1(a, b), bf16.matmul_reference(a, b), rtol=1e-5, atol=1e-5)
    finally:
        numba.set_num_threads(previous)


def test_matmul_refuses_shapes_that_do_not_fit_and_arrays_that_are_not_bf16_bits():
    with pytest.raises(ValueError, match="do not fit"):
        bf16.matmul(np.zeros((2, 3), np.uint16), np.zeros((4, 2), np.uint16))
    with pytest.raises(TypeError, match="bf16 bits"):
        bf16.matmul(np.zeros((2, 3), np.float32), np.zeros((3, 2), np.uint16))
    with pytest.raises(TypeError, match="bf16 bits"):
        bf16.matmul(np.zeros(3, np.uint16), np.zeros((3, 2), np.uint16))


def test_unavailable_reason_names_what_is_missing(monkeypatch):
    monkeypatch.setattr(bf16, "cpu_bf16_units", lambda: ())
    assert "no bf16 matrix units" in bf16.unavailable_reason()
    assert not bf16.available()
    monkeypatch.setattr(bf16, "cpu_bf16_units", lambda: ("AVX512-BF16",))
    monkeypatch.setattr(bf16, "bf16_product", lambda: None)
    assert "pip install 'scratchlm[bf16]'" in bf16.unavailable_reason()


@pytest.mark.parametrize("forward", [gelu.bias_gelu_forward_reference, gelu.bias_gelu_forward_v1, gelu.bias_gelu_forward])
def test_gelu_forward_writes_the_bf16_bits_of_its_own_float32_values(compiled_kernels, forward):
    rng = np.random.default_rng(5)
    h, b = 3 * rng.standard_normal((70, 96)).astype(np.float32), rng.standard_normal(96).astype(np.float32)
    h[0, :3] = [np.nan, np.inf, -np.inf]
    h32, h16 = h.copy(), h.copy()
    with np.errstate(invalid="ignore"):                        # gelu(-inf) = -inf * 0: NaN, in both
        as_float32, as_bits = forward(h32, b), forward(h16, b, to_bf16=True)
    assert as_bits.dtype == np.uint16
    np.testing.assert_array_equal(as_bits, bf16.round_to_bf16_reference(as_float32))
    np.testing.assert_array_equal(h16, h32)                    # the bias still lands in h


@pytest.mark.parametrize("backward", [gelu.gelu_backward_recompute_reference, gelu.gelu_backward_recompute_v1,
                                      gelu.gelu_backward_recompute])
def test_gelu_backward_writes_bf16_bits_and_sums_the_float32_gradient(compiled_kernels, backward):
    rng = np.random.default_rng(6)
    da, h = rng.standard_normal((70, 96)).astype(np.float32), 3 * rng.standard_normal((70, 96)).astype(np.float32)
    a32, dh32, db32 = backward(da.copy(), h)
    a16, dh16, db16 = backward(da.copy(), h, to_bf16=True)
    np.testing.assert_array_equal(a16, bf16.round_to_bf16_reference(a32))
    np.testing.assert_array_equal(dh16, bf16.round_to_bf16_reference(dh32))
    np.testing.assert_array_equal(db16, db32)                  # fc's bias gradient: from float32 dh


def test_gelu_without_a_bias_rounds_through_the_separate_pass(compiled_kernels):
    h = np.random.default_rng(7).standard_normal((8, 16)).astype(np.float32)
    np.testing.assert_array_equal(gelu.bias_gelu_forward(h.copy(), None, to_bf16=True),
                                  bf16.round_to_bf16_reference(gelu.bias_gelu_forward(h.copy(), None)))
