"""What the CUDA versions share: compiling CUDA C lazily through CuPy, and block-wide sums.

Every kernel file keeps its CUDA C source in a string named ``*_CUDA_SOURCE``: CUDA C++ over
a type ``real`` (float or double). Nothing here imports cupy when it is imported; the first
call of a CUDA version compiles its source for the array's dtype (``cupy.RawModule``, which
runs NVRTC and keeps the binary in CuPy's on-disk cache) and later calls reuse it.

What is compiled is ``full_source(source, dtype)``: ``typedef float real;`` (or double), then
COMMON_CUDA_SOURCE below, then the kernel file's text. tests/kernels/test_cuda.py compiles exactly
that with nvcc, for both dtypes, so a typo shows up even on a machine without a GPU.

The one idea every row kernel uses: a thread block owns a row; thread t adds up elements
t, t + blockDim.x, ... of it; the 32 threads of each warp combine their sums through register
shuffles; the warps' results meet in shared memory; every thread gets the row's total.
"""

from __future__ import annotations

import numpy as np

COMMON_CUDA_SOURCE = r"""
// Reductions over a thread block of whole warps (blockDim.x a multiple of 32, at most 1024).
// Every thread of the block must call them (they wait at __syncthreads), and every thread
// gets the result.

// The sum of v over the 32 lanes of a warp, in every lane: at each of the 5 steps a lane adds
// the value held by the lane whose index differs from its own in one bit (a butterfly).
template <typename T> __device__ T warp_sum(T v) {
    for (int bit = 16; bit > 0; bit /= 2) v += __shfl_xor_sync(0xffffffffu, v, bit);
    return v;
}

template <typename T> __device__ T warp_max(T v) {
    for (int bit = 16; bit > 0; bit /= 2) {
        const T other = __shfl_xor_sync(0xffffffffu, v, bit);
        v = other > v ? other : v;
    }
    return v;
}

// Lane 0 of each warp leaves its warp's result in shared memory; every thread then combines
// those (at most 32) results in the same order, so all threads agree to the bit.
template <typename T> __device__ T block_sum(T v) {
    __shared__ T warp_results[32];
    v = warp_sum(v);
    __syncthreads();                          // an earlier call has finished reading warp_results
    if (threadIdx.x % 32 == 0) warp_results[threadIdx.x / 32] = v;
    __syncthreads();
    T total = warp_results[0];
    for (int w = 1; w < (int)blockDim.x / 32; ++w) total += warp_results[w];
    return total;
}

template <typename T> __device__ T block_max(T v) {
    __shared__ T warp_results[32];
    v = warp_max(v);
    __syncthreads();
    if (threadIdx.x % 32 == 0) warp_results[threadIdx.x / 32] = v;
    __syncthreads();
    T largest = warp_results[0];
    for (int w = 1; w < (int)blockDim.x / 32; ++w) largest = warp_results[w] > largest ? warp_results[w] : largest;
    return largest;
}
"""

C_TYPES = {"float32": "float", "float64": "double"}
WARP = 32
MAX_THREADS = 1024          # per block, on every CUDA GPU
STRIDE_THREADS = 256        # per block, for the element-wise (grid-stride) kernels
MAX_BLOCKS = 65535          # for grid-stride loops: beyond this, threads take more elements each


def cupy_module():
    """The cupy module, imported on first use (importing scratchlm never imports it)."""
    import cupy

    return cupy


def full_source(source: str, dtype) -> str:
    """The text compiled for ``dtype``: ``real`` defined, the shared reductions, then ``source``."""
    return f"typedef {C_TYPES[np.dtype(dtype).name]} real;\n{COMMON_CUDA_SOURCE}\n{source}"


_kernels: dict = {}


def kernel(source: str, name: str, dtype):
    """The kernel ``name`` of ``source`` compiled for ``dtype``: compiled on first use, then cached."""
    key = (source, name, np.dtype(dtype))             # (a dtype's .name is slow to compute)
    found = _kernels.get(key)
    if found is None:
        module = cupy_module().RawModule(code=full_source(source, dtype))
        found = _kernels[key] = module.get_function(name)
    return found


def launch(source: str, name: str, dtype, blocks: int, threads: int, args: tuple) -> None:
    """Run kernel ``name`` on ``blocks`` blocks of ``threads`` threads (queued: it does not wait).

    Arrays go in as pointers, so they must be C-contiguous CuPy arrays; scalars must be NumPy
    scalars of the C parameter's type (np.int32 for int, np.int64 for long long, the dtype's
    type for real): CuPy passes their bytes as they are.
    """
    kernel(source, name, dtype)((int(blocks),), (int(threads),), args)


def row_threads(width: int) -> int:
    """Threads for a block that owns a row of ``width`` elements: one per element, in whole
    warps, at most 1024 (a wider row gives each thread several elements)."""
    return min(MAX_THREADS, max(WARP, -(-width // WARP) * WARP))


def stride_blocks(n: int, cap: int = MAX_BLOCKS) -> int:
    """Blocks of STRIDE_THREADS for a grid-stride loop over ``n`` elements (at least 1)."""
    return max(1, min(-(-n // STRIDE_THREADS), cap))


PART_BLOCKS = 512        # row blocks of the norms' backward: enough to fill a large GPU


def cuda_rows_ok(x) -> bool:
    """The CUDA norms take float32/float64 (N, C) arrays with at least one element."""
    return x.dtype in (np.float32, np.float64) and x.ndim == 2 and x.size > 0
