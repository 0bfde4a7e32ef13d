// cuda_utils.cuh -- reductions used by the kernels, and small utility kernels the trainer needs.
//
// Device helpers (used inside kernels):
//   float warp_reduce_sum(float v) / warp_reduce_max(float v) / double warp_reduce_sum_d(double v)
//       xor-butterfly over the 32 lanes of a full warp; EVERY lane returns the same bits (each step adds
//       a + b on one lane and b + a on its partner, which are equal), so the result is deterministic.
//   float block_reduce_sum(float v, float* smem32) / double block_reduce_sum_d(double v, double* smem32)
//       sum over the whole block (blockDim.x a multiple of 32, at most 1024); warp sums, then warp 0 adds
//       the per-warp sums in lane order. Every thread returns the total. smem32: __shared__ array of 32.
//       Contains __syncthreads: every thread of the block must call it.
//   softmax_state_add / softmax_state_merge / warp_softmax_state_merge: the online softmax (running max and
//       sum of exponentials) of the fused classifier.
//
// Host functions (enqueue on `stream`, n elements, no alignment requirements, any n >= 0):
//   cast_to_floatX(floatX* out, const float* in, size_t n, stream)   round to nearest even (copy in FP32)
//   cast_to_float(float* out, const floatX* in, size_t n, stream)    exact
//   fill(float* p, float value, size_t n, stream), fill(floatX* p, ...)   value rounded once to the type
//   add_inplace(float* a, const float* b, size_t n, stream)          a[i] += b[i] (a == b allowed: doubles)
//       -- the tied wte gradient: grad_wte_embed += grad_wte_head, in that order, as the CPU trainer does
//   scale_inplace(float* a, float s, size_t n, stream)               a[i] *= s
//
// Launch shape of the elementwise kernels: ELEMENTWISE_BLOCK threads per block, at most
// ELEMENTWISE_MAX_BLOCKS blocks, a grid-stride loop over groups of one 128-bit vector per array (for_each_group;
// 128-bit accesses when every pointer is 16-byte aligned, scalar ones otherwise and for a tail of n that is
// not a multiple of the vector width). The grid depends on n only. Elementwise results do
// not depend on the grid anyway; the cap keeps the number of CUDA threads (each one a fiber under the
// SIMT CPU runtime) bounded for large tensors.
#pragma once
#include "cuda_common.h"
#include "packed128.cuh"

#define ELEMENTWISE_BLOCK 256
#define ELEMENTWISE_MAX_BLOCKS 1024

inline int elementwise_blocks(size_t n) {
    size_t b = CEIL_DIV(n, (size_t)ELEMENTWISE_BLOCK);
    if (b > ELEMENTWISE_MAX_BLOCKS) { b = ELEMENTWISE_MAX_BLOCKS; }
    return b == 0 ? 1 : (int)b;
}

// ----------------------------------------------------------------------------
// reductions

__device__ inline float warp_reduce_sum(float v) {
    for (int offset = 16; offset > 0; offset /= 2) { v += __shfl_xor_sync(0xffffffffu, v, offset); }
    return v;
}

__device__ inline float warp_reduce_max(float v) {
    for (int offset = 16; offset > 0; offset /= 2) { v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset)); }
    return v;
}

__device__ inline double warp_reduce_sum_d(double v) {
    for (int offset = 16; offset > 0; offset /= 2) { v += __shfl_xor_sync(0xffffffffu, v, offset); }
    return v;
}

__device__ inline float block_reduce_sum(float v, float* smem32) {
    int lane = threadIdx.x % WARP_SIZE, warp = threadIdx.x / WARP_SIZE;
    int num_warps = blockDim.x / WARP_SIZE;
    v = warp_reduce_sum(v);
    __syncthreads();  // smem32 may still be read by a previous call
    if (lane == 0) { smem32[warp] = v; }
    __syncthreads();
    v = lane < num_warps ? smem32[lane] : 0.0f;
    return warp_reduce_sum(v);  // every warp computes the same total, in the same order
}

__device__ inline double block_reduce_sum_d(double v, double* smem32) {
    int lane = threadIdx.x % WARP_SIZE, warp = threadIdx.x / WARP_SIZE;
    int num_warps = blockDim.x / WARP_SIZE;
    v = warp_reduce_sum_d(v);
    __syncthreads();
    if (lane == 0) { smem32[warp] = v; }
    __syncthreads();
    v = lane < num_warps ? smem32[lane] : 0.0;
    return warp_reduce_sum_d(v);
}

// ----------------------------------------------------------------------------
// elementwise kernels: each thread takes groups of N consecutive elements (N = one 128-bit vector of the
// narrowest type involved), whole vectors when every pointer is 16-byte aligned, else element by element

#define X128 Packed128<floatX>::size  // floatX elements per 128-bit vector

// The grid-stride loop over groups of N elements: f(i, count) for the group starting at element i, count = N
// except for the last group of an n that is not a multiple of N.
template <int N, class F>
__device__ inline void for_each_group(size_t n, F f) {
    size_t stride = (size_t)gridDim.x * blockDim.x * N;
    for (size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * N; i < n; i += stride) {
        f(i, n - i < (size_t)N ? (int)(n - i) : N);
    }
}

inline int elementwise_blocks_groups(size_t n, int N) { return elementwise_blocks(CEIL_DIV(n, (size_t)N)); }

// float <-> floatX, through float (exact one way, one rounding the other)
template <class Tout, class Tin>
__global__ void cast_kernel(Tout* out, const Tin* in, size_t n, bool vec) {
    for_each_group<X128>(n, [&](size_t i, int count) {
        float x[X128];
        load_f32<X128>(x, in + i, count, vec);
        store_f32<X128>(out + i, x, count, vec);
    });
}

template <class T>
__global__ void fill_kernel(T* p, float value, size_t n, bool vec) {
    constexpr int N = Packed128<T>::size;
    float x[N];
    for (int k = 0; k < N; k++) { x[k] = value; }
    for_each_group<N>(n, [&](size_t i, int count) { store_f32<N>(p + i, x, count, vec); });
}

// a == b is allowed (each element is read before it is written, by the same thread)
__global__ void add_inplace_kernel(float* a, const float* b, size_t n, bool vec) {
    for_each_group<4>(n, [&](size_t i, int count) {
        float x[4], y[4];
        load_f32<4>(x, a + i, count, vec);
        load_f32<4>(y, b + i, count, vec);
        for (int k = 0; k < 4; k++) { x[k] = x[k] + y[k]; }
        store_f32<4>(a + i, x, count, vec);
    });
}

__global__ void scale_inplace_kernel(float* a, float s, size_t n, bool vec) {
    for_each_group<4>(n, [&](size_t i, int count) {
        float x[4];
        load_f32<4>(x, a + i, count, vec);
        for (int k = 0; k < 4; k++) { x[k] = x[k] * s; }
        store_f32<4>(a + i, x, count, vec);
    });
}

// ----------------------------------------------------------------------------
// host functions

// Online softmax: a state (m, s) holds the running max m of the values seen and s = sum of exp(x - m), so one
// pass over a row gives both. Adding a value, merging two states (symmetric), and merging across a warp by a
// fixed butterfly, so every lane ends with the same (m, s).
__device__ inline void softmax_state_add(float* m, float* s, float v) {
    if (v > *m) {
        *s = *s * expf(*m - v) + 1.0f;
        *m = v;
    } else {
        *s += expf(v - *m);
    }
}

__device__ inline void softmax_state_merge(float* m, float* s, float mo, float so) {
    float mx = fmaxf(*m, mo);
    float fa = *m == -INFINITY ? 0.0f : *s * expf(*m - mx);
    float fb = mo == -INFINITY ? 0.0f : so * expf(mo - mx);
    *s = fa + fb;
    *m = mx;
}

__device__ inline void warp_softmax_state_merge(float* m, float* s) {
    for (int offset = 16; offset > 0; offset /= 2) {
        float mo = __shfl_xor_sync(0xffffffffu, *m, offset);
        float so = __shfl_xor_sync(0xffffffffu, *s, offset);
        softmax_state_merge(m, s, mo, so);
    }
}

inline void cast_to_floatX(floatX* out, const float* in, size_t n, cudaStream_t stream) {
    if (n == 0) { return; }
    cast_kernel<floatX, float><<<elementwise_blocks_groups(n, X128), ELEMENTWISE_BLOCK, 0, stream>>>(
        out, in, n, is_aligned16(out) && is_aligned16(in));
    cudaKernelCheck();
}

inline void cast_to_float(float* out, const floatX* in, size_t n, cudaStream_t stream) {
    if (n == 0) { return; }
    cast_kernel<float, floatX><<<elementwise_blocks_groups(n, X128), ELEMENTWISE_BLOCK, 0, stream>>>(
        out, in, n, is_aligned16(out) && is_aligned16(in));
    cudaKernelCheck();
}

// value is rounded once to T (to nearest even)
inline void fill(float* p, float value, size_t n, cudaStream_t stream) {
    if (n == 0) { return; }
    fill_kernel<float><<<elementwise_blocks_groups(n, 4), ELEMENTWISE_BLOCK, 0, stream>>>(p, value, n, is_aligned16(p));
    cudaKernelCheck();
}
#if !defined(ENABLE_FP32)
inline void fill(floatX* p, float value, size_t n, cudaStream_t stream) {
    if (n == 0) { return; }
    fill_kernel<floatX><<<elementwise_blocks_groups(n, X128), ELEMENTWISE_BLOCK, 0, stream>>>(p, value, n,
                                                                                           is_aligned16(p));
    cudaKernelCheck();
}
#endif

inline void add_inplace(float* a, const float* b, size_t n, cudaStream_t stream) {
    if (n == 0) { return; }
    add_inplace_kernel<<<elementwise_blocks_groups(n, 4), ELEMENTWISE_BLOCK, 0, stream>>>(
        a, b, n, is_aligned16(a) && is_aligned16(b));
    cudaKernelCheck();
}

inline void scale_inplace(float* a, float s, size_t n, cudaStream_t stream) {
    if (n == 0) { return; }
    scale_inplace_kernel<<<elementwise_blocks_groups(n, 4), ELEMENTWISE_BLOCK, 0, stream>>>(a, s, n, is_aligned16(a));
    cudaKernelCheck();
}
