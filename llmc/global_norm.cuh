// global_norm.cuh -- the squared L2 norm of the fp32 gradients, deterministic, with the loss scaler's
// overflow check folded in.
//
// void global_norm_squared(float* out, const float* grads, size_t n, float scale, double* scratch,
//                          cudaStream_t stream);
//     out[0] = sum_i (grads[i] * scale)^2        (overwritten; one float in device memory)
//     scale: 1, or 1/loss_scale to get the norm of the unscaled gradients (FP16 loss scaling). The product
//     and the sum are in double, so no finite input overflows and the result does not depend on how large
//     the loss scale is.
//     Overflow check: any inf or NaN gradient makes out[0] inf or NaN (squares are >= 0, so inf never meets
//     -inf), so one finiteness test on the norm (is_finite_norm) is the loss scaler's found_inf.
//     scratch: GLOBAL_NORM_SCRATCH_DOUBLES = 256 doubles of device memory, clobbered.
//     Deterministic and independent of the device: a grid of G = min(256, ceil(n/4096)) blocks of 256
//     threads (a function of n only); thread j of block b visits the elements b*256 + j + k*G*256 in k
//     order, into four double accumulators (k mod 4) summed as (a0 + a1) + (a2 + a3); the block sums its
//     threads by a fixed tree into scratch[b], and one more block sums scratch[0..G) by the same tree. To combine several tensors in a fixed order (e.g. the CPU trainer's
//     per-slot sums), call it once per tensor into consecutive floats and sum them on the host or with
//     global_norm_squared again over that array (scale 1).
//
// bool is_finite_norm(float norm_or_squared_norm);   host: isfinite; false means "skip the step, lower the
//     loss scale".
#pragma once
#include "cuda_common.h"
#include "cuda_utils.cuh"

#define GLOBAL_NORM_BLOCK 256
#define GLOBAL_NORM_MAX_BLOCKS 256
#define GLOBAL_NORM_SCRATCH_DOUBLES GLOBAL_NORM_MAX_BLOCKS
#define GLOBAL_NORM_ELEMS_PER_BLOCK 4096

__global__ void global_norm_squared_kernel(double* partial, const float* grads, size_t n, float scale) {
    __shared__ double smem[32];
    size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    // four independent loads and accumulators per iteration keep more memory requests in flight
    double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0;
    for (; i + 3 * stride < n; i += 4 * stride) {
        double g0 = (double)grads[i] * scale, g1 = (double)grads[i + stride] * scale;
        double g2 = (double)grads[i + 2 * stride] * scale, g3 = (double)grads[i + 3 * stride] * scale;
        a0 += g0 * g0;
        a1 += g1 * g1;
        a2 += g2 * g2;
        a3 += g3 * g3;
    }
    for (; i < n; i += stride) {
        double g = (double)grads[i] * scale;
        a0 += g * g;
    }
    double acc = block_reduce_sum_d((a0 + a1) + (a2 + a3), smem);
    if (threadIdx.x == 0) { partial[blockIdx.x] = acc; }
}

__global__ void global_norm_finish_kernel(float* out, const double* partial, int num_partials) {
    __shared__ double smem[32];
    double acc = (int)threadIdx.x < num_partials ? partial[threadIdx.x] : 0.0;
    acc = block_reduce_sum_d(acc, smem);
    if (threadIdx.x == 0) { out[0] = (float)acc; }
}

inline int global_norm_blocks(size_t n) {
    size_t b = CEIL_DIV(n, (size_t)GLOBAL_NORM_ELEMS_PER_BLOCK);
    if (b > GLOBAL_NORM_MAX_BLOCKS) { b = GLOBAL_NORM_MAX_BLOCKS; }
    return b < 1 ? 1 : (int)b;
}

inline void global_norm_squared(float* out, const float* grads, size_t n, float scale, double* scratch,
                                cudaStream_t stream) {
    int blocks = global_norm_blocks(n);
    global_norm_squared_kernel<<<blocks, GLOBAL_NORM_BLOCK, 0, stream>>>(scratch, grads, n, scale);
    cudaKernelCheck();
    global_norm_finish_kernel<<<1, GLOBAL_NORM_MAX_BLOCKS, 0, stream>>>(out, scratch, blocks);
    cudaKernelCheck();
}

inline bool is_finite_norm(float x) { return isfinite(x); }
