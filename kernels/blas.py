"""Calling BLAS's matrix product from inside a compiled Numba loop.

Why: a Numba loop nest reaches ~50-85 GFLOP/s on a small matrix product on this 2-core
machine, where OpenBLAS reaches ~300 (its micro-kernels keep a block of C in vector
registers, which LLVM will not do for us). NumPy's batched ``matmul`` over many small
matrices is no way out: it calls BLAS once per matrix from one thread (~25 GFLOP/s at
attention's shapes). So packed attention's version 2 (``attention_packed.py``) runs its
per-head loop in a Numba ``prange`` and calls BLAS's gemm for every product in it, each
call single-threaded, one head per core. And ``matmul`` at the end of this file runs the
engine's big products the same way, so that all the parallel work shares one thread pool:
each thread takes a block of the result's rows, or, for a small result with a long inner
dimension (a weight gradient), a block of that dimension and a partial result to add up.

Numba itself only reaches BLAS through SciPy, which scratchlm does not depend on. But
NumPy's own wheels carry an OpenBLAS shared library, and Numba can call any C function
that is loaded into the process by its symbol name (``types.ExternalFunction``; the
compiled code refers to the name, not an address, so ``cache=True`` still works). This
module finds that library and exports:

    gemm(alpha, a, trans_a, b, trans_b, beta, c)    c = alpha op(a) op(b) + beta c

on 2-D views whose rows may be strided (a head of the packed qkv has a row stride of 3C)
but whose columns are contiguous, in float32 or float64. The same ``gemm`` runs as plain
Python through ctypes when a kernel is read or stepped through as Python.

While such a kernel runs, OpenBLAS must not start threads of its own (two Numba threads
each asking for two more would fight over two cores): ``one_thread_each()`` sets its
thread count to 1 and back (about a microsecond).

The float32 gemm need not be OpenBLAS's: where the ``bf16`` extra installed MKL or oneDNN,
``vendor_gemm.py`` picks the fastest for this CPU and offers it with the same arguments.
float64 (the tests' gradient checks) always runs on OpenBLAS.

``available()`` is False where NumPy uses another BLAS (MKL, Accelerate) or none that this
module recognises; the kernels that need it then fall back to their loop versions.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import threading

import numpy as np

from ._lesson import Kernel, run_lesson
from .numba_tools import chunk_bounds, lazy_njit, prange, thread_count
from .vendor_gemm import NO_TRANS, ROW_MAJOR, TRANS, ExternalProduct, Product, bf16_product, float32_product

# (sgemm, dgemm, set threads, get threads, integer width) as each OpenBLAS build names them
SYMBOL_SETS = [
    ("scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_",        # NumPy >= 2 wheels (scipy-openblas64)
     "scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_", 64),
    ("scipy_cblas_sgemm", "scipy_cblas_dgemm",              # scipy-openblas32
     "scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads", 32),
    ("cblas_sgemm64_", "cblas_dgemm64_",                    # NumPy 1.x wheels
     "openblas_set_num_threads64_", "openblas_get_num_threads64_", 64),
    ("cblas_sgemm", "cblas_dgemm", "openblas_set_num_threads", "openblas_get_num_threads", 32),
]

_library = None          # (path, symbol set) once found; False when there is none


def _candidate_paths() -> list[str]:
    """Shared libraries that may be NumPy's OpenBLAS: those loaded now, then the wheel's own."""
    import numpy as np

    found = []
    try:
        with open("/proc/self/maps") as maps:              # Linux: what NumPy actually loaded
            for line in maps:
                path = line.split()[-1] if line.strip() else ""
                if "blas" in os.path.basename(path).lower() and path not in found:
                    found.append(path)
    except OSError:
        pass
    root = os.path.dirname(np.__file__)
    for pattern in ("../numpy.libs/*openblas*", ".dylibs/*openblas*", "../numpy/.libs/*openblas*"):
        found += [p for p in sorted(glob.glob(os.path.join(root, pattern))) if p not in found]
    return found


def _find_library():
    global _library
    if _library is None:
        _library = False
        for path in _candidate_paths():
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for symbols in SYMBOL_SETS:
                if all(hasattr(lib, name) for name in symbols[:4]):
                    _library = (path, lib, symbols)
                    return _library
    return _library


def openblas_product(which: int) -> Product | None:
    """NumPy's OpenBLAS sgemm (``which`` 0) or dgemm (1) as a ``vendor_gemm.Product``."""
    found = _find_library()
    if not found:
        return None
    path, lib, symbols = found
    return Product("openblas", path, lib, symbols[which], symbols[4], ("float32", "float64")[which])


def gemm_library_tag() -> str:
    """What the compiled kernels link (float32, float64 and bf16 gemm): part of the kernel
    cache's key (numba_tools.py), so that code compiled against one library is never loaded
    where another is chosen."""
    found = available()
    products = (float32_product() if found else None, openblas_product(1) if found else None, bf16_product())
    return "-".join(product.tag if product else "none" for product in products)


def available() -> bool:
    """True when NumPy's OpenBLAS was found (and ``SCRATCHLM_BLAS_KERNELS`` is not ``0``)."""
    return os.environ.get("SCRATCHLM_BLAS_KERNELS", "1") != "0" and bool(_find_library())


_thread_controls = None   # OpenBLAS's (set, get) thread-count functions, once looked up
_thread_lock = threading.Lock()
_holders = 0              # blocks inside one_thread_each now (across Python threads)
_saved_threads = 1        # OpenBLAS's thread count when the first of them entered


@contextlib.contextmanager
def one_thread_each():
    """OpenBLAS runs each call on the calling thread alone for the duration of the block.

    The thread count is process-wide, so blocks entered from several Python threads share
    one setting: the first sets it to 1 and the last to leave puts the old count back.
    """
    global _thread_controls, _holders, _saved_threads
    with _thread_lock:
        if _thread_controls is None:
            _, lib, symbols = _find_library()
            set_threads, get_threads = getattr(lib, symbols[2]), getattr(lib, symbols[3])
            set_threads.argtypes = [ctypes.c_int]
            _thread_controls = set_threads, get_threads
        set_threads, get_threads = _thread_controls
        if _holders == 0:
            _saved_threads = get_threads()
            set_threads(1)
        _holders += 1
    try:
        yield
    finally:
        with _thread_lock:
            _holders -= 1
            if _holders == 0:
                set_threads(_saved_threads)


# float32 from the library vendor_gemm.py chooses for this CPU; float64 always OpenBLAS's
sgemm = ExternalProduct(float32_product)
dgemm = ExternalProduct(lambda: openblas_product(1))


@lazy_njit(inline="always")
def gemm(alpha, a, trans_a, b, trans_b, beta, c):
    """c = alpha op(a) op(b) + beta c, op(x) being x or x^T; c is (m, n), op(a) (m, k), op(b) (k, n).

    a, b and c are 2-D views of one float dtype whose columns are contiguous; their rows
    may be any distance apart (BLAS's "leading dimension"). With beta = 0, c's old values
    are never read (it may be uninitialised memory).
    """
    m, n = c.shape
    k = a.shape[0] if trans_a else a.shape[1]
    size = c.itemsize
    op_a = TRANS if trans_a else NO_TRANS
    op_b = TRANS if trans_b else NO_TRANS
    lda, ldb, ldc = a.strides[0] // size, b.strides[0] // size, c.strides[0] // size   # row distances
    if size == 4:                                        # float32
        sgemm(ROW_MAJOR, op_a, op_b, m, n, k, alpha, a.ctypes.data, lda, b.ctypes.data, ldb, beta, c.ctypes.data, ldc)
    else:
        dgemm(ROW_MAJOR, op_a, op_b, m, n, k, alpha, a.ctypes.data, lda, b.ctypes.data, ldb, beta, c.ctypes.data, ldc)


# ---- the engine's matrix product: one thread pool, not two ----------------------------------
# NumPy's ``a @ b`` runs OpenBLAS on OpenBLAS's own threads; every other kernel runs on
# Numba's (OpenMP) threads. On two cores the two pools get in each other's way: a (4096,
# 256) @ (256, 1024) product followed by a bias add took 12 ms where the two alone take
# 7.5 and 0.4. ``matmul`` below keeps all the parallel work in Numba's pool:
# it cuts the rows of the result into one block per thread and has each thread call
# single-threaded gemm on its block, the same split OpenBLAS makes internally.
@lazy_njit(parallel=True)
def _matmul_rows_kernel(c, a, trans_a, b, trans_b, blocks):
    # c (M, N) = op(a) op(b); block p of the rows of c is one gemm call on its own thread
    for p in prange(blocks):
        r0, r1 = chunk_bounds(p, c.shape[0], blocks)
        if r0 < r1:
            if trans_a:                                  # op(a) = a^T: its rows are a's columns
                gemm(1.0, a[:, r0:r1], True, b, trans_b, 0.0, c[r0:r1])
            else:
                gemm(1.0, a[r0:r1], False, b, trans_b, 0.0, c[r0:r1])


@lazy_njit(parallel=True)
def _matmul_depth_kernel(c, partials, a, trans_a, b, trans_b):
    # c (M, N) = op(a) op(b) as a sum over blocks of the inner dimension K: block p is one
    # gemm call on its own thread into partials[p] (M, N); then the partials are added up
    blocks = partials.shape[0]
    K = a.shape[0] if trans_a else a.shape[1]
    for p in prange(blocks):
        k0, k1 = chunk_bounds(p, K, blocks)
        a_part = a[k0:k1] if trans_a else a[:, k0:k1]          # op(a)[:, k0:k1]
        b_part = b[:, k0:k1] if trans_b else b[k0:k1]          # op(b)[k0:k1]
        if k0 < k1:
            gemm(1.0, a_part, trans_a, b_part, trans_b, 0.0, partials[p])
        else:                                                  # more threads than K blocks
            partials[p, :, :] = 0.0
    for i in prange(c.shape[0]):
        for j in range(c.shape[1]):
            total = partials[0, i, j]
            for p in range(1, blocks):
                total += partials[p, i, j]
            c[i, j] = total


def _as_operand(x):
    """(array, transposed) such that BLAS can read x from it: x itself, or x.T's own rows,
    or else a fresh C-ordered copy (negative, zero or odd strides; unaligned memory)."""
    size = x.itemsize
    (rows, cols), (row_stride, col_stride) = x.shape, x.strides
    if x.flags.aligned and row_stride % size == 0 and col_stride % size == 0:
        # a unit stride along the other axis is only needed when that axis has > 1 element
        if (col_stride == size or cols == 1) and row_stride >= max(1, cols) * size:
            return x, False
        if (row_stride == size or rows == 1) and col_stride >= max(1, rows) * size:
            return x.T, True                             # x = (x.T)^T, x.T's rows are BLAS-readable
    return x.copy(order="C"), False                      # a copy always gets fresh strides


SMALL_PRODUCT = 1 << 18       # below this many multiply-adds, NumPy's a @ b on the calling thread
DEEP = 8                      # K >= DEEP * max(M, N): split K among the threads, not c's rows


def matmul_reference(a, b):
    """a (M, K) @ b (K, N) -> c (M, N): NumPy's product, on OpenBLAS's own threads."""
    return a @ b


def _operands_and_result(a, b):
    """(a as BLAS reads it, transposed?, the same for b, an empty c (M, N))."""
    (a_op, trans_a), (b_op, trans_b) = _as_operand(a), _as_operand(b)
    return a_op, trans_a, b_op, trans_b, np.empty((a.shape[0], b.shape[1]), dtype=a.dtype)


def matmul_rows_v1(a, b):
    """a (M, K) @ b (K, N), c's rows cut into one block per Numba thread, one gemm each."""

    a_op, trans_a, b_op, trans_b, c = _operands_and_result(a, b)                # c (M, N)
    with one_thread_each():
        _matmul_rows_kernel.dispatcher()(c, a_op, trans_a, b_op, trans_b, thread_count())
    return c


def matmul_depth_v2(a, b):
    """a (M, K) @ b (K, N), K cut into one block per Numba thread, the partial products added."""

    a_op, trans_a, b_op, trans_b, c = _operands_and_result(a, b)                # c (M, N)
    partials = np.empty((thread_count(), *c.shape), dtype=a.dtype)  # (blocks, M, N)
    with one_thread_each():
        _matmul_depth_kernel.dispatcher()(c, partials, a_op, trans_a, b_op, trans_b)
    return c


def matmul(a, b):
    """a (M, K) @ b (K, N): BLAS gemm on Numba's threads for 2-D float32/float64 NumPy arrays
    (transposed views read in place; only strides BLAS cannot take are copied); ``a @ b`` for
    anything else.

    How the work is cut: a weight gradient (dy^T x at config a: c (192, 64), K = 2048 token
    rows) is small and deep, and cutting its 192 rows in two would have each thread pack
    all of x; cutting K in two halves every thread's share of both operands, and adding
    the two (192, 64) partial results costs little (version 2). Every other product cuts
    c's rows (version 1).
    """
    from .dispatch import use_numba

    if not (use_numba(a, b) and a.ndim == 2 and b.ndim == 2 and a.dtype == b.dtype
            and a.dtype in (np.float32, np.float64) and a.shape[1] == b.shape[0] and a.size and b.size
            and available()):
        return matmul_reference(a, b)
    (M, K), N = a.shape, b.shape[1]
    if M * K * N < SMALL_PRODUCT:                        # too small to split: no kernel call, but
        with one_thread_each():                          # still no OpenBLAS threads (its gemv, for
            return matmul_reference(a, b)                # M or N = 1, would start them)

    if thread_count() > 1 and K >= DEEP * max(M, N):
        return matmul_depth_v2(a, b)
    return matmul_rows_v1(a, b)


# ---- the declaration: what __main__, the tests and the benchmarks read ------------------
def example_product(dtype, rng, shape):
    """x @ w.T at the MLP's fc: x (N, C), w (4C, C) read through its transpose; the flops."""
    x = rng.standard_normal((shape.rows, shape.d_model)).astype(dtype)
    w = rng.standard_normal((4 * shape.d_model, shape.d_model)).astype(dtype)
    return (x, w.T), 2 * shape.rows * shape.d_model * 4 * shape.d_model


def example_weight_grad(dtype, rng, shape):
    """g.T @ x, qkv's weight gradient: g (N, 3C), x (N, C); small and deep (K = N)."""
    g = rng.standard_normal((shape.rows, 3 * shape.d_model)).astype(dtype)
    x = rng.standard_normal((shape.rows, shape.d_model)).astype(dtype)
    return (g.T, x), 2 * shape.rows * 3 * shape.d_model * shape.d_model


VERSIONS = {"reference": matmul_reference, "numba v1": matmul_rows_v1, "numba v2": matmul_depth_v2}
NEEDS_OPENBLAS = {"numba v1": available, "numba v2": available}
KERNELS = (
    Kernel("matmul", matmul, VERSIONS, example_product, unit="GFLOP/s", requires=NEEDS_OPENBLAS),
    Kernel("matmul_weight_grad", matmul, VERSIONS, example_weight_grad, unit="GFLOP/s",
           requires=NEEDS_OPENBLAS),
)


if __name__ == "__main__":
    print(f"float32 gemm: {float32_product().path if available() else 'not found'}")
    run_lesson(KERNELS)
