"""Which version of a kernel runs: the NumPy reference or a compiled one.

``SCRATCHLM_KERNELS=reference`` selects the plain NumPy references everywhere (for
reading and debugging); the default, ``auto``, uses the fastest correct version for
the arrays at hand: compiled Numba code for NumPy arrays when Numba imports, the
reference otherwise (CuPy arrays run the reference, which is backend-generic).
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


def lazy_njit(**options):
    """Decorator: a Numba kernel that compiles (``numba.njit(cache=True, ...)``) on its first call.

    The decorated function is plain Python loops, readable as such; ``import numba``
    happens only when it first runs, so importing scratchlm stays fast. ``.py_func``
    is the undecorated function (handy for stepping through in a debugger).
    """
    import functools

    def wrap(py_func):
        compiled = None

        @functools.wraps(py_func)
        def call(*args):
            nonlocal compiled
            if compiled is None:
                import numba

                compiled = numba.njit(cache=True, **options)(py_func)
            return compiled(*args)

        call.py_func = py_func
        return call

    return wrap
