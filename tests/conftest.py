"""Shared fixtures: the kernel mode (NumPy references vs compiled kernels), the array backend
(NumPy, and CuPy where a GPU is usable) and small helpers."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

# `python -m pytest` puts the checkout's root on sys.path, where the top-level kernels/ folder
# (installed as scratchlm.kernels) hides the Hugging Face `kernels` package that transformers
# imports. The tests import scratchlm as installed, so the root comes off the path.
CHECKOUT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != CHECKOUT_ROOT]

# Numba's on-disk cache is not safe when processes compile *different* signatures of one
# function at once (each picks the same next file name: a float32 entry can end up holding
# float64 code, which crashes). pytest-xdist's workers do exactly that on a cold cache, so
# each worker gets a cache of its own. Set before anything imports Numba.
if os.environ.get("PYTEST_XDIST_WORKER") and "NUMBA_CACHE_DIR" not in os.environ:
    os.environ["NUMBA_CACHE_DIR"] = os.path.join(os.path.dirname(__file__), os.pardir, ".pytest_cache",
                                                 "numba", os.environ["PYTEST_XDIST_WORKER"])

from scratchlm.kernels import dispatch  # noqa: E402  (after the path and cache settings above)


@pytest.fixture(params=["reference", "auto"])
def kernel_mode(request):
    """Run a test once with the NumPy reference kernels and once with the fastest (Numba) ones."""
    previous = dispatch.set_mode(request.param)
    yield request.param
    dispatch.set_mode(previous)


@pytest.fixture
def compiled_kernels():
    """The compiled kernels on, whatever SCRATCHLM_KERNELS says (for tests about which one runs)."""
    previous = dispatch.set_mode("auto")
    yield
    dispatch.set_mode(previous)


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def backend(request):
    """The array module a test runs on: NumPy everywhere, CuPy where CuPy sees a usable CUDA GPU
    (skipped elsewhere). Move inputs with ``backend.asarray``; bring results back with
    ``scratchlm.backend.to_numpy``."""
    if request.param == "numpy":
        return np
    pytest.importorskip("cupy")
    from scratchlm import backend as engine_backend

    if not engine_backend.cuda_available():
        pytest.skip("CuPy is installed but no CUDA GPU is usable")
    return engine_backend.array_module_for("cuda")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
