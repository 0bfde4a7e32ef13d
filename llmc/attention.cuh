// attention.cuh -- causal multi-head self-attention: permutes, cuBLASLt batched GEMMs and a warp softmax.
// Needs cublas_init() (cublas_common.h). HS = C/NH; scale = 1/sqrtf(HS); BTC = B*T*C.
//
// void attention_forward(floatX* out, floatX* att, floatX* scratch, const floatX* inp,
//                        int B, int T, int C, int NH, cudaStream_t stream);
//     inp (B,T,3C): q | k | v along the last axis, heads contiguous inside each (h*HS .. h*HS+HS-1).
//     att (B,NH,T,T) = softmax over t2 <= t of (q_t . k_t2) * scale; entries t2 > t are written as 0.
//                      Keep it for the backward pass.
//     out (B,T,C)    = att @ v, heads side by side.
//     scratch: floatX, ATTENTION_FORWARD_SCRATCH(B,T,C) = 3*BTC elements, clobbered.
//     Steps: permute inp -> q,k,v (B,NH,T,HS) in scratch; preatt = q @ k^T (cuBLASLt strided batched,
//     B*NH batches) into att; softmax in place (one warp per row, online max/sum in fp32, scale applied
//     there); y = att @ v into scratch's q slot; unpermute y into out.
//     Precision: the pre-softmax logits are stored as floatX before the softmax (as in llm.c), so in BF16
//     they carry a relative error of 2^-9 (see dev/cuda/attention_forward.cu for what that does to att).
//
// void attention_backward(floatX* dinp, floatX* datt, floatX* scratch, const floatX* dout, const floatX* inp,
//                         const floatX* att, int B, int T, int C, int NH, cudaStream_t stream);
//     dinp (B,T,3C) = d(loss)/d(inp), overwritten. dout (B,T,C); inp and att exactly as given to/produced by
//     attention_forward.
//     datt: floatX scratch of (B,NH,T,T) elements (the same size as att), clobbered.
//     scratch: floatX, ATTENTION_BACKWARD_SCRATCH(B,T,C) = 6*BTC elements, clobbered (the forward's scratch
//     need not be kept: q,k,v are permuted again from inp).
//     Steps: permute inp -> q,k,v; dout -> dy (B,NH,T,HS); datt = dy @ v^T; dv = att^T @ dy; softmax
//     backward in place (datt -> dpreatt = att * (datt - sum(att*datt)) * scale, zero above the diagonal);
//     dq = dpreatt @ k; dk = dpreatt^T @ q; permute dq,dk,dv into dinp.
//     No aliasing among dinp, datt, scratch, dout, inp, att.
#pragma once
#include "cuda_common.h"
#include "cuda_utils.cuh"
#include "matmul.cuh"

#define ATTENTION_FORWARD_SCRATCH(B, T, C) ((size_t)3 * (B) * (T) * (C))
#define ATTENTION_BACKWARD_SCRATCH(B, T, C) ((size_t)6 * (B) * (T) * (C))
#define ATTENTION_SOFTMAX_BLOCK 256

// ----------------------------------------------------------------------------
// kernels

// inp (B,T,3,NH,HS) -> q, k, v (B,NH,T,HS); one thread per (b,h,t,d), copying all three
__global__ void attention_permute_kernel(floatX* q, floatX* k, floatX* v, const floatX* inp,
                                         int B, int T, int NH, int HS) {
    size_t n = (size_t)B * NH * T * HS;
    int C = NH * HS;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        int d = (int)(i % HS);
        int t = (int)((i / HS) % T);
        int h = (int)((i / ((size_t)HS * T)) % NH);
        size_t b = i / ((size_t)HS * T * NH);
        size_t src = (b * T + t) * 3 * C + (size_t)h * HS + d;
        q[i] = inp[src];
        k[i] = inp[src + C];
        v[i] = inp[src + 2 * C];
    }
}

// the reverse: dq, dk, dv (B,NH,T,HS) -> dinp (B,T,3,NH,HS)
__global__ void attention_permute_backward_kernel(floatX* dinp, const floatX* dq, const floatX* dk, const floatX* dv,
                                                  int B, int T, int NH, int HS) {
    size_t n = (size_t)B * NH * T * HS;
    int C = NH * HS;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        int d = (int)(i % HS);
        int t = (int)((i / HS) % T);
        int h = (int)((i / ((size_t)HS * T)) % NH);
        size_t b = i / ((size_t)HS * T * NH);
        size_t dst = (b * T + t) * 3 * C + (size_t)h * HS + d;
        dinp[dst] = dq[i];
        dinp[dst + C] = dk[i];
        dinp[dst + 2 * C] = dv[i];
    }
}

// Between the heads layout (B,NH,T,HS) and the token layout (B,T,NH,HS) = (B,T,C):
// to_heads = 0: dst (B,T,C) = src (B,NH,T,HS) (the forward's unpermute);
// to_heads = 1: dst (B,NH,T,HS) = src (B,T,C) (its backward). One thread per element of the heads layout.
__global__ void attention_unpermute_kernel(floatX* dst, const floatX* src, int B, int T, int NH, int HS,
                                           int to_heads) {
    size_t n = (size_t)B * NH * T * HS;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        int d = (int)(i % HS);
        int t = (int)((i / HS) % T);
        int h = (int)((i / ((size_t)HS * T)) % NH);
        size_t b = i / ((size_t)HS * T * NH);
        size_t o = (b * T + t) * NH * HS + (size_t)h * HS + d;
        if (to_heads) { dst[i] = src[o]; } else { dst[o] = src[i]; }
    }
}

// Causal softmax in place over rows of att (B*NH*T rows of T): row r belongs to query t = r % T and uses
// columns t2 <= t; columns t2 > t become 0. One warp per row. Each lane keeps an online (max, sum) over its
// columns; the pairs are merged by an xor butterfly (the merge is symmetric, so every lane ends with the
// same bits), then each column is written as expf(x - max) * (1/sum).
__global__ void attention_softmax_forward_kernel(floatX* att, int rows, int T, float scale) {
    int row = blockIdx.x * (blockDim.x / WARP_SIZE) + threadIdx.x / WARP_SIZE;
    int lane = threadIdx.x % WARP_SIZE;
    if (row >= rows) { return; }  // the whole warp
    int t = row % T;
    floatX* x = att + (size_t)row * T;
    float m = -INFINITY, s = 0.0f;
    for (int t2 = lane; t2 <= t; t2 += WARP_SIZE) { softmax_state_add(&m, &s, to_f32(x[t2]) * scale); }
    warp_softmax_state_merge(&m, &s);  // lanes with no columns (m = -inf) contribute nothing
    float inv = 1.0f / s;
    for (int t2 = lane; t2 < T; t2 += WARP_SIZE) {
        x[t2] = t2 <= t ? to_fX(expf(to_f32(x[t2]) * scale - m) * inv) : to_fX(0.0f);
    }
}

// In place: datt -> dpreatt = att * (datt - sum_{t2<=t} att*datt) * scale for t2 <= t, 0 above. One warp per row.
__global__ void attention_softmax_backward_kernel(floatX* datt, const floatX* att, int rows, int T, float scale) {
    int row = blockIdx.x * (blockDim.x / WARP_SIZE) + threadIdx.x / WARP_SIZE;
    int lane = threadIdx.x % WARP_SIZE;
    if (row >= rows) { return; }
    int t = row % T;
    floatX* d = datt + (size_t)row * T;
    const floatX* a = att + (size_t)row * T;
    float dot = 0.0f;
    for (int t2 = lane; t2 <= t; t2 += WARP_SIZE) { dot += to_f32(a[t2]) * to_f32(d[t2]); }
    dot = warp_reduce_sum(dot);
    for (int t2 = lane; t2 < T; t2 += WARP_SIZE) {
        d[t2] = t2 <= t ? to_fX(to_f32(a[t2]) * (to_f32(d[t2]) - dot) * scale) : to_fX(0.0f);
    }
}

// ----------------------------------------------------------------------------
// host functions

inline void attention_forward(floatX* out, floatX* att, floatX* scratch, const floatX* inp,
                              int B, int T, int C, int NH, cudaStream_t stream) {
    if (B * T == 0) { return; }
    int HS = C / NH;
    size_t BTC = (size_t)B * T * C;
    floatX* q = scratch;
    floatX* k = scratch + BTC;
    floatX* v = scratch + 2 * BTC;
    int blocks = elementwise_blocks(BTC);
    attention_permute_kernel<<<blocks, ELEMENTWISE_BLOCK, 0, stream>>>(q, k, v, inp, B, T, NH, HS);
    cudaKernelCheck();
    // preatt[t][t2] = q_t . k_t2: column-major D (T x T) with D(t2,t) = sum_d K(t2,d) Q(t,d)
    int batch = B * NH;
    long long sQKV = (long long)T * HS, sATT = (long long)T * T;
    matmul_cublaslt(att, CUBLAS_LOWP, k, q, NULL, T, T, HS, true, false, batch, sQKV, sQKV, sATT, 1.0f, 0.0f,
                    CUBLASLT_EPILOGUE_DEFAULT, NULL, stream);
    int rows = B * NH * T;
    int rows_per_block = ATTENTION_SOFTMAX_BLOCK / WARP_SIZE;
    float scale = 1.0f / sqrtf((float)HS);
    attention_softmax_forward_kernel<<<CEIL_DIV(rows, rows_per_block), ATTENTION_SOFTMAX_BLOCK, 0, stream>>>(
        att, rows, T, scale);
    cudaKernelCheck();
    // y (T,HS) = att (T,T) @ v (T,HS): column-major y^T (HS x T) = v^T (HS x T) @ att^T (T x T); into q's slot
    floatX* y = q;
    matmul_cublaslt(y, CUBLAS_LOWP, v, att, NULL, HS, T, T, false, false, batch, sQKV, sATT, sQKV, 1.0f, 0.0f,
                    CUBLASLT_EPILOGUE_DEFAULT, NULL, stream);
    attention_unpermute_kernel<<<blocks, ELEMENTWISE_BLOCK, 0, stream>>>(out, y, B, T, NH, HS, 0);
    cudaKernelCheck();
}

inline void attention_backward(floatX* dinp, floatX* datt, floatX* scratch, const floatX* dout, const floatX* inp,
                               const floatX* att, int B, int T, int C, int NH, cudaStream_t stream) {
    if (B * T == 0) { return; }
    int HS = C / NH;
    size_t BTC = (size_t)B * T * C;
    floatX* q = scratch;
    floatX* k = scratch + BTC;
    floatX* v = scratch + 2 * BTC;
    floatX* dy = scratch + 3 * BTC;  // later dq
    floatX* dq = dy;
    floatX* dk = scratch + 4 * BTC;
    floatX* dv = scratch + 5 * BTC;
    int blocks = elementwise_blocks(BTC);
    attention_permute_kernel<<<blocks, ELEMENTWISE_BLOCK, 0, stream>>>(q, k, v, inp, B, T, NH, HS);
    cudaKernelCheck();
    attention_unpermute_kernel<<<blocks, ELEMENTWISE_BLOCK, 0, stream>>>(dy, dout, B, T, NH, HS, 1);
    cudaKernelCheck();
    int batch = B * NH;
    long long sQKV = (long long)T * HS, sATT = (long long)T * T;
    // datt[t][t2] = dy_t . v_t2: column-major D (T x T), D(t2,t) = sum_d V(t2,d) dY(t,d)
    matmul_cublaslt(datt, CUBLAS_LOWP, v, dy, NULL, T, T, HS, true, false, batch, sQKV, sQKV, sATT, 1.0f, 0.0f,
                    CUBLASLT_EPILOGUE_DEFAULT, NULL, stream);
    // dv (T,HS) = att^T @ dy: column-major dv^T (HS x T) = dy^T (HS x T) @ att (T x T), att stored transposed
    matmul_cublaslt(dv, CUBLAS_LOWP, dy, att, NULL, HS, T, T, false, true, batch, sQKV, sATT, sQKV, 1.0f, 0.0f,
                    CUBLASLT_EPILOGUE_DEFAULT, NULL, stream);
    int rows = B * NH * T;
    int rows_per_block = ATTENTION_SOFTMAX_BLOCK / WARP_SIZE;
    float scale = 1.0f / sqrtf((float)HS);
    attention_softmax_backward_kernel<<<CEIL_DIV(rows, rows_per_block), ATTENTION_SOFTMAX_BLOCK, 0, stream>>>(
        datt, att, rows, T, scale);
    cudaKernelCheck();
    // dq (T,HS) = dpreatt (T,T) @ k (T,HS): column-major dq^T = k^T (HS x T) @ dpreatt^T (as stored)
    matmul_cublaslt(dq, CUBLAS_LOWP, k, datt, NULL, HS, T, T, false, false, batch, sQKV, sATT, sQKV, 1.0f, 0.0f,
                    CUBLASLT_EPILOGUE_DEFAULT, NULL, stream);
    // dk (T,HS) = dpreatt^T @ q: column-major dk^T = q^T (HS x T) @ dpreatt (stored transposed)
    matmul_cublaslt(dk, CUBLAS_LOWP, q, datt, NULL, HS, T, T, false, true, batch, sQKV, sATT, sQKV, 1.0f, 0.0f,
                    CUBLASLT_EPILOGUE_DEFAULT, NULL, stream);
    attention_permute_backward_kernel<<<blocks, ELEMENTWISE_BLOCK, 0, stream>>>(dinp, dq, dk, dv, B, T, NH, HS);
    cudaKernelCheck();
}
