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
//       sum of exponentials) of attention's softmax and the fused classifier.
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
// ELEMENTWISE_MAX_BLOCKS blocks, a grid-stride loop. The grid depends on n only. Elementwise results do
// not depend on the grid anyway; the cap keeps the number of CUDA threads (each one a fiber under the
// SIMT CPU runtime) bounded for large tensors.
#pragma once
#include "cuda_common.h"

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
// elementwise kernels

__global__ void cast_to_floatX_kernel(floatX* out, const float* in, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        out[i] = to_fX(in[i]);
    }
}

__global__ void cast_to_float_kernel(float* out, const floatX* in, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        out[i] = to_f32(in[i]);
    }
}

template <class T>
__global__ void fill_kernel(T* p, T value, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        p[i] = value;
    }
}

__global__ void add_inplace_kernel(float* a, const float* b, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        a[i] = a[i] + b[i];
    }
}

__global__ void scale_inplace_kernel(float* a, float s, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        a[i] = a[i] * s;
    }
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
    cast_to_floatX_kernel<<<elementwise_blocks(n), ELEMENTWISE_BLOCK, 0, stream>>>(out, in, n);
    cudaKernelCheck();
}

inline void cast_to_float(float* out, const floatX* in, size_t n, cudaStream_t stream) {
    if (n == 0) { return; }
    cast_to_float_kernel<<<elementwise_blocks(n), ELEMENTWISE_BLOCK, 0, stream>>>(out, in, n);
    cudaKernelCheck();
}

// value is rounded once to T (to nearest even)
inline void fill(float* p, float value, size_t n, cudaStream_t stream) {
    if (n == 0) { return; }
    fill_kernel<float><<<elementwise_blocks(n), ELEMENTWISE_BLOCK, 0, stream>>>(p, value, n);
    cudaKernelCheck();
}
#if !defined(ENABLE_FP32)
inline void fill(floatX* p, float value, size_t n, cudaStream_t stream) {
    if (n == 0) { return; }
    fill_kernel<floatX><<<elementwise_blocks(n), ELEMENTWISE_BLOCK, 0, stream>>>(p, to_fX(value), n);
    cudaKernelCheck();
}
#endif

inline void add_inplace(float* a, const float* b, size_t n, cudaStream_t stream) {
    if (n == 0) { return; }
    add_inplace_kernel<<<elementwise_blocks(n), ELEMENTWISE_BLOCK, 0, stream>>>(a, b, n);
    cudaKernelCheck();
}

inline void scale_inplace(float* a, float s, size_t n, cudaStream_t stream) {
    if (n == 0) { return; }
    scale_inplace_kernel<<<elementwise_blocks(n), ELEMENTWISE_BLOCK, 0, stream>>>(a, s, n);
    cudaKernelCheck();
}
