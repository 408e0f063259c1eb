"""Which version of a kernel runs: the NumPy reference or a compiled one.

``SCRATCHLM_KERNELS=reference`` selects the plain NumPy references everywhere, on every
backend (for reading and debugging: the references also run on CuPy arrays); the default,
``auto``, uses the fastest correct version for the arrays at hand: the CUDA version for
CuPy arrays, compiled Numba code for NumPy arrays when Numba imports, the reference otherwise.
"""

from __future__ import annotations

import importlib.util
import os

MODES = ("auto", "reference", "numba")

_mode = os.environ.get("SCRATCHLM_KERNELS", "auto").strip().lower() or "auto"
_numba_present: bool | None = None


def mode() -> str:
    return _mode


def set_mode(new_mode: str) -> str:
    """Switch kernels for the whole process (tests use this); returns the previous mode."""
    global _mode
    if new_mode not in MODES:
        raise ValueError(f"SCRATCHLM_KERNELS must be one of {', '.join(MODES)}, not {new_mode!r}")
    previous, _mode = _mode, new_mode
    return previous


def numba_available() -> bool:
    global _numba_present
    if _numba_present is None:
        _numba_present = importlib.util.find_spec("numba") is not None
    return _numba_present


def use_numba(*arrays) -> bool:
    """True when the compiled CPU version should run on these arrays."""
    if _mode == "reference" or not numba_available():
        return False
    import numpy as np

    return all(isinstance(a, np.ndarray) for a in arrays)


def use_cuda(*arrays) -> bool:
    """True when the CUDA version should run on these arrays: all of them CuPy (GPU) arrays."""
    if _mode == "reference":
        return False
    from scratchlm.backend import is_cuda_array

    return all(is_cuda_array(a) for a in arrays)
