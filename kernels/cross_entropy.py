"""Softmax + cross-entropy, fused: the loss of a language model and its gradient.

Shapes: logits (N, V) with N = B*T rows of V vocabulary scores; targets (N,) integer
ids, where ``ignore_index`` marks rows that do not count. M = number of counted rows.

Forward, per counted row n with target t:

    lse_n  = log sum_j exp(logits[n, j])               (computed as m + log sum exp(l - m), m = row max)
    loss_n = lse_n - logits[n, t]
    loss   = (1/M) sum_n loss_n

Backward (the famous simplification: softmax and log cancel):

    dlogits[n, j] = (softmax(logits[n])_j - [j == t]) / M      for counted rows, 0 otherwise

Because the gradient needs nothing but the softmax, forward computes it at once
(when asked) and the op keeps it: the only (N, V) array besides the logits is the
logits gradient itself. Backward just scales it by dL/dloss.

Versions: 0 the NumPy reference; 1 Numba, fused, rows over the cores; CUDA (CuPy
arrays), fused, one thread block per row. Run ``python -m scratchlm.kernels.cross_entropy``
to check and time them.
"""

from __future__ import annotations

import numpy as np

from ._cuda import cupy_module, launch, row_threads
from ._lesson import Kernel, run_lesson
from .dispatch import use_cuda, use_numba
from .numba_tools import lazy_njit, prange


# ---- version 0: the NumPy reference ------------------------------------------------
def cross_entropy_forward_reference(logits, targets, ignore_index=-1, compute_grad=True):
    """logits (N, V), targets (N,) -> loss (0-d), dlogits (N, V) or None."""
    from scratchlm.backend import get_array_module

    xp = get_array_module(logits)
    n = logits.shape[0]
    rows = xp.arange(n)
    counted = targets != ignore_index                                   # (N,)
    safe_targets = xp.where(counted, targets, 0)                        # (N,)
    count = max(int(counted.sum()), 1)
    shifted = logits - logits.max(axis=-1, keepdims=True)               # (N, V)
    lse = xp.log(xp.exp(shifted).sum(axis=-1))                          # (N,)
    losses = (lse - shifted[rows, safe_targets]) * counted              # (N,)
    loss = (losses.sum() / count).astype(logits.dtype)
    if not compute_grad:
        return loss, None
    dlogits = xp.exp(shifted - lse[:, None])                            # (N, V) softmax
    dlogits[rows, safe_targets] -= 1.0
    dlogits *= (counted / count).astype(logits.dtype)[:, None]
    return loss, dlogits


# ---- version 1: Numba, fused, one row per loop step, rows spread over the cores ---------
# Better than the reference: each row is read once into cache and its softmax, loss and
# gradient all come from it, with no (N, V) temporaries besides dlogits itself. No
# fastmath: a masked logit of -inf must give exp(-inf) = 0, not whatever fastmath assumes.
# Its cost is the exponentials: a scalar libm exp (~3 ns) each, where NumPy's array exp
# takes 0.5 ns per element. A NumPy exp between two Numba passes saves a fraction of a
# millisecond per step, not worth a second pass, so this lesson stops here.
@lazy_njit(parallel=True)
def _cross_entropy_kernel(logits, targets, ignore_index, scale, want_grad, dlogits):
    # logits: (N, V); targets: (N,); dlogits: (N, V), or (0, V) when not want_grad.
    # Returns scale * sum of the counted rows' losses; dlogits[n] = scale * (p_n - onehot).
    N, V = logits.shape
    real = logits.dtype.type
    total = 0.0
    for n in prange(N):
        target = targets[n]
        counted = target != ignore_index
        row_max = logits[n, 0]
        for j in range(1, V):
            row_max = max(row_max, logits[n, j])
        exp_total = 0.0
        for j in range(V):
            e = np.exp(logits[n, j] - row_max)
            exp_total += e
            if want_grad:
                dlogits[n, j] = e                           # unnormalised softmax, for now
        if counted:
            total += row_max + np.log(exp_total) - logits[n, target]
        if want_grad:
            p_scale = real(scale / exp_total) if counted else real(0.0)
            for j in range(V):
                dlogits[n, j] *= p_scale
            if counted:
                dlogits[n, target] -= real(scale)
    return total * scale


def cross_entropy_forward_v1(logits, targets, ignore_index=-1, compute_grad=True):
    logits = np.ascontiguousarray(logits)                                   # (N, V)
    targets = np.ascontiguousarray(targets)                                 # (N,)
    count = max(int(np.count_nonzero(targets != ignore_index)), 1)
    dlogits = np.empty(logits.shape if compute_grad else (0, logits.shape[1]), logits.dtype)
    loss = _cross_entropy_kernel(logits, targets, ignore_index, 1.0 / count, compute_grad, dlogits)
    return np.asarray(loss, dtype=logits.dtype), (dlogits if compute_grad else None)


def _targets_valid(targets, vocab_size, ignore_index):
    """The compiled version does not check bounds: any other target goes to the reference."""
    return bool(np.all((targets == ignore_index) | ((targets >= 0) & (targets < vocab_size))))


# ---- CUDA version (CuPy arrays): fused, one thread block per row ----------------------
# Version 1 on a GPU: block n finds its row's max and sum of exponentials with block_max and
# block_sum (see _cuda.py), then writes the row's loss and, when asked, its gradient. What
# must not happen is a wait for the GPU: the count of counted rows (M) is computed on the
# GPU and the kernel reads 1/M from GPU memory, and the loss stays there as a 0-d array
# until someone reads it. Targets outside [0, V) (other than ignore_index) wrap around, as
# CuPy's own indexing does, instead of reading past the row (checking would cost a copy).
CROSS_ENTROPY_CUDA_SOURCE = r"""
extern "C" __global__ void cross_entropy_forward(const real* logits, const long long* targets,
                                                 long long ignore_index, const real* inv_count,
                                                 int V, int want_grad, real* row_loss, real* dlogits) {
    const long long row = (long long)blockIdx.x * V;            // logits[row + j]: this block's row
    const long long target = targets[blockIdx.x];
    const bool counted = target != ignore_index;
    const long long t = (target % V + V) % V;
    real local_max = logits[row];
    for (int j = threadIdx.x; j < V; j += blockDim.x) local_max = logits[row + j] > local_max ? logits[row + j] : local_max;
    const real row_max = block_max(local_max);
    real local_total = 0;
    for (int j = threadIdx.x; j < V; j += blockDim.x) local_total += exp(logits[row + j] - row_max);
    const real exp_total = block_sum(local_total);
    if (threadIdx.x == 0) row_loss[blockIdx.x] = counted ? row_max + log(exp_total) - logits[row + t] : real(0);
    if (want_grad) {                                            // (p - onehot) / M, 0 if not counted
        const real scale = counted ? *inv_count : real(0);
        for (int j = threadIdx.x; j < V; j += blockDim.x)
            dlogits[row + j] = (exp(logits[row + j] - row_max) / exp_total - (j == t ? real(1) : real(0))) * scale;
    }
}
"""


def cross_entropy_forward_cuda(logits, targets, ignore_index=-1, compute_grad=True):
    cp = cupy_module()
    logits = cp.ascontiguousarray(logits)                                   # (N, V)
    targets = cp.ascontiguousarray(cp.asarray(targets), dtype=cp.int64)     # (N,)
    N, V = logits.shape
    count = cp.maximum((targets != ignore_index).sum(), 1)                  # 0-d, on the GPU
    inv_count = (1.0 / count).astype(logits.dtype)                          # 0-d, on the GPU
    row_loss = cp.empty(N, dtype=logits.dtype)                              # (N,)
    dlogits = cp.empty_like(logits) if compute_grad else row_loss           # (N, V); unused if not
    launch(CROSS_ENTROPY_CUDA_SOURCE, "cross_entropy_forward", logits.dtype, N, row_threads(V),
           (logits, targets, np.int64(ignore_index), inv_count, np.int32(V), np.int32(compute_grad),
            row_loss, dlogits))
    loss = (row_loss.sum() * inv_count).astype(logits.dtype)               # 0-d, on the GPU
    return loss, (dlogits if compute_grad else None)


# ---- dispatch ----------------------------------------------------------------------
# Training (loss and gradient) runs version 1. The loss alone (evaluation, no tape) stays
# with the reference, whose SIMD exp wins there.
# CuPy arrays run the CUDA version, with or without the gradient.
def cross_entropy_forward(logits, targets, ignore_index=-1, compute_grad=True):
    if (use_cuda(logits) and logits.dtype in (np.float32, np.float64) and logits.ndim == 2
            and logits.shape[0] > 0 and logits.shape[1] > 0):
        return cross_entropy_forward_cuda(logits, targets, ignore_index, compute_grad)
    if (compute_grad and use_numba(logits, targets) and logits.dtype in (np.float32, np.float64)
            and logits.ndim == 2 and logits.shape[1] > 0
            and _targets_valid(targets, logits.shape[1], ignore_index)):
        return cross_entropy_forward_v1(logits, targets, ignore_index, compute_grad)
    return cross_entropy_forward_reference(logits, targets, ignore_index, compute_grad)


# ---- the declaration: what __main__, the tests and the benchmarks read ------------------
def example_with_grad(dtype, rng, shape):
    """Logits (N, V) and targets (N,), every tenth ignored; loss and gradient read and write (N, V)."""
    logits = (3 * rng.standard_normal((shape.rows, shape.vocab))).astype(dtype)
    targets = rng.integers(0, shape.vocab, size=shape.rows)
    targets[::10] = -1                                      # some ignored rows
    return (logits, targets), 2 * logits.nbytes + targets.nbytes


def example_loss_only(dtype, rng, shape):
    (logits, targets), _ = example_with_grad(dtype, rng, shape)
    return (logits, targets, -1, False), logits.nbytes + targets.nbytes


VERSIONS = {"reference": cross_entropy_forward_reference, "numba v1": cross_entropy_forward_v1,
            "cuda": cross_entropy_forward_cuda}
KERNELS = (
    Kernel("cross_entropy_forward", cross_entropy_forward, VERSIONS, example_with_grad),
    Kernel("cross_entropy_loss_only", cross_entropy_forward, VERSIONS, example_loss_only),
)


if __name__ == "__main__":
    run_lesson(KERNELS)
