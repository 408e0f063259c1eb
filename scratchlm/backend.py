"""The array backend: NumPy on the CPU, CuPy on CUDA GPUs.

This is the only module in scratchlm that imports cupy, and it does so lazily,
the first time a GPU is asked for. Everything else follows the Chainer idiom::

    xp = get_array_module(x)      # numpy or cupy, whichever holds x
    y = xp.exp(x)

Device strings are ``"cpu"``, ``"cuda"`` and ``"auto"`` (the GPU when one is
usable, else the CPU). The dtype policy: float32 by default, float64 allowed
everywhere (the gradient checks run in float64).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from scratchlm.errors import DeviceError
from scratchlm.limits import excerpt

DEVICES = ("cpu", "cuda", "auto")
FLOAT_DTYPES = ("float32", "float64")
DEFAULT_DTYPE = np.float32


_cupy_module: Any = None
_cupy_checked = False


def _load_cupy():
    """Import cupy once and return it if a GPU is usable, else None.

    ``import cupy`` succeeds on machines with no GPU (and raises RuntimeError
    from CUDA calls later), so availability is checked with
    ``cupy.is_available()`` and any CUDA runtime error counts as "no GPU".
    """
    global _cupy_module, _cupy_checked
    if not _cupy_checked:
        _cupy_checked = True
        if os.environ.get("SCRATCHLM_DISABLE_CUDA"):
            return None
        try:
            import cupy

            if cupy.is_available():
                _cupy_module = cupy
        except Exception:  # ImportError, or a CUDA RuntimeError from a broken driver
            _cupy_module = None
    return _cupy_module


def cuda_available() -> bool:
    """True when CuPy is installed and a CUDA GPU is usable."""
    return _load_cupy() is not None


def resolve_device(device: str) -> str:
    """Turn a device string into ``"cpu"`` or ``"cuda"``, or raise DeviceError."""
    device = (device or "auto").strip().lower()
    if device not in DEVICES:
        raise DeviceError(f"unknown device {excerpt(device)}: choose one of {', '.join(DEVICES)}")
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device == "cuda" and not cuda_available():
        raise DeviceError(
            "--device cuda was asked for but no usable CUDA GPU was found "
            "(install the extra with pip install -e '.[cuda]' on a machine with an NVIDIA GPU, or use --device cpu)"
        )
    return device


def array_module_for(device: str):
    """The array module (numpy or cupy) that holds arrays on ``device``."""
    return _load_cupy() if resolve_device(device) == "cuda" else np


def get_array_module(*arrays):
    """numpy or cupy: the module of the first CuPy array among ``arrays``, else numpy."""
    cp = _cupy_module
    if cp is not None:
        for a in arrays:
            if isinstance(a, cp.ndarray):
                return cp
    return np


def is_cuda_array(a) -> bool:
    return _cupy_module is not None and isinstance(a, _cupy_module.ndarray)


def device_of(a) -> str:
    return "cuda" if is_cuda_array(a) else "cpu"


def to_numpy(a) -> np.ndarray:
    """A host NumPy copy (or the array itself when it already lives on the host)."""
    if is_cuda_array(a):
        return a.get()
    return np.asarray(a)


def to_device(a, device: str):
    """Move an array to ``device`` ("cpu" or "cuda"); a no-op when it is already there."""
    if resolve_device(device) == "cuda":
        return _load_cupy().asarray(a)
    return to_numpy(a)


def resolve_dtype(dtype) -> np.dtype:
    """Validate a float dtype (name or numpy dtype); float32 when None."""
    if dtype is None:
        return np.dtype(DEFAULT_DTYPE)
    dt = np.dtype(dtype)
    if dt.name not in FLOAT_DTYPES:
        raise ValueError(f"unsupported dtype {dt.name}: scratchlm computes in float32 or float64")
    return dt


def synchronize(xp) -> None:
    """Wait for queued GPU work (a no-op for NumPy); used only around timings."""
    if xp is not np:
        xp.cuda.get_current_stream().synchronize()
