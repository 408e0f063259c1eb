"""Whole-buffer passes on both cores: zero a buffer, add one array into another, scale one.

Three passes that every training step makes over the flat gradient buffer (``optim.py``):

    zero(g):            g[i] = 0                 before the step's backward   (AdamW.zero_grad)
    accumulate(t, x):   t[i] += x[i]             each parameter's gradient into its view of g
    scale(g, c):        g[i] *= c                clipping the global gradient norm

No arithmetic to speak of: each is pure memory traffic, one or two reads and one write per
element. NumPy runs them (``fill(0)``, ``+=``, ``*=``) on one core, and on this machine one
core cannot keep the memory system busy. At config d (37.8M parameters: 151 MB per float32
buffer, and with the parameters and Adam's two moments beside it, more than the 260 MiB L3
holds) two cores move the same bytes 2-4x faster. Nothing is cached.

Versions: 0 the NumPy reference (CuPy arrays too); 1 Numba, the elements cut into one
contiguous block per core (``prange``). Buffers under ``SERIAL_BELOW`` elements run on one
thread, where starting a parallel region would cost more than it saves.
Run ``python -m scratchlm.kernels.buffers`` to check and time them.
"""

from __future__ import annotations

import numpy as np

from .dispatch import lazy_njit, prange, use_numba


# ---- version 0: the NumPy reference ------------------------------------------------
def zero_reference(g):
    g.fill(0)


def accumulate_reference(total, x):
    total += x


def scale_reference(g, factor):
    g *= g.dtype.type(factor)


# ---- version 1: Numba, one block of elements per core -----------------------------------
# Better than the reference: both cores stream memory at once. The factor is cast to the
# buffer's dtype first (a Python float is a float64 and would make a float32 loop float64).
@lazy_njit(parallel=True)
def _fill_kernel(x, value):
    for i in prange(x.shape[0]):
        x[i] = value


@lazy_njit(parallel=True)
def _add_kernel(total, x):
    for i in prange(total.shape[0]):
        total[i] += x[i]


@lazy_njit(parallel=True)
def _scale_kernel(x, factor):
    for i in prange(x.shape[0]):
        x[i] *= factor


def zero_v1(g):
    _fill_kernel(g.reshape(-1), g.dtype.type(0.0))        # (n,) a view: g is contiguous


def accumulate_v1(total, x):
    _add_kernel(total.reshape(-1), x.reshape(-1))          # (n,) views of two contiguous arrays


def scale_v1(g, factor):
    _scale_kernel(g.reshape(-1), g.dtype.type(factor))


# ---- dispatch ----------------------------------------------------------------------
def _compiled_ok(*arrays):
    """Version 1 takes C-contiguous float32/float64 arrays of one shape and one dtype."""
    first = arrays[0]
    return (use_numba(*arrays) and first.dtype in (np.float32, np.float64) and first.size > 0
            and all(a.dtype == first.dtype and a.shape == first.shape and a.flags.c_contiguous
                    for a in arrays))


def zero(g):
    """g[...] = 0, in place."""
    (zero_v1 if _compiled_ok(g) else zero_reference)(g)


def accumulate(total, x):
    """total += x, in place (x of another dtype or layout, or broadcast, takes NumPy's path)."""
    (accumulate_v1 if _compiled_ok(total, x) else accumulate_reference)(total, x)


def scale(g, factor):
    """g *= factor, in place, factor cast to g's dtype."""
    (scale_v1 if _compiled_ok(g) else scale_reference)(g, factor)


if __name__ == "__main__":
    from ._lesson import best_ms, check

    rng = np.random.default_rng(0)
    size, pieces = 37_800_000, 36                            # config d's gradient buffer; 36 weights
    for dtype in (np.float32, np.float64):
        start = rng.standard_normal(size).astype(dtype)
        parts = [rng.standard_normal(size // pieces).astype(dtype) for _ in range(pieces)]
        print(f"whole-buffer passes, {size:,} elements {np.dtype(dtype).name}"
              f" ({size * start.itemsize / 1e6:.0f} MB); accumulate: {pieces} arrays of"
              f" {len(parts[0]) * start.itemsize / 1e6:.1f} MB into views")
        want = [start.copy() for _ in range(3)]
        zero_reference(want[0])
        for view, part in zip([want[1][i * len(p):(i + 1) * len(p)] for i, p in enumerate(parts)], parts):
            accumulate_reference(view, part)
        scale_reference(want[2], 0.37)
        for name, fill, add, mul in [("reference", zero_reference, accumulate_reference, scale_reference),
                                     ("numba v1", zero_v1, accumulate_v1, scale_v1)]:
            got = [start.copy() for _ in range(3)]
            fill(got[0])
            for view, part in zip([got[1][i * len(p):(i + 1) * len(p)] for i, p in enumerate(parts)], parts):
                add(view, part)
            mul(got[2], 0.37)
            check(f"{name} zero, accumulate, scale", tuple(got), tuple(want), dtype)
            buffer = start.copy()
            views = [buffer[i * len(p):(i + 1) * len(p)] for i, p in enumerate(parts)]   # (n,) each
            for label, run, bytes_moved in [
                    ("zero", lambda: fill(buffer), size),                                  # write
                    ("accumulate", lambda: [add(v, p) for v, p in zip(views, parts)],
                     3 * len(parts[0]) * pieces),                                          # read 2, write 1
                    ("scale", lambda: mul(buffer, 0.999), 2 * size)]:                      # read, write
                ms = best_ms(run, repeat=10)
                print(f"  {name + ' ' + label:<28} {ms:8.2f} ms   {bytes_moved * start.itemsize / ms / 1e6:7.1f} GB/s")
