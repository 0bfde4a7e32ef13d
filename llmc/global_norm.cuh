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
//     threads (a function of n only); thread j of block b visits the groups of four elements 4 (b*256 + j +
//     k*G*256) + e (e = 0..3, one 128-bit load when grads is 16-byte aligned) in k order, element e into double
//     accumulator e; the four are summed as (a0 + a1) + (a2 + a3) (the same bits at any alignment); the block sums its
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

__global__ void global_norm_squared_kernel(double* partial, const float* grads, size_t n, float scale, bool vec) {
    __shared__ double smem[32];
    // one 128-bit load of four gradients per iteration, each into its own accumulator
    double a[4] = {0.0, 0.0, 0.0, 0.0};
    for_each_group<4>(n, [&](size_t i, int count) {
        float g[4];
        load_f32<4>(g, grads + i, count, vec);
        for (int k = 0; k < 4; k++) {
            double x = (double)g[k] * scale;
            a[k] += x * x;
        }
    });
    double acc = block_reduce_sum_d((a[0] + a[1]) + (a[2] + a[3]), smem);
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
    global_norm_squared_kernel<<<blocks, GLOBAL_NORM_BLOCK, 0, stream>>>(scratch, grads, n, scale, is_aligned16(grads));
    cudaKernelCheck();
    global_norm_finish_kernel<<<1, GLOBAL_NORM_MAX_BLOCKS, 0, stream>>>(out, scratch, blocks);
    cudaKernelCheck();
}

inline bool is_finite_norm(float x) { return isfinite(x); }
