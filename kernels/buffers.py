"""Whole-buffer passes on both cores: zero a buffer, add one array into another, scale one.

Three passes that every training step makes over the flat gradient buffer (``optim.py``),
and one it makes over the residual stream:

    zero(g):            g[i] = 0                 before the step's backward   (AdamW.zero_grad)
    accumulate(t, x):   t[i] += x[i]             each parameter's gradient into its view of g
    scale(g, c):        g[i] *= c                clipping the global gradient norm
    add(a, b):          a + b, a new array       x + block(x) forward; the two gradients that
                                                 reach x in backward (``Tensor.backward``)

No arithmetic to speak of: each is pure memory traffic, one or two reads and one write per
element. NumPy runs them (``fill(0)``, ``+=``, ``*=``) on one core, and on this machine one
core cannot keep the memory system busy. At config d (37.8M parameters: 151 MB per float32
buffer, and with the parameters and Adam's two moments beside it, more than the 260 MiB L3
holds) two cores move the same bytes 2-4x faster. No state: each call is one pass.

Versions: 0 the NumPy reference (CuPy arrays too); 1 Numba, the elements cut into one
contiguous block per core (``prange``). Arrays under ``SERIAL_BELOW`` elements stay with
NumPy: on one core its loop is as fast, and a compiled call would only add its overhead.
Run ``python -m scratchlm.kernels.buffers`` to check and time them.
"""

from __future__ import annotations

import numpy as np

from .dispatch import use_numba
from .numba_tools import SERIAL_BELOW, lazy_njit, prange


# ---- version 0: the NumPy reference ------------------------------------------------
def zero_reference(g):
    g.fill(0)


def accumulate_reference(total, x):
    total += x


def scale_reference(g, factor):
    g *= g.dtype.type(factor)


def add_reference(a, b):
    return a + b


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


@lazy_njit(parallel=True)
def _sum_kernel(a, b, out):
    for i in prange(out.shape[0]):
        out[i] = a[i] + b[i]


def zero_v1(g):
    _fill_kernel(g.reshape(-1), g.dtype.type(0.0))        # (n,) a view: g is contiguous


def accumulate_v1(total, x):
    _add_kernel(total.reshape(-1), x.reshape(-1))          # (n,) views of two contiguous arrays


def scale_v1(g, factor):
    _scale_kernel(g.reshape(-1), g.dtype.type(factor))


def add_v1(a, b):
    out = np.empty_like(a)                                 # C-ordered, like a
    _sum_kernel(a.reshape(-1), b.reshape(-1), out.reshape(-1))
    return out


# ---- dispatch ----------------------------------------------------------------------
def _compiled_ok(*arrays):
    """Version 1 takes C-contiguous float32/float64 arrays of one shape and one dtype, big
    enough for two cores to pay."""
    first = arrays[0]
    return (use_numba(*arrays) and first.dtype in (np.float32, np.float64) and first.size >= SERIAL_BELOW
            and all(a.dtype == first.dtype and a.shape == first.shape and a.flags.c_contiguous
                    for a in arrays))


def zero(g):
    """g[...] = 0, in place."""
    (zero_v1 if _compiled_ok(g) else zero_reference)(g)


def accumulate(total, x):
    """total += x, in place (x of another dtype or layout, or broadcast, takes NumPy's path).
    x may be total itself, but must not partly overlap it (NumPy's ``+=`` would copy first)."""
    (accumulate_v1 if _compiled_ok(total, x) else accumulate_reference)(total, x)


def scale(g, factor):
    """g *= factor, in place, factor cast to g's dtype."""
    (scale_v1 if _compiled_ok(g) else scale_reference)(g, factor)


def add(a, b):
    """a + b as a new array (NumPy's ``+``, with its broadcasting and casting, where v1 does not apply)."""
    return (add_v1 if _compiled_ok(a, b) else add_reference)(a, b)


def _views(flat, parts):
    """Consecutive views of ``flat`` with the lengths of ``parts`` (parameters in a flat buffer)."""
    ends = np.cumsum([0] + [len(p) for p in parts])
    return [flat[a:b] for a, b in zip(ends[:-1], ends[1:])]


if __name__ == "__main__":
    from ._lesson import best_ms, check

    rng = np.random.default_rng(0)
    size, pieces = 37_800_000, 36                            # config d: the gradient buffer, 36 weights
    residual = (32, 128, 256)                                # config c's residual stream
    for dtype in (np.float32, np.float64):
        start = rng.standard_normal(size).astype(dtype)      # (P,)
        parts = [rng.standard_normal(size // pieces).astype(dtype) for _ in range(pieces)]
        a, b = (rng.standard_normal(residual).astype(dtype) for _ in range(2))   # (B, T, C)
        print(f"{size:,} elements {np.dtype(dtype).name} ({size * start.itemsize / 1e6:.0f} MB);"
              f" accumulate: {pieces} arrays of {len(parts[0]) * start.itemsize / 1e6:.1f} MB into"
              f" views; add: two {residual}")
        results = {}
        for name, fill, into, mul, plus in [
                ("reference", zero_reference, accumulate_reference, scale_reference, add_reference),
                ("numba v1", zero_v1, accumulate_v1, scale_v1, add_v1)]:
            zeroed, summed, scaled = start.copy(), start.copy(), start.copy()
            fill(zeroed)
            for view, part in zip(_views(summed, parts), parts):
                into(view, part)
            mul(scaled, 0.37)
            results[name] = (zeroed, summed, scaled, plus(a, b))
            check(f"{name} zero, accumulate, scale, add", results[name], results["reference"], dtype)
            buffer = start.copy()
            views = _views(buffer, parts)
            for label, run, elements_moved in [
                    ("zero", lambda: fill(buffer), size),                                  # write
                    ("accumulate", lambda: [into(v, p) for v, p in zip(views, parts)],
                     3 * len(parts[0]) * pieces),                                          # read 2, write 1
                    ("scale", lambda: mul(buffer, 0.999), 2 * size),                       # read, write
                    ("add", lambda: plus(a, b), 3 * a.size)]:                              # read 2, write 1
                ms = best_ms(run, repeat=10)
                gbs = elements_moved * start.itemsize / ms / 1e6
                print(f"  {name + ' ' + label:<28} {ms:8.3f} ms   {gbs:7.1f} GB/s")
