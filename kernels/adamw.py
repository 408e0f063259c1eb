"""AdamW over one flat parameter buffer, plus the global gradient norm and clipping.

All parameters live in ONE flat buffer ``params`` (P,), their gradients in ONE flat
buffer ``grads`` (P,), and Adam's moments in ``m`` and ``v`` (P,). The parameters
that get weight decay (the matrices) come first: ``params[:num_decayed]``.

Global gradient norm and clipping (as torch.nn.utils.clip_grad_norm_):

    norm = sqrt(sum_i g_i^2);   if norm > max_norm: g *= max_norm / (norm + 1e-6)

AdamW step t (1-based), for every i:

    m_i = b1 m_i + (1 - b1) g_i
    v_i = b2 v_i + (1 - b2) g_i^2
    p_i = p_i - lr * wd * p_i                (decoupled weight decay, i < num_decayed only)
    p_i = p_i - lr * (m_i / (1 - b1^t)) / (sqrt(v_i / (1 - b2^t)) + eps)

Everything is in place; nothing is cached.

Versions: 0 the NumPy reference; 1 Numba, one fused pass over the cores; CUDA (CuPy
arrays), one fused kernel, and a clipping that never waits for the GPU.
Run ``python -m scratchlm.kernels.adamw`` to check and time them.
"""

from __future__ import annotations

import numpy as np

from . import buffers
from ._cuda import STRIDE_THREADS, cupy_module, launch, stride_blocks
from ._lesson import Kernel, run_lesson
from .dispatch import use_cuda, use_numba
from .numba_tools import REORDER_SUMS, lazy_njit, prange


# ---- version 0: the NumPy reference ------------------------------------------------
def grad_norm_reference(grads):
    """grads (P,) -> the L2 norm as a Python float."""
    return float((grads * grads).sum() ** 0.5)


def adamw_step_reference(params, grads, m, v, step, lr, beta1, beta2, eps, weight_decay, num_decayed):
    """Update params, m and v (all (P,)) in place for step number ``step`` (1-based)."""
    from scratchlm.backend import get_array_module

    xp = get_array_module(params)
    m *= beta1
    m += (1.0 - beta1) * grads
    v *= beta2
    v += (1.0 - beta2) * grads * grads
    if weight_decay and num_decayed:
        params[:num_decayed] *= 1.0 - lr * weight_decay
    bias1 = 1.0 - beta1**step
    bias2 = 1.0 - beta2**step
    params -= (lr / bias1) * m / (xp.sqrt(v / bias2) + eps)


# ---- version 1: Numba, one fused pass over the four buffers, spread over the cores ----
# Better than the reference: the reference makes about ten passes over (P,) arrays (each
# NumPy operation reads and writes whole buffers, plus temporaries); this reads params,
# grads, m, v once and writes params, m, v once, on both cores. The hyperparameters are
# cast to the buffer's dtype first (a Python float is a float64 and would turn a float32
# loop into float64 arithmetic), and the operations are the reference's in its order, so
# the two agree to rounding (no ``fastmath``: in float32 they agree to the bit, measured).
# ``error_model="numpy"``: Numba's default checks each division for a zero divisor (to
# raise as Python would), which stops the loop from vectorising.
# Both loops are memory-bound and share the work equally among the cores, so a core that
# another process holds slows the whole step.
NO_DIVISION_CHECK = "numpy"


@lazy_njit(parallel=True, error_model=NO_DIVISION_CHECK)
def _adamw_kernel(params, grads, m, v, beta1, one_minus_beta1, beta2, one_minus_beta2,
                  decay, step_size, bias2, eps, num_decayed):
    one = params.dtype.type(1.0)
    for i in prange(params.shape[0]):
        g = grads[i]
        m_i = m[i] * beta1 + one_minus_beta1 * g
        v_i = v[i] * beta2 + one_minus_beta2 * g * g
        m[i] = m_i
        v[i] = v_i
        p = params[i] * (decay if i < num_decayed else one)     # decoupled weight decay
        params[i] = p - step_size * m_i / (np.sqrt(v_i / bias2) + eps)


@lazy_njit(parallel=True, fastmath=REORDER_SUMS)
def _sum_of_squares_kernel(grads):
    total = 0.0                                          # float64: 4.8M float32 squares
    for i in prange(grads.shape[0]):                     # a parallel reduction: each core
        g = np.float64(grads[i])                         # sums its share, then the shares
        total += g * g                                   # are added
    return total


def grad_norm_v1(grads):
    return float(np.sqrt(_sum_of_squares_kernel(grads)))


def step_constants(dtype, step, lr, beta1, beta2, eps, weight_decay, num_decayed):
    """The fused kernels' scalar arguments, cast to the buffers' dtype, in their order."""
    real = np.dtype(dtype).type
    decay = 1.0 - lr * weight_decay if weight_decay and num_decayed else 1.0
    return (real(beta1), real(1.0 - beta1), real(beta2), real(1.0 - beta2), real(decay),
            real(lr / (1.0 - beta1**step)), real(1.0 - beta2**step), real(eps))


def adamw_step_v1(params, grads, m, v, step, lr, beta1, beta2, eps, weight_decay, num_decayed):
    constants = step_constants(params.dtype, step, lr, beta1, beta2, eps, weight_decay, num_decayed)
    _adamw_kernel(params, grads, m, v, *constants, int(num_decayed))


# ---- CUDA version (CuPy arrays): one fused kernel; a norm and clip that never wait -------
# The step is version 1's loop with one thread per element (a grid-stride loop). The norm is
# where a GPU step could stall: reading it on the host would make the CPU wait for every
# kernel queued so far. So the sum of squares is done in two fixed-order stages on the GPU
# (each block sums its share in double, CuPy adds the block sums), and clipping multiplies
# the gradients by min(1, max_norm / (norm + 1e-6)) computed there too: the norm is handed
# back as a 0-d GPU array, read only if someone asks.
ADAMW_CUDA_SOURCE = r"""
extern "C" __global__ void adamw_step(real* params, const real* grads, real* m, real* v, long long P,
                                      real beta1, real one_minus_beta1, real beta2, real one_minus_beta2,
                                      real decay, real step_size, real bias2, real eps, long long num_decayed) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < P; i += (long long)gridDim.x * blockDim.x) {
        const real g = grads[i];
        const real m_i = m[i] * beta1 + one_minus_beta1 * g;
        const real v_i = v[i] * beta2 + one_minus_beta2 * g * g;
        m[i] = m_i;
        v[i] = v_i;
        const real p = params[i] * (i < num_decayed ? decay : real(1));    // decoupled weight decay
        params[i] = p - step_size * m_i / (sqrt(v_i / bias2) + eps);
    }
}

extern "C" __global__ void sum_of_squares(const real* grads, long long P, double* block_totals) {
    double local = 0;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < P; i += (long long)gridDim.x * blockDim.x) {
        const double g = grads[i];
        local += g * g;
    }
    const double total = block_sum(local);
    if (threadIdx.x == 0) block_totals[blockIdx.x] = total;
}
"""
NORM_BLOCKS = 1024


def grad_norm_on_gpu(grads):
    """The global L2 norm as a 0-d float64 CuPy array (queued: nothing waits for it)."""
    cp = cupy_module()
    blocks = stride_blocks(grads.size, NORM_BLOCKS)
    block_totals = cp.empty(blocks, dtype=cp.float64)                     # (blocks,)
    launch(ADAMW_CUDA_SOURCE, "sum_of_squares", grads.dtype, blocks, STRIDE_THREADS,
           (grads, np.int64(grads.size), block_totals))
    return cp.sqrt(block_totals.sum())


def grad_norm_cuda(grads):
    return float(grad_norm_on_gpu(grads))        # the reference's answer: a host float (this waits)


def clip_grad_norm_cuda(grads, max_norm):
    cp = cupy_module()
    norm = grad_norm_on_gpu(grads)
    if max_norm and max_norm > 0:
        grads *= cp.minimum(max_norm / (norm + 1e-6), 1.0).astype(grads.dtype)
    return norm


def adamw_step_cuda(params, grads, m, v, step, lr, beta1, beta2, eps, weight_decay, num_decayed):
    constants = step_constants(params.dtype, step, lr, beta1, beta2, eps, weight_decay, num_decayed)
    launch(ADAMW_CUDA_SOURCE, "adamw_step", params.dtype, stride_blocks(params.size), STRIDE_THREADS,
           (params, grads, m, v, np.int64(params.size), *constants, np.int64(num_decayed)))


# ---- dispatch ----------------------------------------------------------------------
def _flat_buffers(*arrays):
    """The fused versions take C-contiguous 1-D float32/float64 buffers of one dtype (in place)."""
    dtype = arrays[0].dtype
    return (dtype in (np.float32, np.float64) and arrays[0].size > 0
            and all(b.dtype == dtype and b.ndim == 1 and b.flags.c_contiguous for b in arrays))


def grad_norm(grads):
    if use_cuda(grads) and _flat_buffers(grads):
        return grad_norm_cuda(grads)
    if use_numba(grads) and _flat_buffers(grads):
        return grad_norm_v1(grads)
    return grad_norm_reference(grads)


def clip_grad_norm(grads, max_norm):
    """Scale grads in place so that their global L2 norm is at most ``max_norm`` (when it is
    above 0); return the norm before. A float, except from the CUDA version: a 0-d GPU array
    (``float(norm)`` reads it), so that a training step never waits for the GPU."""
    if use_cuda(grads) and _flat_buffers(grads):
        return clip_grad_norm_cuda(grads, max_norm)
    norm = grad_norm(grads)
    if max_norm and max_norm > 0:
        coef = max_norm / (norm + 1e-6)
        if coef < 1.0:
            buffers.scale(grads, coef)                   # grads *= coef, on both cores
    return norm


def adamw_step(params, grads, m, v, step, lr, beta1, beta2, eps, weight_decay, num_decayed):
    args = (params, grads, m, v, step, lr, beta1, beta2, eps, weight_decay, num_decayed)
    if use_cuda(params, grads, m, v) and _flat_buffers(params, grads, m, v):
        adamw_step_cuda(*args)
    elif use_numba(params, grads, m, v) and _flat_buffers(params, grads, m, v):
        adamw_step_v1(*args)
    else:
        adamw_step_reference(*args)


# ---- the declaration: what __main__, the tests and the benchmarks read ------------------
HYPER = dict(lr=3e-4, beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.1)


def example_step(dtype, rng, shape):
    """The flat buffers of a model at ``shape`` a few steps in (m, v already non-zero); one
    step reads params, grads, m, v and writes params, m, v."""
    P = shape.parameters
    params, grads, m = (rng.standard_normal(P).astype(dtype) for _ in range(3))
    v = rng.random(P).astype(dtype)                         # second moments are >= 0
    num_decayed = shape.layers * 12 * shape.d_model**2      # the blocks' matrices come first
    return (params, grads, m, v, 4, *HYPER.values(), num_decayed), 7 * params.nbytes


def example_norm(dtype, rng, shape):
    grads = rng.standard_normal(shape.parameters).astype(dtype)
    return (grads,), grads.nbytes


def _moved_buffers(args, returned):
    params, _, m, v = args[:4]
    return params, m, v


KERNELS = (
    Kernel("adamw_step", adamw_step, {"reference": adamw_step_reference, "numba v1": adamw_step_v1,
                                      "cuda": adamw_step_cuda}, example_step, results=_moved_buffers),
    Kernel("grad_norm", grad_norm, {"reference": grad_norm_reference, "numba v1": grad_norm_v1,
                                    "cuda": grad_norm_cuda}, example_norm),
)


if __name__ == "__main__":
    run_lesson(KERNELS)
