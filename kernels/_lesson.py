"""Check-and-time helpers for the ``__main__`` block of every kernel file.

``python -m scratchlm.kernels.layernorm`` (and the others) compare each version with
the NumPy reference, then time it and print milliseconds per call and the memory
bandwidth it reached (bytes the kernel must read and write at least, divided by time),
the way llm.c's ``dev/cuda`` files do. Timings here are for reading, never asserted.
"""

from __future__ import annotations

import time

import numpy as np

# tolerance of a fast version against the reference, per dtype
TOLERANCE = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}


def assert_close(got, want, dtype, label=""):
    """Element-wise ``|got - want| <= tol * (|want| + max|want|)``, tol set by the dtype.

    The absolute part scales with the array's largest value: a sum over many rows (dw of
    a norm, dweight of an embedding) carries rounding error in proportion to its terms,
    not to its result, so a small entry of a large sum is only as exact as the big ones.
    Returns the largest absolute difference.
    """
    from scratchlm.backend import to_numpy

    tol = TOLERANCE[np.dtype(dtype)]
    got, want = to_numpy(got), np.asarray(to_numpy(want), np.float64)     # GPU results come home
    scale = float(np.max(np.abs(want), initial=0.0))
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale, err_msg=label)
    return float(np.max(np.abs(np.asarray(got, np.float64) - want), initial=0.0))


def check(label, got, want, dtype):
    """Assert that two (tuples of) arrays agree to the dtype's tolerance; print the worst error."""
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    worst = 0.0
    for g, w in zip(got, want, strict=True):
        if g is None and w is None:
            continue
        worst = max(worst, assert_close(g, w, dtype, label))
    print(f"  {label:<28} ok   (max abs error {worst:.1e})")


def best_ms(fn, *args, repeat=30):
    """Milliseconds per call: the best of ``repeat`` calls after one warm-up call (compiles).

    On CuPy arrays each call is followed by a wait for the GPU: kernel launches return at
    once, so without it the time would be the launch's, not the kernel's.
    """
    from scratchlm.backend import get_array_module, synchronize

    xp = get_array_module(*args)
    fn(*args)
    synchronize(xp)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(*args)
        synchronize(xp)
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def cuda_module():
    """cupy when a CUDA GPU is usable (the ``__main__`` blocks then check and time the CUDA
    versions too), else None."""
    from scratchlm import backend

    return backend.array_module_for("cuda") if backend.cuda_available() else None


def report(label, fn, args, nbytes, repeat=30):
    """Time ``fn(*args)`` and print ms per call and GB/s over ``nbytes`` of memory traffic."""
    ms = best_ms(fn, *args, repeat=repeat)
    print(f"  {label:<28} {ms:8.3f} ms   {nbytes / ms / 1e6:7.1f} GB/s")
    return ms
