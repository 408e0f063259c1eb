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

from ._lesson import Kernel, run_lesson
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


# ---- the declaration: what __main__, the tests and the benchmarks read ------------------
def example_buffer(dtype, rng, shape):
    """The flat gradient buffer (P,) of a model at ``shape``: zeroing writes it once."""
    return (rng.standard_normal(shape.parameters).astype(dtype),), shape.parameters * np.dtype(dtype).itemsize


def example_accumulate(dtype, rng, shape):
    """total (P,) += x (P,): read both, write total."""
    (total,), _ = example_buffer(dtype, rng, shape)
    return (total, rng.standard_normal(total.shape).astype(dtype)), 3 * total.nbytes


def example_scale(dtype, rng, shape):
    (g,), _ = example_buffer(dtype, rng, shape)
    return (g, 0.37), 2 * g.nbytes


def example_add(dtype, rng, shape):
    """Two residual streams (B, T, C): read both, write their sum."""
    a, b = (rng.standard_normal((shape.batch, shape.seq_len, shape.d_model)).astype(dtype) for _ in range(2))
    return (a, b), 3 * a.nbytes


def _first_argument(args, returned):
    return args[0]                                          # the buffer changed in place


KERNELS = (
    Kernel("zero", zero, {"reference": zero_reference, "numba v1": zero_v1}, example_buffer,
           results=_first_argument),
    Kernel("accumulate", accumulate, {"reference": accumulate_reference, "numba v1": accumulate_v1},
           example_accumulate, results=_first_argument),
    Kernel("scale", scale, {"reference": scale_reference, "numba v1": scale_v1}, example_scale,
           results=_first_argument),
    Kernel("add", add, {"reference": add_reference, "numba v1": add_v1}, example_add),
)


if __name__ == "__main__":
    run_lesson(KERNELS)
