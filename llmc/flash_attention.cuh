// flash_attention.cuh -- causal multi-head self-attention that never stores the T x T matrix (FlashAttention-2
// style): tiles of FLASH_TILE queries x FLASH_TILE keys through shared memory, an online softmax, and a backward
// pass that recomputes the probabilities tile by tile from the per-row logsumexp. qkv (B,T,3C) in, (B,T,C)
// out, as the matmuls around it produce and consume them. HS = C/NH must be a multiple of 16 and at most 256;
// scale = 1/sqrtf(HS). Every tensor argument must be 16-byte aligned (128-bit loads and stores). Shared memory
// per block: at most 82 KiB at HS = 128 in BF16/FP16, 121 KiB in FP32 (the dkdv kernel; FP32 at HS = 256 needs
// 217 KiB, more than sm_80's 163 KiB).
//
// void flash_attention_forward(floatX* out, float* lse, const floatX* inp, int B, int T, int C, int NH,
//                              cudaStream_t stream);
//     inp (B,T,3C): q | k | v along the last axis, heads contiguous inside each (h*HS .. h*HS+HS-1).
//     out (B,T,C) = softmax over t2 <= t of (q_t . k_t2) * scale, times v; heads side by side.
//     lse (B,NH,T), fp32: the log of the softmax denominator, m + log(sum exp(l - m)) of the scaled logits l.
//     Keep out and lse for the backward pass (the whole stash: no att, no scratch).
//
// void flash_attention_backward(floatX* dinp, float* scratch, const floatX* dout, const floatX* inp,
//                               const floatX* out, const float* lse, int B, int T, int C, int NH,
//                               cudaStream_t stream);
//     dinp (B,T,3C) = d(loss)/d(inp), overwritten. dout (B,T,C); inp, out, lse as given to/produced by the
//     forward. scratch: fp32, FLASH_ATTENTION_BACKWARD_SCRATCH(B,T,NH) = B*NH*T floats, clobbered (it holds
//     D_t = dout_t . out_t). No aliasing among dinp, scratch and the inputs.
//
// Kernels (grid: tiles x NH x B, FLASH_THREADS threads, dynamic shared memory above 48 KiB opted in):
//   forward   one block per query tile; loops over key tiles 0..its own, S = Q K^T, running max/sum per row,
//             P = exp(S - m) rounded to floatX, O = O * alpha + P V; O and S live in fp32 shared memory.
//   dkdv      one block per key tile; loops over query tiles from the diagonal to the end IN ORDER, so dK and dV
//             are summed in a fixed order without atomics: P = exp(S - lse), dP = dO V^T,
//             dS = P (dP - D) scale, dV += P^T dO, dK += dS^T Q.
//   dq        one block per query tile; loops over key tiles 0..its own: recomputes P and dS, dQ += dS K.
// The products go through WMMA (tensor cores) in BF16/FP16 and a plain fp32 loop in FP32 (flash_mm). Every
// accumulator is stored to shared memory after its mma, and all row-wise work (max, sum, rescale) reads shared
// memory, so nothing depends on which lane holds which fragment element (CUDA leaves that unspecified).
// Numerics: every product and sum is fp32; P and dS are rounded to floatX as the tensor-core operands
// (as in FlashAttention-2); the row sums use the unrounded fp32 P.
#pragma once
#include <type_traits>
#include "cuda_common.h"
#if !PRECISION_FP32
#include <mma.h>
#endif

#define FLASH_TILE 32     // queries and keys per tile: 2 x 2 WMMA tiles of 16 for S
#define FLASH_THREADS 128  // 4 warps
#define FLASH_ATTENTION_BACKWARD_SCRATCH(B, T, NH) ((size_t)(B) * (NH) * (T))
// Shared-memory row strides, in elements: padded against bank conflicts, and keeping every 16-row WMMA tile
// 32-byte aligned with a leading dimension that is a multiple of 16 bytes.
#define FLASH_LDX(HS) ((HS) + 8)   // floatX tiles of Q, K, V, dO (FLASH_TILE x HS)
#define FLASH_LDP (FLASH_TILE + 8)  // floatX P and dS (FLASH_TILE x FLASH_TILE)
#define FLASH_LDS (FLASH_TILE + 4)  // fp32 S and dP
#define FLASH_LDO(HS) ((HS) + 4)   // fp32 accumulators O, dQ, dK, dV (FLASH_TILE x HS)

// ----------------------------------------------------------------------------
// device helpers (all called by the whole block)

// c (M x N, fp32, row-major, ldc) = (accumulate ? c : 0) + A (M x K) B (K x N), all in shared memory, with
// A(m,k) = A_COL ? a[k*lda + m] : a[m*lda + k] and B(k,n) = B_COL ? b[n*ldb + k] : b[k*ldb + n].
// M, N, K multiples of 16. The caller __syncthreads before reading c. Each element is summed in k order.
template <bool A_COL, bool B_COL>
__device__ void flash_mm(float* c, int ldc, const floatX* a, int lda, const floatX* b, int ldb, int M, int N, int K,
                         bool accumulate) {
#if PRECISION_FP32
    for (int i = threadIdx.x; i < M * N; i += blockDim.x) {
        int m = i / N, n = i % N;
        float s = accumulate ? c[m * ldc + n] : 0.0f;
        for (int k = 0; k < K; k++) { s += (A_COL ? a[k * lda + m] : a[m * lda + k]) * (B_COL ? b[n * ldb + k] : b[k * ldb + n]); }
        c[m * ldc + n] = s;
    }
#else
    namespace wmma = nvcuda::wmma;
    typedef typename std::conditional<A_COL, wmma::col_major, wmma::row_major>::type LA;
    typedef typename std::conditional<B_COL, wmma::col_major, wmma::row_major>::type LB;
    int tiles_n = N / 16;
    for (int t = threadIdx.x / WARP_SIZE; t < (M / 16) * tiles_n; t += blockDim.x / WARP_SIZE) {  // one warp per tile
        int m0 = t / tiles_n * 16, n0 = t % tiles_n * 16;
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> f;
        if (accumulate) { wmma::load_matrix_sync(f, c + m0 * ldc + n0, ldc, wmma::mem_row_major); }
        else { wmma::fill_fragment(f, 0.0f); }
        for (int k = 0; k < K; k += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, floatX, LA> fa;
            wmma::fragment<wmma::matrix_b, 16, 16, 16, floatX, LB> fb;
            wmma::load_matrix_sync(fa, A_COL ? a + k * lda + m0 : a + m0 * lda + k, lda);
            wmma::load_matrix_sync(fb, B_COL ? b + n0 * ldb + k : b + k * ldb + n0, ldb);
            wmma::mma_sync(f, fa, fb, f);
        }
        wmma::store_matrix_sync(c + m0 * ldc + n0, f, ldc, wmma::mem_row_major);
    }
#endif
}

// dst (FLASH_TILE x HS, ld) = rows t0.. of one (b, h) slice of src (row stride `stride`); rows >= T are zeros.
// 16 bytes per access: HS, ld and stride are multiples of 8 elements and the tensors 16-byte aligned.
#define FLASH_VEC ((int)(16 / sizeof(floatX)))
__device__ void flash_load(floatX* dst, int ld, const floatX* src, size_t stride, int t0, int T, int HS) {
    for (int i = threadIdx.x; i < FLASH_TILE * HS / FLASH_VEC; i += blockDim.x) {
        int r = i / (HS / FLASH_VEC), d = i % (HS / FLASH_VEC) * FLASH_VEC;
        int4 x = make_int4(0, 0, 0, 0);
        if (t0 + r < T) { x = *(const int4*)(src + (size_t)(t0 + r) * stride + d); }
        *(int4*)(dst + r * ld + d) = x;
    }
}

// the opposite, for the rows < T, from an fp32 accumulator scaled per row by 1/div[r] (div NULL: 1)
__device__ void flash_store(floatX* dst, size_t stride, const float* acc, int ld, const float* div, int t0, int T,
                            int HS) {
    for (int i = threadIdx.x; i < FLASH_TILE * HS / FLASH_VEC; i += blockDim.x) {
        int r = i / (HS / FLASH_VEC), d = i % (HS / FLASH_VEC) * FLASH_VEC;
        if (t0 + r >= T) { continue; }
        alignas(16) floatX x[FLASH_VEC];
        for (int j = 0; j < FLASH_VEC; j++) { x[j] = to_fX(div ? acc[r * ld + d + j] / div[r] : acc[r * ld + d + j]); }
        *(int4*)(dst + (size_t)(t0 + r) * stride + d) = *(const int4*)x;
    }
}

__device__ void flash_zero(float* acc, int ld, int HS) {
    for (int i = threadIdx.x; i < FLASH_TILE * HS; i += blockDim.x) { acc[i / HS * ld + i % HS] = 0.0f; }
}

// p = exp(s * scale - lse[r]) and ds = p (dp - dsum[r]) scale for query t = q0 + r < T and key t2 = k0 + c <= t,
// else 0; both rounded to floatX (the mma operands). One element per thread.
__device__ void flash_probs(floatX* p, floatX* ds, const float* s, const float* dp, const float* lse,
                            const float* dsum, int q0, int k0, int T, float scale) {
    for (int i = threadIdx.x; i < FLASH_TILE * FLASH_TILE; i += blockDim.x) {
        int r = i / FLASH_TILE, c = i % FLASH_TILE;
        bool valid = q0 + r < T && k0 + c <= q0 + r;
        float pr = valid ? expf(s[r * FLASH_LDS + c] * scale - lse[r]) : 0.0f;
        if (p) { p[r * FLASH_LDP + c] = to_fX(pr); }
        ds[r * FLASH_LDP + c] = to_fX(pr * (dp[r * FLASH_LDS + c] - dsum[r]) * scale);
    }
}

// ----------------------------------------------------------------------------
// kernels

__global__ void __launch_bounds__(FLASH_THREADS) flash_attention_forward_kernel(floatX* out, float* lse,
                                                                                const floatX* inp, int T, int NH,
                                                                                int HS, float scale) {
    extern __shared__ __align__(128) unsigned char flash_smem[];
    int qt = gridDim.x - 1 - blockIdx.x;  // the longest rows first
    int h = blockIdx.y, b = blockIdx.z, C = NH * HS, ldx = FLASH_LDX(HS), ldo = FLASH_LDO(HS);
    size_t stride = (size_t)3 * C;
    const floatX* base = inp + (size_t)b * T * stride + h * HS;
    floatX* q = (floatX*)flash_smem;
    floatX* k = q + FLASH_TILE * ldx;
    floatX* v = k + FLASH_TILE * ldx;
    floatX* p = v + FLASH_TILE * ldx;
    float* s = (float*)(p + FLASH_TILE * FLASH_LDP);
    float* o = s + FLASH_TILE * FLASH_LDS;
    float* m_run = o + FLASH_TILE * ldo;
    float* l_run = m_run + FLASH_TILE;
    float* alpha = l_run + FLASH_TILE;
    int q0 = qt * FLASH_TILE;
    flash_load(q, ldx, base, stride, q0, T, HS);
    flash_zero(o, ldo, HS);
    for (int r = threadIdx.x; r < FLASH_TILE; r += blockDim.x) { m_run[r] = -INFINITY; l_run[r] = 0.0f; }
    for (int kt = 0; kt <= qt; kt++) {
        int k0 = kt * FLASH_TILE;
        __syncthreads();  // the previous tile's k, v, p are consumed
        flash_load(k, ldx, base + C, stride, k0, T, HS);
        flash_load(v, ldx, base + 2 * C, stride, k0, T, HS);
        __syncthreads();
        flash_mm<false, true>(s, FLASH_LDS, q, ldx, k, ldx, FLASH_TILE, FLASH_TILE, HS, false);  // S = Q K^T
        __syncthreads();
        // online softmax, one thread per row; columns t2 <= t (and t2 < T for the padding rows past T)
        for (int r = threadIdx.x; r < FLASH_TILE; r += blockDim.x) {
            int last = (q0 + r < T ? q0 + r : T - 1) - k0;  // last valid column of this row; >= 0 (k0 <= q0)
            float mx = m_run[r];
            for (int c = 0; c <= last && c < FLASH_TILE; c++) { mx = fmaxf(mx, s[r * FLASH_LDS + c] * scale); }
            float sum = 0.0f;
            for (int c = 0; c < FLASH_TILE; c++) {
                float e = c <= last ? expf(s[r * FLASH_LDS + c] * scale - mx) : 0.0f;
                p[r * FLASH_LDP + c] = to_fX(e);
                sum += e;
            }
            alpha[r] = expf(m_run[r] - mx);  // 0 on the first tile (m_run = -inf, mx finite)
            l_run[r] = l_run[r] * alpha[r] + sum;
            m_run[r] = mx;
        }
        __syncthreads();
        for (int i = threadIdx.x; i < FLASH_TILE * HS; i += blockDim.x) { o[i / HS * ldo + i % HS] *= alpha[i / HS]; }
        __syncthreads();
        flash_mm<false, false>(o, ldo, p, FLASH_LDP, v, ldx, FLASH_TILE, HS, FLASH_TILE, true);  // O += P V
    }
    __syncthreads();
    flash_store(out + (size_t)b * T * C + h * HS, C, o, ldo, l_run, q0, T, HS);
    for (int r = threadIdx.x; r < FLASH_TILE && q0 + r < T; r += blockDim.x) {
        lse[((size_t)b * NH + h) * T + q0 + r] = m_run[r] + logf(l_run[r]);
    }
}

// dsum (B,NH,T) = sum_d dout . out over each head's row; one thread per row, summed in d order
__global__ void flash_attention_dsum_kernel(float* dsum, const floatX* dout, const floatX* out, int B, int T, int NH,
                                            int HS) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;  // (b, h, t)
    if (i >= B * NH * T) { return; }
    int t = i % T, h = (i / T) % NH, b = i / (T * NH);
    size_t o = ((size_t)b * T + t) * NH * HS + (size_t)h * HS;
    float s = 0.0f;
    for (int d = 0; d < HS; d++) { s += to_f32(dout[o + d]) * to_f32(out[o + d]); }
    dsum[i] = s;
}

__global__ void __launch_bounds__(FLASH_THREADS) flash_attention_dkdv_kernel(floatX* dinp, const floatX* dout,
                                                                             const floatX* inp, const float* lse,
                                                                             const float* dsum, int T, int NH,
                                                                             int HS, float scale) {
    extern __shared__ __align__(128) unsigned char flash_smem[];
    int kt = blockIdx.x, h = blockIdx.y, b = blockIdx.z, C = NH * HS, ldx = FLASH_LDX(HS), ldo = FLASH_LDO(HS);
    size_t stride = (size_t)3 * C;
    const floatX* base = inp + (size_t)b * T * stride + h * HS;
    const floatX* dbase = dout + (size_t)b * T * C + h * HS;
    const float* lse_bh = lse + ((size_t)b * NH + h) * T;
    const float* dsum_bh = dsum + ((size_t)b * NH + h) * T;
    floatX* k = (floatX*)flash_smem;
    floatX* v = k + FLASH_TILE * ldx;
    floatX* q = v + FLASH_TILE * ldx;
    floatX* dy = q + FLASH_TILE * ldx;
    floatX* p = dy + FLASH_TILE * ldx;
    floatX* ds = p + FLASH_TILE * FLASH_LDP;
    float* s = (float*)(ds + FLASH_TILE * FLASH_LDP);
    float* dp = s + FLASH_TILE * FLASH_LDS;
    float* dk = dp + FLASH_TILE * FLASH_LDS;
    float* dv = dk + FLASH_TILE * ldo;
    float* lse_s = dv + FLASH_TILE * ldo;
    float* dsum_s = lse_s + FLASH_TILE;
    int k0 = kt * FLASH_TILE;
    flash_load(k, ldx, base + C, stride, k0, T, HS);
    flash_load(v, ldx, base + 2 * C, stride, k0, T, HS);
    flash_zero(dk, ldo, HS);
    flash_zero(dv, ldo, HS);
    for (int qt = kt; qt < gridDim.x; qt++) {  // in order: the fixed summation order of dK and dV
        int q0 = qt * FLASH_TILE;
        __syncthreads();  // the previous tile's q, dy, p, ds are consumed
        flash_load(q, ldx, base, stride, q0, T, HS);
        flash_load(dy, ldx, dbase, C, q0, T, HS);
        for (int r = threadIdx.x; r < FLASH_TILE; r += blockDim.x) {
            lse_s[r] = q0 + r < T ? lse_bh[q0 + r] : 0.0f;
            dsum_s[r] = q0 + r < T ? dsum_bh[q0 + r] : 0.0f;
        }
        __syncthreads();
        flash_mm<false, true>(s, FLASH_LDS, q, ldx, k, ldx, FLASH_TILE, FLASH_TILE, HS, false);    // S = Q K^T
        flash_mm<false, true>(dp, FLASH_LDS, dy, ldx, v, ldx, FLASH_TILE, FLASH_TILE, HS, false);  // dP = dO V^T
        __syncthreads();
        flash_probs(p, ds, s, dp, lse_s, dsum_s, q0, k0, T, scale);
        __syncthreads();
        flash_mm<true, false>(dv, ldo, p, FLASH_LDP, dy, ldx, FLASH_TILE, HS, FLASH_TILE, true);  // dV += P^T dO
        flash_mm<true, false>(dk, ldo, ds, FLASH_LDP, q, ldx, FLASH_TILE, HS, FLASH_TILE, true);  // dK += dS^T Q
    }
    __syncthreads();
    floatX* dbase_in = dinp + (size_t)b * T * stride + h * HS;
    flash_store(dbase_in + C, stride, dk, ldo, NULL, k0, T, HS);
    flash_store(dbase_in + 2 * C, stride, dv, ldo, NULL, k0, T, HS);
}

__global__ void __launch_bounds__(FLASH_THREADS) flash_attention_dq_kernel(floatX* dinp, const floatX* dout,
                                                                           const floatX* inp, const float* lse,
                                                                           const float* dsum, int T, int NH, int HS,
                                                                           float scale) {
    extern __shared__ __align__(128) unsigned char flash_smem[];
    int qt = gridDim.x - 1 - blockIdx.x;  // the longest rows first
    int h = blockIdx.y, b = blockIdx.z, C = NH * HS, ldx = FLASH_LDX(HS), ldo = FLASH_LDO(HS);
    size_t stride = (size_t)3 * C;
    const floatX* base = inp + (size_t)b * T * stride + h * HS;
    const float* lse_bh = lse + ((size_t)b * NH + h) * T;
    const float* dsum_bh = dsum + ((size_t)b * NH + h) * T;
    floatX* q = (floatX*)flash_smem;
    floatX* dy = q + FLASH_TILE * ldx;
    floatX* k = dy + FLASH_TILE * ldx;
    floatX* v = k + FLASH_TILE * ldx;
    floatX* ds = v + FLASH_TILE * ldx;
    float* s = (float*)(ds + FLASH_TILE * FLASH_LDP);
    float* dp = s + FLASH_TILE * FLASH_LDS;
    float* dq = dp + FLASH_TILE * FLASH_LDS;
    float* lse_s = dq + FLASH_TILE * ldo;
    float* dsum_s = lse_s + FLASH_TILE;
    int q0 = qt * FLASH_TILE;
    flash_load(q, ldx, base, stride, q0, T, HS);
    flash_load(dy, ldx, dout + (size_t)b * T * C + h * HS, C, q0, T, HS);
    flash_zero(dq, ldo, HS);
    for (int r = threadIdx.x; r < FLASH_TILE; r += blockDim.x) {
        lse_s[r] = q0 + r < T ? lse_bh[q0 + r] : 0.0f;
        dsum_s[r] = q0 + r < T ? dsum_bh[q0 + r] : 0.0f;
    }
    for (int kt = 0; kt <= qt; kt++) {
        int k0 = kt * FLASH_TILE;
        __syncthreads();  // the previous tile's k, v, ds are consumed
        flash_load(k, ldx, base + C, stride, k0, T, HS);
        flash_load(v, ldx, base + 2 * C, stride, k0, T, HS);
        __syncthreads();
        flash_mm<false, true>(s, FLASH_LDS, q, ldx, k, ldx, FLASH_TILE, FLASH_TILE, HS, false);    // S = Q K^T
        flash_mm<false, true>(dp, FLASH_LDS, dy, ldx, v, ldx, FLASH_TILE, FLASH_TILE, HS, false);  // dP = dO V^T
        __syncthreads();
        flash_probs(NULL, ds, s, dp, lse_s, dsum_s, q0, k0, T, scale);
        __syncthreads();
        flash_mm<false, false>(dq, ldo, ds, FLASH_LDP, k, ldx, FLASH_TILE, HS, FLASH_TILE, true);  // dQ += dS K
    }
    __syncthreads();
    flash_store(dinp + (size_t)b * T * stride + h * HS, stride, dq, ldo, NULL, q0, T, HS);
}

// ----------------------------------------------------------------------------
// host functions

inline size_t flash_smem_bytes(int HS, int n_x, int n_p, int n_s, int n_o, int n_row) {
    return (size_t)FLASH_TILE * (n_x * FLASH_LDX(HS) * sizeof(floatX) + n_p * FLASH_LDP * sizeof(floatX) +
                                 (n_s * FLASH_LDS + n_o * FLASH_LDO(HS) + n_row) * sizeof(float));
}

inline int flash_head_size(int C, int NH) {
    int HS = C / NH;
    if (HS * NH != C || HS % 16 != 0 || HS > 256) { fatal("flash attention: head size C/NH = %d/%d must be a multiple of 16, at most 256", C, NH); }
    return HS;
}

inline void flash_attention_forward(floatX* out, float* lse, const floatX* inp, int B, int T, int C, int NH,
                                    cudaStream_t stream) {
    if (B * T == 0) { return; }
    int HS = flash_head_size(C, NH);
    size_t smem = flash_smem_bytes(HS, 3, 1, 1, 1, 3);
    cudaCheck(cudaFuncSetAttribute(flash_attention_forward_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid(CEIL_DIV(T, FLASH_TILE), NH, B);
    flash_attention_forward_kernel<<<grid, FLASH_THREADS, smem, stream>>>(out, lse, inp, T, NH, HS, 1.0f / sqrtf((float)HS));
    cudaKernelCheck();
}

inline void flash_attention_backward(floatX* dinp, float* scratch, const floatX* dout, const floatX* inp,
                                     const floatX* out, const float* lse, int B, int T, int C, int NH,
                                     cudaStream_t stream) {
    if (B * T == 0) { return; }
    int HS = flash_head_size(C, NH);
    float scale = 1.0f / sqrtf((float)HS);
    int rows = B * NH * T;
    flash_attention_dsum_kernel<<<CEIL_DIV(rows, 256), 256, 0, stream>>>(scratch, dout, out, B, T, NH, HS);
    cudaKernelCheck();
    dim3 grid(CEIL_DIV(T, FLASH_TILE), NH, B);
    size_t smem = flash_smem_bytes(HS, 4, 2, 2, 2, 2);
    cudaCheck(cudaFuncSetAttribute(flash_attention_dkdv_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    flash_attention_dkdv_kernel<<<grid, FLASH_THREADS, smem, stream>>>(dinp, dout, inp, lse, scratch, T, NH, HS, scale);
    cudaKernelCheck();
    smem = flash_smem_bytes(HS, 4, 1, 2, 1, 2);
    cudaCheck(cudaFuncSetAttribute(flash_attention_dq_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    flash_attention_dq_kernel<<<grid, FLASH_THREADS, smem, stream>>>(dinp, dout, inp, lse, scratch, T, NH, HS, scale);
    cudaKernelCheck();
}
