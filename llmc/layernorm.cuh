// layernorm.cuh -- LayerNorm forward/backward, the residual add, and residual add fused with LayerNorm.
//
// void layernorm_forward(floatX* out, float* mean, float* rstd, const floatX* inp, const floatX* weight,
//                        const floatX* bias, int N, int C, cudaStream_t stream);
//     inp, out (N,C); weight, bias (C); mean, rstd (N) fp32 (either may be NULL: not stored).
//     Per row: m = sum(x)/C, v = sum((x-m)^2)/C (two passes over registers), s = 1/sqrtf(v + 1e-5f),
//     out = s*(x-m)*weight + bias. One warp per row, 8 rows per 256-thread block; the row is read once, into
//     registers (lane l holds the 128-bit vectors l, l+32, ...). out may not alias inp.
//     C <= LAYERNORM_MAX_C = 16 * 32 * X128 (2048 FP32, 4096 BF16/FP16; GPT-2 XL has 1600).
//
// void residual_forward(floatX* out, const floatX* a, const floatX* b, size_t n, cudaStream_t stream);
//     out = a + b (fp32 add, rounded once). out may alias a or b.
//
// void fused_residual_layernorm_forward(floatX* residual, floatX* out, float* mean, float* rstd,
//                                       const floatX* a, const floatX* b, const floatX* weight,
//                                       const floatX* bias, int N, int C, cudaStream_t stream);
//     residual = a + b (rounded to floatX), then layernorm_forward of that rounded residual into out/mean/rstd:
//     bitwise the same as residual_forward followed by layernorm_forward (the same kernel). residual may alias
//     a or b; out must not alias a, b or residual.
//
// void layernorm_backward(floatX* dinp, float* dweight, float* dbias, float* scratch, const floatX* dout,
//                         const floatX* inp, const floatX* weight, const float* mean, const float* rstd,
//                         int N, int C, cudaStream_t stream);
//     dinp (N,C) += the input gradient (read, added in fp32, rounded once: the residual stream's gradient);
//     dweight (C) += sum_n (x-m)*s*dout, dbias (C) += sum_n dout (fp32 parameter gradients).
//     scratch: fp32, at least LAYERNORM_BACKWARD_SCRATCH_FLOATS(C) floats of device memory, contents need not
//     be initialised, clobbered (a cudaMemsetAsync of its first 4 bytes precedes the kernel). No aliasing
//     among dinp, dout, inp and scratch. C <= 4096 in FP32, 6144 in BF16/FP16 (a thread per X128 columns,
//     at most 1024 per row, and 8 * X128 bytes of shared memory per thread of a row).
//     ONE kernel, reading dout and inp once, deterministic without float atomics: G = min(128, ceil(N/16))
//     blocks (a function of N only), block g takes rows [g*Rb, (g+1)*Rb), Rb = ceil(N/G). A block is R rows
//     of P threads, P = ceil(C/X128) rounded up to 32, R = max(1, 512/P); thread (x, y) holds columns
//     [x*X128, x*X128 + X128) and takes rows g*Rb + y, + R, ... in order: the row's two sums over C go through
//     a warp butterfly and then the row's warps in order; dweight/dbias partials stay in registers, are
//     combined over y in order (shared memory) and stored as the block's partial row in scratch. The last
//     block to finish (an integer ticket) adds the G partial rows (slot y takes g = y, y+R, ... in order,
//     then the slots in order) into dweight/dbias.
#pragma once
#include "cuda_common.h"
#include "cuda_utils.cuh"

#define LAYERNORM_EPS 1e-5f
#define LAYERNORM_BLOCK 256
#define LN_FWD_MAX_VECS 16  // 128-bit vectors per lane, so C <= 16 * 32 * X128
#define LAYERNORM_MAX_C (LN_FWD_MAX_VECS * WARP_SIZE * X128)
#define LN_BWD_THREADS 512
#define LN_BWD_MAX_BLOCKS 128
#define LN_BWD_MIN_ROWS 16
// 4 floats (the ticket counter, kept 16-byte aligned) + the blocks' partial (dweight, dbias) rows
#define LAYERNORM_BACKWARD_SCRATCH_FLOATS(C) (4 + (size_t)2 * LN_BWD_MAX_BLOCKS * (C))

inline int layernorm_backward_blocks(int N) {
    int g = CEIL_DIV(N, LN_BWD_MIN_ROWS);
    if (g > LN_BWD_MAX_BLOCKS) { g = LN_BWD_MAX_BLOCKS; }
    return g < 1 ? 1 : g;
}

// ----------------------------------------------------------------------------
// kernels

// 128-bit vector `v` of a row of C elements (columns v*X128 ...): one load if vec, else element by element;
// columns past C read as 0
__device__ inline Packed128<floatX> ln_load_vec(const floatX* row, int v, int C, bool vec) {
    int c = v * X128;
    if (vec && c < C) { return load128(row + c); }
    Packed128<floatX> x;
    for (int k = 0; k < X128; k++) { x.v[k] = c + k < C ? row[c + k] : to_fX(0.0f); }
    return x;
}

// One warp normalises one row, K 128-bit vectors per lane: x = a (b == NULL) or round_to_floatX(a + b),
// which is then also written to `residual` (the fused kernel). Each lane writes only the elements it read,
// after reading them, so residual may alias a or b.
template <int K>
__global__ void layernorm_forward_kernel(floatX* residual, floatX* out, float* mean, float* rstd,
                                         const floatX* a, const floatX* b, const floatX* weight,
                                         const floatX* bias, int N, int C, bool vec) {
    int row = blockIdx.x * (blockDim.x / WARP_SIZE) + threadIdx.x / WARP_SIZE;
    int lane = threadIdx.x % WARP_SIZE;
    if (row >= N) { return; }  // the whole warp
    size_t off = (size_t)row * C;
    Packed128<floatX> x[K];
    float sum = 0.0f;
#pragma unroll
    for (int k = 0; k < K; k++) {
        int v = lane + k * WARP_SIZE;
        x[k] = ln_load_vec(a + off, v, C, vec);
        if (b) {
            Packed128<floatX> y = ln_load_vec(b + off, v, C, vec);
            for (int e = 0; e < X128; e++) { x[k].v[e] = to_fX(to_f32(x[k].v[e]) + to_f32(y.v[e])); }
        }
        for (int e = 0; e < X128; e++) { sum += to_f32(x[k].v[e]); }  // 0 past C
    }
    float m = warp_reduce_sum(sum) / C;
    float var = 0.0f;
#pragma unroll
    for (int k = 0; k < K; k++) {
        int c = (lane + k * WARP_SIZE) * X128;
        for (int e = 0; e < X128; e++) {
            float d = c + e < C ? to_f32(x[k].v[e]) - m : 0.0f;
            var += d * d;
        }
    }
    var = warp_reduce_sum(var) / C;
    float s = 1.0f / sqrtf(var + LAYERNORM_EPS);
#pragma unroll
    for (int k = 0; k < K; k++) {
        int c = (lane + k * WARP_SIZE) * X128;
        if (c >= C) { continue; }
        int count = C - c < X128 ? C - c : X128;
        float o[X128], w[X128], bi[X128], xf[X128];
        load_f32<X128>(w, weight + c, count, vec);
        load_f32<X128>(bi, bias + c, count, vec);
        for (int e = 0; e < X128; e++) {
            xf[e] = to_f32(x[k].v[e]);
            o[e] = s * (xf[e] - m) * w[e] + bi[e];
        }
        if (b) { store_f32<X128>(residual + off + c, xf, count, vec); }
        store_f32<X128>(out + off + c, o, count, vec);
    }
    if (lane == 0) {
        if (mean) { mean[row] = m; }
        if (rstd) { rstd[row] = s; }
    }
}

__global__ void residual_forward_kernel(floatX* out, const floatX* a, const floatX* b, size_t n, bool vec) {
    for_each_group<X128>(n, [&](size_t i, int count) {
        float x[X128], y[X128];
        load_f32<X128>(x, a + i, count, vec);
        load_f32<X128>(y, b + i, count, vec);
        for (int k = 0; k < X128; k++) { x[k] = x[k] + y[k]; }
        store_f32<X128>(out + i, x, count, vec);
    });
}

// The sum of v over the threads of row slot threadIdx.y (a warp butterfly, then the slot's warps in order):
// red holds 2 x 32 float2 (double-buffered by `parity`, so one barrier per call suffices). Every thread of
// the block must call it.
__device__ inline float2 ln_bwd_row_sum(float2 v, float2* red, int parity) {
    v.x = warp_reduce_sum(v.x);
    v.y = warp_reduce_sum(v.y);
    int warps = blockDim.x / WARP_SIZE;
    int w0 = threadIdx.y * warps;
    float2* r = red + parity * WARP_SIZE;
    if (threadIdx.x % WARP_SIZE == 0) { r[w0 + threadIdx.x / WARP_SIZE] = v; }
    __syncthreads();
    float2 t = r[w0];
    for (int w = 1; w < warps; w++) {
        t.x += r[w0 + w].x;
        t.y += r[w0 + w].y;
    }
    return t;
}

// Adds the (dw, db) of row slots 1..R-1 into slot 0's, in slot order, through smem (2 * X128 * blockDim.x
// floats). Every thread of the block must call it.
__device__ inline void ln_bwd_combine_slots(float* dw, float* db, float* smem) {
    float* mine = smem + threadIdx.x * 2 * X128;
    for (int y = 1; y < (int)blockDim.y; y++) {
        if ((int)threadIdx.y == y) {
            for (int e = 0; e < X128; e++) { mine[e] = dw[e]; mine[X128 + e] = db[e]; }
        }
        __syncthreads();
        if (threadIdx.y == 0) {
            for (int e = 0; e < X128; e++) { dw[e] += mine[e]; db[e] += mine[X128 + e]; }
        }
        __syncthreads();
    }
}

// grid G, block (P, R), dynamic smem 2 * X128 * P floats; see the header comment
__global__ void layernorm_backward_kernel(floatX* dinp, float* dweight, float* dbias, float* scratch,
                                          const floatX* dout, const floatX* inp, const floatX* weight,
                                          const float* mean, const float* rstd, int N, int C, bool vec) {
    extern __shared__ float ln_bwd_smem[];
    __shared__ float2 red[2 * WARP_SIZE];
    __shared__ int is_last;
    unsigned* ticket = (unsigned*)scratch;
    float* partials = scratch + 4;
    int c = threadIdx.x * X128;
    int count = c < C ? (C - c < X128 ? C - c : X128) : 0;
    int rows = CEIL_DIV(N, (int)gridDim.x);
    int r0 = blockIdx.x * rows, r1 = r0 + rows < N ? r0 + rows : N;
    float w[X128], dw[X128], db[X128];
    load_f32<X128>(w, weight + c, count, vec);
    for (int e = 0; e < X128; e++) { dw[e] = 0.0f; db[e] = 0.0f; }
    for (int it = 0; r0 + it * (int)blockDim.y < r1; it++) {  // the same trip count in every thread
        int r = r0 + it * blockDim.y + threadIdx.y;
        bool live = r < r1 && count > 0;
        float d[X128], x[X128];
        float m = 0.0f, s = 0.0f;
        if (live) {
            load_f32<X128>(d, dout + (size_t)r * C + c, count, vec);
            load_f32<X128>(x, inp + (size_t)r * C + c, count, vec);
            m = mean[r];
            s = rstd[r];
        }
        float2 sums = make_float2(0.0f, 0.0f);  // sum of w*d and of w*d*norm over the row
        if (live) {
            for (int e = 0; e < X128; e++) {
                float norm = (x[e] - m) * s;
                float dnorm = w[e] * d[e];
                sums.x += dnorm;
                sums.y += dnorm * norm;
                dw[e] += norm * d[e];
                db[e] += d[e];
                x[e] = norm;
                d[e] = dnorm;
            }
        }
        sums = ln_bwd_row_sum(sums, red, it & 1);
        if (live) {
            float dnorm_mean = sums.x / C, dnorm_norm_mean = sums.y / C;
            float g[X128];
            floatX* di = dinp + (size_t)r * C + c;
            load_f32<X128>(g, di, count, vec);
            for (int e = 0; e < X128; e++) { g[e] += (d[e] - dnorm_mean - x[e] * dnorm_norm_mean) * s; }
            store_f32<X128>(di, g, count, vec);
        }
    }
    // this block's partial row
    ln_bwd_combine_slots(dw, db, ln_bwd_smem);
    if (threadIdx.y == 0) {
        store_f32<X128>(partials + (size_t)blockIdx.x * 2 * C + c, dw, count, vec);
        store_f32<X128>(partials + (size_t)blockIdx.x * 2 * C + C + c, db, count, vec);
    }
    __threadfence();  // the partial row is visible device-wide before the ticket is taken
    __syncthreads();
    if (threadIdx.x == 0 && threadIdx.y == 0) { is_last = atomicAdd(ticket, 1u) == gridDim.x - 1; }
    __syncthreads();
    if (!is_last) { return; }  // block-uniform
    // the last block: dweight += sum of the G partial rows (slot y: rows y, y+R, ... in order; then slot order)
    __threadfence();
    for (int e = 0; e < X128; e++) { dw[e] = 0.0f; db[e] = 0.0f; }
    for (int g = threadIdx.y; g < (int)gridDim.x; g += blockDim.y) {
        float pw[X128], pb[X128];
        load_f32<X128, true>(pw, partials + (size_t)g * 2 * C + c, count, vec);
        load_f32<X128, true>(pb, partials + (size_t)g * 2 * C + C + c, count, vec);
        for (int e = 0; e < X128; e++) { dw[e] += pw[e]; db[e] += pb[e]; }
    }
    ln_bwd_combine_slots(dw, db, ln_bwd_smem);
    if (threadIdx.y == 0 && count > 0) {
        float gw[X128], gb[X128];
        load_f32<X128>(gw, dweight + c, count, vec);
        load_f32<X128>(gb, dbias + c, count, vec);
        for (int e = 0; e < X128; e++) { gw[e] += dw[e]; gb[e] += db[e]; }
        store_f32<X128>(dweight + c, gw, count, vec);
        store_f32<X128>(dbias + c, gb, count, vec);
    }
}

// ----------------------------------------------------------------------------
// host functions

// both forward launchers: b == NULL is the plain layernorm
inline void layernorm_forward_launch(floatX* residual, floatX* out, float* mean, float* rstd, const floatX* a,
                                     const floatX* b, const floatX* weight, const floatX* bias, int N, int C,
                                     cudaStream_t stream) {
    if (N == 0) { return; }
    if (C > LAYERNORM_MAX_C) { fatal("layernorm_forward: C = %d > %d is not supported", C, (int)LAYERNORM_MAX_C); }
    bool vec = C % X128 == 0 && is_aligned16(out) && is_aligned16(a) && is_aligned16(weight) && is_aligned16(bias) &&
               (b == NULL || (is_aligned16(b) && is_aligned16(residual)));
    int vecs = CEIL_DIV(CEIL_DIV(C, X128), WARP_SIZE);  // per lane
    dim3 grid(CEIL_DIV(N, LAYERNORM_BLOCK / WARP_SIZE));
    void (*kernel)(floatX*, floatX*, float*, float*, const floatX*, const floatX*, const floatX*, const floatX*, int,
                   int, bool) = vecs <= 1   ? layernorm_forward_kernel<1>
                                : vecs <= 2 ? layernorm_forward_kernel<2>
                                : vecs <= 4 ? layernorm_forward_kernel<4>
                                : vecs <= 8 ? layernorm_forward_kernel<8>
                                            : layernorm_forward_kernel<16>;
    kernel<<<grid, LAYERNORM_BLOCK, 0, stream>>>(residual, out, mean, rstd, a, b, weight, bias, N, C, vec);
    cudaKernelCheck();
}

inline void layernorm_forward(floatX* out, float* mean, float* rstd, const floatX* inp, const floatX* weight,
                              const floatX* bias, int N, int C, cudaStream_t stream) {
    layernorm_forward_launch(NULL, out, mean, rstd, inp, NULL, weight, bias, N, C, stream);
}

inline void fused_residual_layernorm_forward(floatX* residual, floatX* out, float* mean, float* rstd,
                                             const floatX* a, const floatX* b, const floatX* weight,
                                             const floatX* bias, int N, int C, cudaStream_t stream) {
    layernorm_forward_launch(residual, out, mean, rstd, a, b, weight, bias, N, C, stream);
}

inline void residual_forward(floatX* out, const floatX* a, const floatX* b, size_t n, cudaStream_t stream) {
    if (n == 0) { return; }
    residual_forward_kernel<<<elementwise_blocks_groups(n, X128), ELEMENTWISE_BLOCK, 0, stream>>>(
        out, a, b, n, is_aligned16(out) && is_aligned16(a) && is_aligned16(b));
    cudaKernelCheck();
}

inline void layernorm_backward(floatX* dinp, float* dweight, float* dbias, float* scratch, const floatX* dout,
                               const floatX* inp, const floatX* weight, const float* mean, const float* rstd,
                               int N, int C, cudaStream_t stream) {
    if (N == 0) { return; }
    int P = CEIL_DIV(CEIL_DIV(C, X128), WARP_SIZE) * WARP_SIZE;
    size_t smem = (size_t)2 * X128 * P * sizeof(float);
    if (P > 1024 || smem > 47 * 1024) { fatal("layernorm_backward: C = %d is too wide", C); }  // + < 1 KiB static
    int R = LN_BWD_THREADS / P > 1 ? LN_BWD_THREADS / P : 1;
    bool vec = C % X128 == 0 && is_aligned16(dinp) && is_aligned16(dweight) && is_aligned16(dbias) &&
               is_aligned16(scratch) && is_aligned16(dout) && is_aligned16(inp) && is_aligned16(weight);
    cudaCheck(cudaMemsetAsync(scratch, 0, sizeof(unsigned), stream));  // the ticket counter
    layernorm_backward_kernel<<<layernorm_backward_blocks(N), dim3(P, R), smem, stream>>>(
        dinp, dweight, dbias, scratch, dout, inp, weight, mean, rstd, N, C, vec);
    cudaKernelCheck();
}
