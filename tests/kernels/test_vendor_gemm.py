"""kernels/vendor_gemm.py: which library each CPU vendor gets, and every installed library's
products right through the one calling convention (each in a fresh process: the choice is
made once per process)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from scratchlm.errors import OptionError
from scratchlm.kernels import bf16, blas, vendor_gemm

INSTALLED = {"openblas": blas.available(), "mkl": vendor_gemm.find_mkl() is not None,
             "onednn": vendor_gemm.find_onednn() is not None}

FLOAT32_SCRIPT = """
import numpy as np
from scratchlm.kernels import blas, dispatch, vendor_gemm
dispatch.set_mode("auto")
rng = np.random.default_rng(0)
for dtype in (np.float32, np.float64):
    a, b = rng.standard_normal((300, 200)).astype(dtype), rng.standard_normal((200, 150)).astype(dtype)
    want = a.astype(np.float64) @ b.astype(np.float64)
    for x, y, ref in ((a, b, want), (b.T, a.T, want.T), (a[:, :64].T, a[:, 64:128], None)):
        for version in (blas.matmul_rows_v1, blas.matmul_depth_v2):
            got = version(x, y)
            ref = x.astype(np.float64) @ y.astype(np.float64) if ref is None else ref
            assert np.abs(got - ref).max() <= (1e-4 if dtype == np.float32 else 1e-10) * np.abs(ref).max(), dtype
print(vendor_gemm.float32_product().library)
"""

BF16_SCRIPT = """
import numpy as np
from scratchlm.kernels import bf16, dispatch, vendor_gemm
dispatch.set_mode("auto")
rng = np.random.default_rng(0)
packed = bf16.round_to_bf16_reference(rng.standard_normal((300, 3 * 48)).astype(np.float32))   # (N, 3C)
w = bf16.round_to_bf16_reference(rng.standard_normal((80, 48)).astype(np.float32))
for a, b in ((packed[:, 48:96], w.T), (w, packed[:, :48].T), (packed[:, :48].T, packed[:, 96:])):
    want = bf16.matmul_reference(a, b)
    assert np.abs(bf16.matmul_v1(a, b) - want).max() <= 1e-5 * np.abs(want).max()
print(vendor_gemm.bf16_product().library)
"""


def run_fresh(script: str, tmp_path, **env) -> str:
    done = subprocess.run([sys.executable, "-c", script], env=dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), **env),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


@pytest.mark.parametrize("library", ["openblas", "mkl", "onednn"])
def test_float32_products_are_right_on_each_installed_library(tmp_path, library):
    if not (INSTALLED[library] and INSTALLED["openblas"]):
        pytest.skip(f"{library} is not installed here")
    assert run_fresh(FLOAT32_SCRIPT, tmp_path, SCRATCHLM_BLAS=library) == library


@pytest.mark.parametrize("library", ["mkl", "onednn"])
def test_bf16_products_are_right_on_each_installed_library(tmp_path, library):
    if not (INSTALLED[library] and bf16.cpu_bf16_units()):
        pytest.skip(f"{library} or bf16 units are missing here")
    assert run_fresh(BF16_SCRIPT, tmp_path, SCRATCHLM_BF16_GEMM=library) == library


def test_auto_picks_the_first_installed_library_of_this_cpus_order(tmp_path):
    if not INSTALLED["openblas"]:
        pytest.skip("no OpenBLAS found")
    order = vendor_gemm.FLOAT32_ORDER.get(vendor_gemm.cpu_vendor(), ("openblas",))
    expected = next(library for library in order if INSTALLED[library])
    assert run_fresh(FLOAT32_SCRIPT, tmp_path, SCRATCHLM_BLAS="auto") == expected


@pytest.fixture
def fresh_choice(monkeypatch):
    """The choice functions re-decide under monkeypatched libraries, and forget it afterwards."""
    cached = (vendor_gemm.float32_product, vendor_gemm.bf16_product, vendor_gemm.cpu_vendor)

    def clear():
        for function in cached:                      # the originals, whatever a test patched in
            function.cache_clear()
    clear()
    monkeypatch.setattr(vendor_gemm, "find_mkl", lambda: ("/lib/libmkl_rt.so.2", None))
    monkeypatch.setattr(vendor_gemm, "find_onednn", lambda: ("/lib/libdnnl.so.3", None))
    monkeypatch.setattr(blas, "openblas_product", lambda which: vendor_gemm.Product(
        "openblas", "/lib/libopenblas.so", None, "cblas_sgemm", 64, "float32"))
    monkeypatch.delenv("SCRATCHLM_BLAS", raising=False)
    monkeypatch.delenv("SCRATCHLM_BF16_GEMM", raising=False)
    yield monkeypatch
    clear()


@pytest.mark.parametrize("vendor, float32, bf16_library", [
    ("intel", "mkl", "mkl"), ("amd", "onednn", "onednn"), ("", "openblas", "mkl")])
def test_each_vendor_gets_its_measured_order(fresh_choice, vendor, float32, bf16_library):
    fresh_choice.setattr(vendor_gemm, "cpu_vendor", lambda: vendor)
    fresh_choice.setattr(vendor_gemm, "_has_avx512", lambda: True)
    assert vendor_gemm.float32_product().library == float32
    assert vendor_gemm.bf16_product().library == bf16_library


def test_amd_without_onednn_keeps_openblas_for_float32_and_has_no_bf16_product(fresh_choice):
    """MKL's bf16 product on AMD runs slower than float32: bf16 says why and fp32 runs instead."""
    fresh_choice.setattr(vendor_gemm, "cpu_vendor", lambda: "amd")
    fresh_choice.setattr(vendor_gemm, "find_onednn", lambda: None)
    assert vendor_gemm.float32_product().library == "openblas"
    assert vendor_gemm.bf16_product() is None
    fresh_choice.setattr(bf16, "cpu_bf16_units", lambda: ("AVX512-BF16",))
    fresh_choice.setattr(bf16, "bf16_product", vendor_gemm.bf16_product)
    assert "does not use AMD's bf16 units" in bf16.unavailable_reason()
    fresh_choice.setenv("SCRATCHLM_BF16_GEMM", "mkl")                 # named, it still runs
    vendor_gemm.bf16_product.cache_clear()
    assert vendor_gemm.bf16_product().library == "mkl"


def test_a_named_library_that_is_missing_leaves_openblas_and_no_bf16_product(fresh_choice):
    fresh_choice.setattr(vendor_gemm, "find_onednn", lambda: None)
    fresh_choice.setenv("SCRATCHLM_BLAS", "onednn")
    fresh_choice.setenv("SCRATCHLM_BF16_GEMM", "onednn")
    assert vendor_gemm.float32_product().library == "openblas"
    assert vendor_gemm.bf16_product() is None


def test_an_unknown_library_name_says_which_names_work(fresh_choice):
    fresh_choice.setenv("SCRATCHLM_BLAS", "accelerate")
    with pytest.raises(OptionError, match="SCRATCHLM_BLAS='accelerate' names no library .* auto, openblas, mkl, onednn"):
        vendor_gemm.check_environment()


def test_the_command_line_refuses_an_unknown_library_name_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "scratchlm", "generate", str(tmp_path / "none.pt")],
                          env=dict(os.environ, SCRATCHLM_BF16_GEMM="blis"), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: SCRATCHLM_BF16_GEMM='blis' names no library this engine knows: use one of auto, mkl, onednn, or unset it"]


def test_amd_without_avx512_keeps_openblas_for_float32(fresh_choice):
    fresh_choice.setattr(vendor_gemm, "cpu_vendor", lambda: "amd")
    fresh_choice.setattr(vendor_gemm, "_has_avx512", lambda: False)
    assert vendor_gemm.float32_product().library == "openblas"


ONE_THREAD_SCRIPT = """
import resource, time
import numba, numpy as np
from scratchlm.kernels import blas, dispatch
dispatch.set_mode("auto")
a, b = np.ones((2048, 1024), np.float32), np.ones((1024, 1024), np.float32)
blas.matmul_rows_v1(a, b)
numba.set_num_threads(1)
start, clock = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
for _ in range(10):
    assert blas.matmul_rows_v1(a, b)[0, 0] == 1024.0
end = resource.getrusage(resource.RUSAGE_SELF)
print((end.ru_utime + end.ru_stime - start.ru_utime - start.ru_stime) / (time.perf_counter() - clock))
"""


def test_onednn_stays_on_the_calling_thread_when_numba_runs_one(tmp_path):
    """A one-thread Numba region is not "parallel" to OpenMP, so oneDNN would start a team of
    its own in each call; the adapter holds it to one thread (CPU time at most ~wall time)."""
    if not INSTALLED["onednn"] or len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs oneDNN and 2 CPUs")
    assert float(run_fresh(ONE_THREAD_SCRIPT, tmp_path, SCRATCHLM_BLAS="onednn")) < 1.4


def test_the_python_path_calls_onednn_with_its_own_arguments(tmp_path):
    """ExternalProduct run as Python (a kernel stepped through without Numba) reaches oneDNN too."""
    if not INSTALLED["onednn"]:
        pytest.skip("oneDNN is not installed here")
    product = vendor_gemm.Product("onednn", *vendor_gemm.find_onednn(), "dnnl_sgemm", 64, "float32")
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((5, 7)).astype(np.float32), rng.standard_normal((4, 7)).astype(np.float32)
    c = np.empty((5, 4), np.float32)
    vendor_gemm.ExternalProduct(lambda: product)(vendor_gemm.ROW_MAJOR, vendor_gemm.NO_TRANS, vendor_gemm.TRANS,
                                                 5, 4, 7, 1.0, a.ctypes.data, 7, b.ctypes.data, 7, 0.0,
                                                 c.ctypes.data, 4)
    np.testing.assert_allclose(c, a @ b.T, rtol=1e-5, atol=1e-5)
