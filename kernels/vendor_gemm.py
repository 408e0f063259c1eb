"""Whose matrix product the kernels call on this CPU, and how each is called the same way.

Three libraries can multiply matrices in a scratchlm process:

    OpenBLAS  NumPy's own, always there: float32 and float64
    MKL       Intel's ``mkl`` wheel (the ``bf16`` extra): float32, float64 and bf16
              (``cblas_gemm_bf16bf16f32``)
    oneDNN    Intel's ``onednn-cpu-gomp`` wheel (the ``bf16`` extra): float32 (``dnnl_sgemm``)
              and bf16 (``dnnl_gemm_bf16bf16f32``)

They are not equally fast everywhere. MKL picks its code by the CPU's vendor: on Intel it
is the fastest of the three (AMX for bf16), on AMD it takes generic paths (on a Zen 5 EPYC
its float32 gemm was 15% slower than OpenBLAS's and its bf16 one no faster than float32).
oneDNN picks its code by the CPU's features alone, so on AMD it is the one that uses
AVX512-BF16 (and full-width AVX-512 for float32, where this OpenBLAS build's Zen kernels are
256 bits wide). Measured figures: ``docs/performance.md``, "By CPU kind". So:

    float32  Intel: MKL, else OpenBLAS        AMD: oneDNN (with AVX-512), else OpenBLAS
    bf16     Intel: MKL, else oneDNN          AMD: oneDNN, else none (fp32 runs)
    float64  OpenBLAS (tests and gradient checks only)

``SCRATCHLM_BLAS`` (openblas, mkl, onednn) and ``SCRATCHLM_BF16_GEMM`` (mkl, onednn) name
one instead; a named library that is not installed leaves float32 on OpenBLAS and bf16
unavailable.

One calling convention. The kernels call every product as CBLAS's row-major gemm,
``(layout, op_a, op_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)``. MKL's and OpenBLAS's
functions take exactly that. oneDNN's are row-major only and take the transposes as the
letters 'N' and 'T' and every size as 64 bits, so ``ExternalProduct`` hands compiled code a
small adapter instead of the bare C function.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import os
import sys
from typing import NamedTuple

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112                 # CBLAS's enum values
MKL_LP64, MKL_SEQUENTIAL = 0, 1                           # MKL_Set_Interface_Layer / _Threading_Layer
LETTER_N, LETTER_T = ord("N"), ord("T")                    # oneDNN's transposes

FLOAT32_ORDER = {"intel": ("mkl", "openblas"), "amd": ("onednn", "openblas")}   # AMD's: with AVX-512
# not MKL on AMD: there its bf16 product is slower than our float32 (759 against 650 ms a config-c step)
BF16_ORDER = {"intel": ("mkl", "onednn"), "amd": ("onednn",)}
# (library, element type) -> (symbol, integer bits). oneDNN exports its bf16 gemm (DNNL_API)
# without declaring it in dnnl.h, so the wheel is pinned to the release checked (pyproject.toml).
SYMBOLS = {("mkl", "float32"): ("cblas_sgemm", 32), ("onednn", "float32"): ("dnnl_sgemm", 64),
           ("mkl", "bf16"): ("cblas_gemm_bf16bf16f32", 32), ("onednn", "bf16"): ("dnnl_gemm_bf16bf16f32", 64)}
VARIABLES = {"SCRATCHLM_BLAS": ("openblas", "mkl", "onednn"), "SCRATCHLM_BF16_GEMM": ("mkl", "onednn")}
LIBRARY_NAMES = {"openblas": "OpenBLAS", "mkl": "MKL", "onednn": "oneDNN"}


class Product(NamedTuple):
    """One library's gemm for one element type: where it is and how it is called."""
    library: str             # "openblas", "mkl" or "onednn"
    path: str
    handle: ctypes.CDLL
    symbol: str
    bits: int                # the width of its integer arguments
    real: str                # its alpha and beta: "float32" or "float64"

    @property
    def tag(self) -> str:
        """What compiled code linked against it: part of the kernel cache's key."""
        return f"{os.path.basename(self.path).split('.so')[0]}-{self.symbol}-{self.bits}"


# ---- which CPU, which libraries are here -------------------------------------------------
@functools.cache
def cpu_vendor() -> str:
    """"intel", "amd" or "" (another or unknown), from the CPU this process runs on."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("vendor_id"):
                    vendor = line.split(":", 1)[1].strip()
                    return {"GenuineIntel": "intel", "AuthenticAMD": "amd"}.get(vendor, "")
    except OSError:
        pass
    try:
        import llvmlite.binding

        return "amd" if llvmlite.binding.get_host_cpu_name().startswith("znver") else ""
    except Exception:
        return ""


def _environment_libraries(pattern: str, system_name: str) -> list[str]:
    """A wheel's copy in the environment's lib/ (newest first), then the system's."""
    found = []
    for root in dict.fromkeys((sys.prefix, sys.base_prefix)):
        found += sorted(glob.glob(os.path.join(root, "lib", pattern)), reverse=True)
    system = ctypes.util.find_library(system_name)
    return found + ([system] if system else [])


def _first_loadable(paths: list[str], needed: str):
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        if hasattr(lib, needed):
            return path, lib
    return None


@functools.cache
def find_mkl():
    """(path, ctypes library) of MKL, set to LP64 integers and sequential threading; None if absent."""
    found = _first_loadable(_environment_libraries("libmkl_rt.so*", "mkl_rt"), "cblas_gemm_bf16bf16f32")
    if found is None:
        return None
    path, lib = found
    # Before any other MKL call: 32-bit integers, and no threads of MKL's own (Numba's
    # threads each call it on a block of rows, as with OpenBLAS).
    if lib.MKL_Set_Interface_Layer(MKL_LP64) != MKL_LP64:
        return None                                       # set up already, with 64-bit integers
    if lib.MKL_Set_Threading_Layer(MKL_SEQUENTIAL) != MKL_SEQUENTIAL:
        lib.MKL_Set_Num_Threads(1)                        # threaded already: one thread per call
    return path, lib


@functools.cache
def find_onednn():
    """(path, ctypes library) of oneDNN; None if absent. Its OpenMP runtime is Numba's, and the
    adapter below holds each call to the calling thread."""
    return _first_loadable(_environment_libraries("libdnnl.so*", "dnnl"), "dnnl_gemm_bf16bf16f32")


@functools.cache
def openmp_thread_setters():
    """(omp_get_max_threads, omp_set_num_threads) of GNU OpenMP, oneDNN's and Numba's runtime."""
    gomp = ctypes.CDLL("libgomp.so.1")
    gomp.omp_set_num_threads.argtypes = [ctypes.c_int]
    return gomp.omp_get_max_threads, gomp.omp_set_num_threads


@functools.cache
def cpu_features() -> dict:
    """This CPU's instruction-set features as LLVM names them ("avx512f": True, ...), read at
    run time; {} without llvmlite (no Numba: no compiled products anyway)."""
    try:
        import llvmlite.binding

        return dict(llvmlite.binding.get_host_cpu_features())
    except Exception:
        return {}


def _has_avx512() -> bool:
    return bool(cpu_features().get("avx512f"))


def named_library(variable: str) -> str | None:
    """The library an environment variable names, or None for "auto" (or unset)."""
    value = os.environ.get(variable, "auto").strip().lower()
    if value in ("", "auto"):
        return None
    if value not in VARIABLES[variable]:
        from scratchlm.errors import OptionError

        raise OptionError(f"{variable}={value!r} names no library this engine knows: "
                          f"use one of auto, {', '.join(VARIABLES[variable])}, or unset it")
    return value


def check_environment() -> None:
    """Raise OptionError now for a library variable naming no known library (the CLI calls this
    before any work, so the one line comes first, not after the data has loaded)."""
    for variable in VARIABLES:
        named_library(variable)


# ---- the choice ------------------------------------------------------------------------
def _product(library: str, element: str) -> Product | None:
    """``library``'s gemm for ``element`` ("float32" or "bf16") where it is installed, else None."""
    if library == "openblas":
        from .blas import openblas_product

        return openblas_product(0) if element == "float32" else None
    found = find_mkl() if library == "mkl" else find_onednn()
    if not found:
        return None
    symbol, bits = SYMBOLS[library, element]
    return Product(library, *found, symbol, bits, "float32")


def _first_product(order: tuple[str, ...], element: str) -> Product | None:
    return next(filter(None, (_product(library, element) for library in order)), None)


@functools.cache
def float32_product() -> Product | None:
    """The float32 gemm the kernels call; None where not even NumPy's OpenBLAS was found."""
    named = named_library("SCRATCHLM_BLAS")
    if named:
        return _first_product((named, "openblas"), "float32")
    vendor = cpu_vendor() if cpu_vendor() != "amd" or _has_avx512() else ""   # oneDNN measured on AVX-512 Zen only
    return _first_product(FLOAT32_ORDER.get(vendor, ("openblas",)), "float32")


@functools.cache
def bf16_product() -> Product | None:
    """The bf16 gemm (bf16 a and b, float32 c) the kernels call; None where none is installed."""
    named = named_library("SCRATCHLM_BF16_GEMM")
    return _first_product((named,) if named else BF16_ORDER.get(cpu_vendor(), ("mkl", "onednn")), "bf16")


def why_no_bf16_product() -> str:
    """Why ``bf16_product()`` is None, and what to install, in one line."""
    named = named_library("SCRATCHLM_BF16_GEMM")
    if named:
        return f"SCRATCHLM_BF16_GEMM={named} names a library that is not installed here"
    if cpu_vendor() == "amd" and find_mkl():
        return ("MKL's bf16 product does not use AMD's bf16 units (slower than fp32 here): "
                "pip install onednn-cpu-gomp, or pip install 'scratchlm[bf16]'")
    return "no bf16 matrix product is installed (pip install 'scratchlm[bf16]' adds MKL and oneDNN)"


def describe(product: Product | None) -> str:
    """The library's name as people write it (MKL, oneDNN), "none" for no product."""
    return LIBRARY_NAMES[product.library] if product else "none"


# ---- calling any of them from compiled code and from Python ------------------------------
def _letter(op: int) -> int:
    """CBLAS's transpose enum -> oneDNN's letter."""
    return LETTER_T if op == TRANS else LETTER_N


class ExternalProduct:
    """A gemm called as CBLAS's row-major one, whichever library ``choose()`` answers with.

    ``_numba_compile`` (numba_tools.py) swaps this object for ``numba_external()`` in the
    globals of the kernels it compiles: the C function itself for a CBLAS-style library, a
    compiled adapter for oneDNN. Run as Python, a call goes through ctypes. Compiled code
    refers to the function by its name, not an address, so ``cache=True`` still works.
    """

    def __init__(self, choose):
        self.choose = choose

    def _signature(self, product: Product, numba_types):
        """(argument types, result type) of the C function, in ``numba_types``'s terms."""
        t = numba_types
        integer = t["int64"] if product.bits == 64 else t["int32"]
        real, pointer = t[product.real], t["pointer"]
        if product.library == "onednn":
            return [t["int8"], t["int8"], integer, integer, integer, real, pointer, integer,
                    pointer, integer, real, pointer, integer], t["int32"]
        return [t["int32"], t["int32"], t["int32"], integer, integer, integer, real, pointer, integer,
                pointer, integer, real, pointer, integer], t["void"]

    def numba_external(self):
        # numpy here, not at the top: the CLI's start-up check (check_environment) imports this module
        import llvmlite.binding
        import numpy as np
        from numba import njit, types

        product = self.choose()
        llvmlite.binding.load_library_permanently(product.path)   # so the JIT's linker finds the name
        named = {"int8": types.int8, "int32": types.int32, "int64": types.int64, "float32": types.float32,
                 "float64": types.float64, "pointer": types.voidptr, "void": types.void}
        arguments, result = self._signature(product, named)
        function = types.ExternalFunction(product.symbol, result(*arguments))
        if product.library != "onednn":
            return function
        llvmlite.binding.load_library_permanently("libgomp.so.1")
        get_threads = types.ExternalFunction("omp_get_max_threads", types.int32())
        set_threads = types.ExternalFunction("omp_set_num_threads", types.void(types.int32))
        letter = njit(inline="always")(_letter)

        @njit(inline="always")
        def cblas_to_onednn(layout, op_a, op_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
            # layout is always ROW_MAJOR here, oneDNN's only one. Its OpenMP loops stay on this
            # thread even where the caller's region has one thread (numba.set_num_threads(1)),
            # which OpenMP does not count as parallel.
            threads = get_threads()
            set_threads(1)
            function(np.int8(letter(op_a)), np.int8(letter(op_b)),
                     np.int64(m), np.int64(n), np.int64(k), np.float32(alpha), a, np.int64(lda),
                     b, np.int64(ldb), np.float32(beta), c, np.int64(ldc))
            set_threads(threads)
        return cblas_to_onednn

    def __call__(self, layout, op_a, op_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
        product = self.choose()
        named = {"int8": ctypes.c_int8, "int32": ctypes.c_int32, "int64": ctypes.c_int64,
                 "float32": ctypes.c_float, "float64": ctypes.c_double, "pointer": ctypes.c_void_p,
                 "void": None}
        function = getattr(product.handle, product.symbol)
        function.argtypes, function.restype = self._signature(product, named)
        if product.library == "onednn":
            get_threads, set_threads = openmp_thread_setters()
            threads = get_threads()
            set_threads(1)
            try:
                status = function(_letter(op_a), _letter(op_b), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
            finally:
                set_threads(threads)
            if status != 0:
                raise RuntimeError(f"oneDNN's {product.symbol} refused its arguments (dnnl_status_t {status})")
        else:
            function(layout, op_a, op_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
