"""blas.py: gemm on strided 2-D views, compiled and as plain Python, against NumPy's matmul."""

from __future__ import annotations

import numpy as np
import pytest

from scratchlm.kernels import blas
from scratchlm.kernels._lesson import assert_close
from scratchlm.kernels.blas import gemm
from scratchlm.kernels.numba_tools import lazy_njit

pytestmark = pytest.mark.skipif(not blas.available(), reason="NumPy's OpenBLAS was not found")


@lazy_njit()
def _compiled_gemm(alpha, a, trans_a, b, trans_b, beta, c):
    gemm(alpha, a, trans_a, b, trans_b, beta, c)                    # a global name: lazy_njit compiles it


def _views(rng, dtype, trans_a, trans_b, m=5, n=7, k=3):
    """op(a) (m, k), op(b) (k, n) and c (m, n), each a view into a wider array (rows strided)."""
    def strided(rows, cols):
        wide = rng.standard_normal((rows, cols + 4)).astype(dtype)
        return wide[:, 1 : cols + 1]                                 # rows cols + 4 apart
    a = strided(k, m) if trans_a else strided(m, k)
    b = strided(n, k) if trans_b else strided(k, n)
    return a, b, strided(m, n)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("run", ["compiled", "python"])
def test_gemm_on_strided_views_matches_matmul(rng, dtype, trans_a, trans_b, run):
    a, b, c = _views(rng, dtype, trans_a, trans_b)
    op_a, op_b = (a.T if trans_a else a), (b.T if trans_b else b)
    c_before = c.copy()
    parent = c.base.copy()
    call = _compiled_gemm if run == "compiled" else gemm.py_func
    call(0.5, a, trans_a, b, trans_b, 2.0, c)                         # c = 0.5 op(a) op(b) + 2 c
    assert_close(c, 0.5 * (op_a.astype(np.float64) @ op_b) + 2.0 * c_before, dtype)
    outside = np.ones(parent.shape, bool)
    outside[:, 1 : c.shape[1] + 1] = False
    np.testing.assert_array_equal(c.base[outside], parent[outside])   # nothing written beside c


def test_beta_zero_never_reads_c(rng):
    a, b, c = _views(rng, np.float32, False, False)
    c[...] = np.nan
    gemm.py_func(1.0, a, False, b, False, 0.0, c)
    assert_close(c, a.astype(np.float64) @ b, np.float32)


def test_one_thread_each_restores_the_thread_count_even_when_blocks_overlap():
    _, lib, symbols = blas._find_library()
    set_threads, get_threads = getattr(lib, symbols[2]), getattr(lib, symbols[3])
    before = get_threads()
    set_threads(2)
    try:
        first, second = blas.one_thread_each(), blas.one_thread_each()
        first.__enter__()
        second.__enter__()                     # as from another Python thread
        assert get_threads() == 1
        first.__exit__(None, None, None)       # the first one out must not restore yet
        assert get_threads() == 1
        second.__exit__(None, None, None)
        assert get_threads() == 2
    finally:
        set_threads(before)


def test_switched_off_by_environment(monkeypatch):
    monkeypatch.setenv("SCRATCHLM_BLAS_KERNELS", "0")
    assert not blas.available()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("M, K, N", [(1, 1, 1), (3, 4, 5), (700, 30, 90), (257, 64, 33), (2001, 40, 50)])
@pytest.mark.parametrize("small_to_numpy", [True, False])
def test_matmul_matches_numpy_for_every_layout(rng, monkeypatch, dtype, M, K, N, small_to_numpy):
    # the engine's products: x @ w.T, g @ w, g.T @ x, and views that are neither; at
    # (2001, 40, 50) g.T @ x is deep enough (K = 2001 >= DEEP * 50) to be cut along K.
    # Products below SMALL_PRODUCT go to NumPy; with the threshold at 0 every case, the
    # one-row and broadcast ones included, goes through the compiled kernels
    if not small_to_numpy:
        monkeypatch.setattr(blas, "SMALL_PRODUCT", 0)
    a = rng.standard_normal((M, K)).astype(dtype)
    w = rng.standard_normal((N, K)).astype(dtype)
    g = rng.standard_normal((M, N)).astype(dtype)
    wide = rng.standard_normal((M, 2 * K)).astype(dtype)
    row = np.broadcast_to(a[0], (1, K))                               # row stride 0
    for x, y in [(a, w.T), (g, w), (g.T, a), (wide[:, ::2], w.T), (wide[:, :K], w.T),
                 (a[::-1], w.T), (row, w.T), (a[:1, None, :][:, 0], w.T), (a, w[:1].T)]:
        got = blas.matmul(x, y)
        assert got.dtype == dtype and got.shape == (x.shape[0], y.shape[1]) and got.flags.c_contiguous
        assert_close(got, x.astype(np.float64) @ y, dtype)


def test_matmul_copies_operands_blas_cannot_read(rng, monkeypatch):
    monkeypatch.setattr(blas, "SMALL_PRODUCT", 0)                   # small, but through the kernel
    # a field of a packed record array: rows 65 bytes apart, not a multiple of 4
    records = np.zeros(7, dtype=[("a", np.float32, 16), ("pad", np.int8)])
    records["a"] = rng.standard_normal((7, 16))
    w = rng.standard_normal((16, 5)).astype(np.float32)
    assert_close(blas.matmul(records["a"], w), records["a"].astype(np.float64) @ w, np.float32)


@pytest.mark.parametrize("threads", [1, 2])
def test_matmul_cuts_a_small_deep_product_along_its_inner_dimension(rng, monkeypatch, compiled_kernels, threads):
    # (64, 64) result, K = 4095 (odd): each thread takes half of K into its own partial result;
    # on one thread there is nothing to cut and the rows kernel takes it whole
    numba = pytest.importorskip("numba")
    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip(f"Numba has {numba.config.NUMBA_NUM_THREADS} thread(s) here")
    seen = []
    for kernel in (blas._matmul_rows_kernel, blas._matmul_depth_kernel):
        real = kernel.dispatcher
        monkeypatch.setattr(kernel, "dispatcher", lambda real=real, kernel=kernel: (
            lambda *args: seen.append((kernel, args[1].shape[0] if kernel is blas._matmul_depth_kernel else args[-1]))
            or real()(*args)))
    g, x = rng.standard_normal((4095, 64)).astype(np.float32), rng.standard_normal((4095, 64)).astype(np.float32)
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        assert_close(blas.matmul(g.T, x), g.T.astype(np.float64) @ x, np.float32)
    finally:
        numba.set_num_threads(previous)
    assert seen == [(blas._matmul_depth_kernel, 2) if threads == 2 else (blas._matmul_rows_kernel, 1)]


def test_matmul_leaves_other_inputs_to_numpy(rng, kernel_mode):
    a = rng.standard_normal((3, 4)).astype(np.float32)
    assert_close(blas.matmul(a, a.T.astype(np.float64)), a @ a.T.astype(np.float64), np.float64)   # mixed dtypes
    assert_close(blas.matmul(a[None], a.T), a[None] @ a.T, np.float32)                         # 3-D
    ints = np.arange(6).reshape(2, 3)
    np.testing.assert_array_equal(blas.matmul(ints, ints.T), ints @ ints.T)


def test_the_kernel_cache_is_keyed_by_the_gemm_libraries_it_links(monkeypatch):
    """Code compiled against one library's gemm must never load where another one is chosen."""
    from scratchlm.kernels import numba_tools, vendor_gemm

    tags = set()
    for path, symbol in (("/lib/libmkl_rt.so.3", "cblas_sgemm"), ("/lib/libdnnl.so.3", "dnnl_sgemm"),
                         ("/lib/libscipy_openblas64_.so", "scipy_cblas_sgemm64_")):
        product = vendor_gemm.Product("x", path, None, symbol, 32, "float32")
        monkeypatch.setattr(blas, "float32_product", lambda product=product: product)
        monkeypatch.setattr(numba_tools, "_digest", None)
        tags.add(numba_tools.kernel_cache_dir("/tmp/cache"))
    monkeypatch.setattr(blas, "bf16_product", lambda: None)
    monkeypatch.setattr(numba_tools, "_digest", None)
    tags.add(numba_tools.kernel_cache_dir("/tmp/cache"))           # the last float32 one, no bf16 gemm
    dgemm = vendor_gemm.Product("openblas", "/lib/libopenblas.so", None, "cblas_dgemm64_", 64, "float64")
    monkeypatch.setattr(blas, "openblas_product", lambda which: dgemm)
    monkeypatch.setattr(numba_tools, "_digest", None)
    tags.add(numba_tools.kernel_cache_dir("/tmp/cache"))           # another float64 gemm (NumPy 1.x's)
    assert len(tags) == 5
    assert all(path.startswith("/tmp/cache/kernels-") for path in tags)


def test_the_bf16_gemm_is_in_the_cache_key_even_with_the_blas_kernels_off(monkeypatch):
    from scratchlm.kernels import numba_tools, vendor_gemm

    monkeypatch.setattr(blas, "available", lambda: False)
    tags = set()
    for path in ("/lib/libmkl_rt.so.3", "/lib/libdnnl.so.3"):
        product = vendor_gemm.Product("x", path, None, "gemm_bf16bf16f32", 32, "float32")
        monkeypatch.setattr(blas, "bf16_product", lambda product=product: product)
        monkeypatch.setattr(numba_tools, "_digest", None)
        tags.add(numba_tools.kernel_cache_dir("/tmp/cache"))
    assert len(tags) == 2
    assert all(path.startswith("/tmp/cache/kernels-") for path in tags)
