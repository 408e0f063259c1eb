"""Shared fixtures: the kernel mode (NumPy references vs compiled kernels) and small helpers."""

from __future__ import annotations

import numpy as np
import pytest

from scratchlm.kernels import dispatch


@pytest.fixture(params=["reference", "auto"])
def kernel_mode(request):
    """Run a test once with the NumPy reference kernels and once with the fastest (Numba) ones."""
    previous = dispatch.set_mode(request.param)
    yield request.param
    dispatch.set_mode(previous)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
