// layernorm.cuh -- LayerNorm forward/backward, the residual add, and residual add fused with LayerNorm.
//
// void layernorm_forward(floatX* out, float* mean, float* rstd, const floatX* inp, const floatX* weight,
//                        const floatX* bias, int N, int C, cudaStream_t stream);
//     inp, out (N,C); weight, bias (C); mean, rstd (N) fp32 (either may be NULL: not stored).
//     Per row: m = sum(x)/C, v = sum((x-m)^2)/C (two passes), s = 1/sqrtf(v + 1e-5f),
//     out = s*(x-m)*weight + bias. One warp per row, 8 rows per 256-thread block. out may not alias inp.
//
// void residual_forward(floatX* out, const floatX* a, const floatX* b, size_t n, cudaStream_t stream);
//     out = a + b (fp32 add, rounded once). out may alias a or b.
//
// void fused_residual_layernorm_forward(floatX* residual, floatX* out, float* mean, float* rstd,
//                                       const floatX* a, const floatX* b, const floatX* weight,
//                                       const floatX* bias, int N, int C, cudaStream_t stream);
//     residual = a + b (rounded to floatX), then layernorm_forward of that rounded residual into out/mean/rstd:
//     bitwise the same as residual_forward followed by layernorm_forward. residual may alias a or b;
//     out must not alias a, b or residual.
//
// void layernorm_backward(floatX* dinp, float* dweight, float* dbias, float* scratch, const floatX* dout,
//                         const floatX* inp, const floatX* weight, const float* mean, const float* rstd,
//                         int N, int C, cudaStream_t stream);
//     dinp (N,C) += the input gradient (read, added in fp32, rounded once: the residual stream's gradient);
//     dweight (C) += sum_n (x-m)*s*dout, dbias (C) += sum_n dout (fp32 parameter gradients).
//     scratch: fp32, at least LAYERNORM_BACKWARD_SCRATCH_FLOATS(C) = 64*C floats (device memory, contents
//     need not be initialised, clobbered). No aliasing among dinp, dout, inp and scratch.
//     Deterministic without atomics: the N rows are cut into S = min(32, ceil(N/256)) fixed slices; block
//     (column tile of 32, slice) sums its slice's rows in a fixed pattern (8 row groups, each in row order,
//     then the 8 group sums in order) into scratch[slice], and a second kernel adds the S partial sums in
//     slice order and then into dweight/dbias. dinp: one warp per row, as in the forward.
#pragma once
#include "cuda_common.h"
#include "cuda_utils.cuh"

#define LAYERNORM_EPS 1e-5f
#define LAYERNORM_BLOCK 256
#define LN_BWD_MAX_SLICES 32
#define LN_BWD_ROWS_PER_SLICE 256
#define LN_BWD_ROW_GROUPS 8
#define LAYERNORM_BACKWARD_SCRATCH_FLOATS(C) ((size_t)2 * LN_BWD_MAX_SLICES * (C))

inline int layernorm_backward_slices(int N) {
    int s = CEIL_DIV(N, LN_BWD_ROWS_PER_SLICE);
    if (s > LN_BWD_MAX_SLICES) { s = LN_BWD_MAX_SLICES; }
    return s < 1 ? 1 : s;
}

// ----------------------------------------------------------------------------
// kernels

// One warp normalises one row: x = x_in (plain kernel) or round_to_floatX(a + b) (fused kernel, x_in == NULL).
// Shared by both kernels so that they do the same arithmetic.
__device__ inline void layernorm_row(floatX* o, float* mean, float* rstd, int row, const floatX* x_in,
                                     const floatX* a, const floatX* b, const floatX* weight, const floatX* bias,
                                     int C, int lane) {
    // x = x_in[c] (plain) or round(a[c] + b[c]) (fused); recomputed in each pass instead of cached
#define LN_X(c) (x_in ? to_f32(x_in[c]) : to_f32(to_fX(to_f32(a[c]) + to_f32(b[c]))))
    float sum = 0.0f;
    for (int c = lane; c < C; c += WARP_SIZE) { sum += LN_X(c); }
    float m = warp_reduce_sum(sum) / C;
    float var = 0.0f;
    for (int c = lane; c < C; c += WARP_SIZE) {
        float d = LN_X(c) - m;
        var += d * d;
    }
    var = warp_reduce_sum(var) / C;
    float s = 1.0f / sqrtf(var + LAYERNORM_EPS);
    for (int c = lane; c < C; c += WARP_SIZE) {
        float n = s * (LN_X(c) - m);
        o[c] = to_fX(n * to_f32(weight[c]) + to_f32(bias[c]));
    }
#undef LN_X
    if (lane == 0) {
        if (mean) { mean[row] = m; }
        if (rstd) { rstd[row] = s; }
    }
}

__global__ void layernorm_forward_kernel(floatX* out, float* mean, float* rstd, const floatX* inp,
                                         const floatX* weight, const floatX* bias, int N, int C) {
    int row = blockIdx.x * (blockDim.x / WARP_SIZE) + threadIdx.x / WARP_SIZE;
    int lane = threadIdx.x % WARP_SIZE;
    if (row >= N) { return; }  // the whole warp
    size_t off = (size_t)row * C;
    layernorm_row(out + off, mean, rstd, row, inp + off, NULL, NULL, weight, bias, C, lane);
}

__global__ void fused_residual_layernorm_kernel(floatX* residual, floatX* out, float* mean, float* rstd,
                                                const floatX* a, const floatX* b, const floatX* weight,
                                                const floatX* bias, int N, int C) {
    int row = blockIdx.x * (blockDim.x / WARP_SIZE) + threadIdx.x / WARP_SIZE;
    int lane = threadIdx.x % WARP_SIZE;
    if (row >= N) { return; }
    size_t off = (size_t)row * C;
    // the normalisation reads a and b, not `residual`, so residual may alias a or b only if it is written
    // last: each lane writes exactly the elements it reads, after its last read of them
    layernorm_row(out + off, mean, rstd, row, NULL, a + off, b + off, weight, bias, C, lane);
    for (int c = lane; c < C; c += WARP_SIZE) {
        residual[off + c] = to_fX(to_f32(a[off + c]) + to_f32(b[off + c]));
    }
}

__global__ void residual_forward_kernel(floatX* out, const floatX* a, const floatX* b, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        out[i] = to_fX(to_f32(a[i]) + to_f32(b[i]));
    }
}

// dinp += ..., one warp per row (the math of train_gpt2_pp.c's layernorm_backward)
__global__ void layernorm_backward_dinp_kernel(floatX* dinp, const floatX* dout, const floatX* inp,
                                               const floatX* weight, const float* mean, const float* rstd,
                                               int N, int C) {
    int row = blockIdx.x * (blockDim.x / WARP_SIZE) + threadIdx.x / WARP_SIZE;
    int lane = threadIdx.x % WARP_SIZE;
    if (row >= N) { return; }
    size_t off = (size_t)row * C;
    const floatX* d = dout + off;
    const floatX* x = inp + off;
    float m = mean[row], s = rstd[row];
    float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
    for (int c = lane; c < C; c += WARP_SIZE) {
        float dnorm = to_f32(weight[c]) * to_f32(d[c]);
        dnorm_mean += dnorm;
        dnorm_norm_mean += dnorm * (to_f32(x[c]) - m) * s;
    }
    dnorm_mean = warp_reduce_sum(dnorm_mean) / C;
    dnorm_norm_mean = warp_reduce_sum(dnorm_norm_mean) / C;
    floatX* di = dinp + off;
    for (int c = lane; c < C; c += WARP_SIZE) {
        float norm = (to_f32(x[c]) - m) * s;
        float g = (to_f32(weight[c]) * to_f32(d[c]) - dnorm_mean - norm * dnorm_norm_mean) * s;
        di[c] = to_fX(to_f32(di[c]) + g);
    }
}

// Partial dweight/dbias over one slice of rows. grid (ceil(C/32), slices), block 256 = 32 columns x 8 row groups.
// scratch[slice * 2C + c] = partial dweight, scratch[slice * 2C + C + c] = partial dbias.
__global__ void layernorm_backward_params_kernel(float* scratch, const floatX* dout, const floatX* inp,
                                                 const float* mean, const float* rstd, int N, int C) {
    __shared__ float s_dw[LN_BWD_ROW_GROUPS][WARP_SIZE];
    __shared__ float s_db[LN_BWD_ROW_GROUPS][WARP_SIZE];
    int lane = threadIdx.x % WARP_SIZE, group = threadIdx.x / WARP_SIZE;
    int c = blockIdx.x * WARP_SIZE + lane;
    int slice = blockIdx.y, slices = gridDim.y;
    int rows = CEIL_DIV(N, slices);
    int r0 = slice * rows;
    int r1 = r0 + rows < N ? r0 + rows : N;
    float dw = 0.0f, db = 0.0f;
    if (c < C) {
        for (int r = r0 + group; r < r1; r += LN_BWD_ROW_GROUPS) {
            float d = to_f32(dout[(size_t)r * C + c]);
            float norm = (to_f32(inp[(size_t)r * C + c]) - mean[r]) * rstd[r];
            dw += norm * d;
            db += d;
        }
    }
    s_dw[group][lane] = dw;
    s_db[group][lane] = db;
    __syncthreads();
    if (group == 0 && c < C) {
        for (int g = 1; g < LN_BWD_ROW_GROUPS; g++) {
            dw += s_dw[g][lane];
            db += s_db[g][lane];
        }
        scratch[(size_t)slice * 2 * C + c] = dw;
        scratch[(size_t)slice * 2 * C + C + c] = db;
    }
}

// dweight[c] += sum of the slices' partials (slice order); dbias likewise.
__global__ void layernorm_backward_finish_kernel(float* dweight, float* dbias, const float* scratch, int slices, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) { return; }
    float dw = 0.0f, db = 0.0f;
    for (int s = 0; s < slices; s++) {
        dw += scratch[(size_t)s * 2 * C + c];
        db += scratch[(size_t)s * 2 * C + C + c];
    }
    dweight[c] += dw;
    dbias[c] += db;
}

// ----------------------------------------------------------------------------
// host functions

inline void layernorm_forward(floatX* out, float* mean, float* rstd, const floatX* inp, const floatX* weight,
                              const floatX* bias, int N, int C, cudaStream_t stream) {
    if (N == 0) { return; }
    int rows_per_block = LAYERNORM_BLOCK / WARP_SIZE;
    layernorm_forward_kernel<<<CEIL_DIV(N, rows_per_block), LAYERNORM_BLOCK, 0, stream>>>(out, mean, rstd, inp,
                                                                                         weight, bias, N, C);
    cudaKernelCheck();
}

inline void residual_forward(floatX* out, const floatX* a, const floatX* b, size_t n, cudaStream_t stream) {
    if (n == 0) { return; }
    residual_forward_kernel<<<elementwise_blocks(n), ELEMENTWISE_BLOCK, 0, stream>>>(out, a, b, n);
    cudaKernelCheck();
}

inline void fused_residual_layernorm_forward(floatX* residual, floatX* out, float* mean, float* rstd,
                                             const floatX* a, const floatX* b, const floatX* weight,
                                             const floatX* bias, int N, int C, cudaStream_t stream) {
    if (N == 0) { return; }
    int rows_per_block = LAYERNORM_BLOCK / WARP_SIZE;
    fused_residual_layernorm_kernel<<<CEIL_DIV(N, rows_per_block), LAYERNORM_BLOCK, 0, stream>>>(
        residual, out, mean, rstd, a, b, weight, bias, N, C);
    cudaKernelCheck();
}

inline void layernorm_backward(floatX* dinp, float* dweight, float* dbias, float* scratch, const floatX* dout,
                               const floatX* inp, const floatX* weight, const float* mean, const float* rstd,
                               int N, int C, cudaStream_t stream) {
    if (N == 0) { return; }
    int slices = layernorm_backward_slices(N);
    dim3 grid(CEIL_DIV(C, WARP_SIZE), slices);
    layernorm_backward_params_kernel<<<grid, WARP_SIZE * LN_BWD_ROW_GROUPS, 0, stream>>>(scratch, dout, inp, mean,
                                                                                         rstd, N, C);
    cudaKernelCheck();
    layernorm_backward_finish_kernel<<<CEIL_DIV(C, 256), 256, 0, stream>>>(dweight, dbias, scratch, slices, C);
    cudaKernelCheck();
    int rows_per_block = LAYERNORM_BLOCK / WARP_SIZE;
    layernorm_backward_dinp_kernel<<<CEIL_DIV(N, rows_per_block), LAYERNORM_BLOCK, 0, stream>>>(
        dinp, dout, inp, weight, mean, rstd, N, C);
    cudaKernelCheck();
}
