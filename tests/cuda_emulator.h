// Runs the CUDA C of kernels/ on the CPU, for tests on machines without a GPU (tests/cuda_emulator.py).
// One OS thread per CUDA thread of a block; the same threads run every block in turn, meeting
// at a barrier between blocks. __syncthreads is a std::barrier; a warp shuffle goes through a
// slot array between two barriers (so every thread of the block must take part, as in our
// kernels); atomics take a lock. It checks what the kernels compute, not how fast, and it
// cannot see races between blocks (they never run at the same time here).
#include <barrier>
#include <cmath>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>
using std::exp; using std::log; using std::sqrt; using std::tanh;
struct Dim { unsigned x; };
thread_local Dim threadIdx, blockIdx;
Dim blockDim, gridDim;
std::barrier<>* block_barrier;
#define __global__
#define __device__
#define __shared__ static
inline void __syncthreads() { block_barrier->arrive_and_wait(); }
template <typename T> T __shfl_xor_sync(unsigned mask, T v, int bit) {
    static T slots[1024];
    if (mask != 0xffffffffu) throw std::logic_error("only full-warp shuffles are emulated");
    slots[threadIdx.x] = v;
    __syncthreads();
    const T other = slots[threadIdx.x ^ bit];
    __syncthreads();
    return other;
}
std::mutex atomic_lock;
template <typename T> T atomicAdd(T* address, T value) {
    std::lock_guard<std::mutex> hold(atomic_lock);
    const T old = *address;
    *address = old + value;
    return old;
}
template <typename F> void run_grid(unsigned grid, unsigned block, F body) {
    gridDim.x = grid;
    blockDim.x = block;
    std::barrier<> barrier(block);
    block_barrier = &barrier;
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < block; ++t)
        threads.emplace_back([&, t] {
            threadIdx.x = t;
            for (unsigned b = 0; b < grid; ++b) { blockIdx.x = b; body(); barrier.arrive_and_wait(); }
        });
    for (auto& thread : threads) thread.join();
}
