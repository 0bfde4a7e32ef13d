// encoder.cuh -- token + position embedding, forward and backward.
//
// void encoder_forward(floatX* out, const int* inp, const floatX* wte, const floatX* wpe,
//                      int B, int T, int C, cudaStream_t stream);
//     out (B,T,C) = wte[inp[b,t], :] + wpe[t, :]   (added in fp32, rounded once). inp (B,T) token ids in [0,V).
//
// void encoder_backward(float* dwte, float* dwpe, const floatX* dout, const int* inp,
//                       int B, int T, int C, cudaStream_t stream);
//     dwte (V,C) += sum over positions holding each token of dout[b,t,:];  dwpe (T,C) += sum_b dout[b,t,:].
//     fp32 accumulation; no atomics, no scratch, no host work. Deterministic, and in FP32 bitwise equal to
//     train_gpt2_pp.c's encoder_backward (same additions in the same order):
//       dwpe: one thread per (t,c) adds dout[0,t,c], dout[1,t,c], ... into dwpe[t,c] in b order.
//       dwte: one block per position i. The block first checks whether an earlier position j < i holds the
//             same token; if so it exits (block-uniform). Otherwise it is that token's only "leader" and
//             walks the positions j >= i in increasing order, blockDim at a time: a ballot marks the
//             positions holding its token, and each thread, for its channels c, adds dout[j,c] into
//             dwte[token,c] for the marked j in increasing order. So every dwte row is owned by one block
//             and summed in (b,t) order, like the CPU loop. Cost: the duplicate checks read at most
//             (B*T)^2/2 token ids (from L1/L2: about 33M int compares at B*T = 8192, 8 per thread per
//             barrier), each leader reads the ids after it once, and the dout reads are exactly B*T*C.
//             Grid: B*T blocks of min(256, C/X128 rounded up to 32) threads, X128 channels per thread.
//     Every kernel moves X128 channels per thread (128-bit accesses when C is a multiple of X128 and the
//     pointers are 16-byte aligned, scalar ones otherwise); the per-element summation orders above are unchanged.
//     No aliasing between dwte, dwpe and dout.
#pragma once
#include "cuda_common.h"
#include "cuda_utils.cuh"

#define ENCODER_WTE_BWD_MAX_BLOCK 256
#define ENCODER_WTE_BWD_UNROLL 8

// one thread per (b, t, group of X128 channels)
__global__ void encoder_forward_kernel(floatX* out, const int* inp, const floatX* wte, const floatX* wpe,
                                       int B, int T, int C, bool vec) {
    int groups = CEIL_DIV(C, X128);
    for_each_group<1>((size_t)B * T * groups, [&](size_t i, int) {
        size_t bt = i / groups;
        int c = (int)(i % groups) * X128, count = C - c < X128 ? C - c : X128;
        float x[X128], y[X128];
        load_f32<X128>(x, wte + (size_t)inp[bt] * C + c, count, vec);
        load_f32<X128>(y, wpe + (bt % T) * C + c, count, vec);
        for (int k = 0; k < X128; k++) { x[k] = x[k] + y[k]; }
        store_f32<X128>(out + bt * C + c, x, count, vec);
    });
}

// one thread per (t, group of X128 channels), summing over b in order
__global__ void wpe_backward_kernel(float* dwpe, const floatX* dout, int B, int T, int C, bool vec) {
    int groups = CEIL_DIV(C, X128);
    size_t n = (size_t)T * C;
    for_each_group<1>((size_t)T * groups, [&](size_t i, int) {
        int c = (int)(i % groups) * X128, count = C - c < X128 ? C - c : X128;
        size_t off = (i / groups) * C + c;
        float acc[X128], d[X128];
        load_f32<X128>(acc, dwpe + off, count, vec);
        for (int b = 0; b < B; b++) {
            load_f32<X128>(d, dout + b * n + off, count, vec);
            for (int k = 0; k < X128; k++) { acc[k] += d[k]; }
        }
        store_f32<X128>(dwpe + off, acc, count, vec);
    });
}

// One block per position; see the header comment. blockDim.x: a multiple of 32, <= ENCODER_WTE_BWD_MAX_BLOCK.
// Positions are scanned in super-chunks of ENCODER_WTE_BWD_UNROLL * blockDim.x (one barrier each), and only
// a super-chunk that holds the token is walked chunk by chunk with ballots.
__global__ void wte_backward_kernel(float* dwte, const floatX* dout, const int* inp, int BT, int C, bool vec) {
    __shared__ unsigned match_mask[ENCODER_WTE_BWD_MAX_BLOCK / WARP_SIZE];
    int i = blockIdx.x;
    int token = inp[i];
    int lane = threadIdx.x % WARP_SIZE, warp = threadIdx.x / WARP_SIZE;
    int num_warps = blockDim.x / WARP_SIZE;
    int super = ENCODER_WTE_BWD_UNROLL * blockDim.x;
    // 1. leader check: does an earlier position hold the same token? (the result is block-uniform)
    for (int j0 = 0; j0 < i; j0 += super) {
        int dup = 0;
        for (int k = 0; k < ENCODER_WTE_BWD_UNROLL; k++) {
            int j = j0 + k * blockDim.x + threadIdx.x;
            dup |= j < i && inp[j] == token;
        }
        if (__syncthreads_or(dup)) { return; }
    }
    // 2. the leader adds the rows of every position j >= i holding `token`, in increasing j
    float* drow = dwte + (size_t)token * C;
    for (int s0 = i; s0 < BT; s0 += super) {
        int any = 0;
        for (int k = 0; k < ENCODER_WTE_BWD_UNROLL; k++) {
            int j = s0 + k * blockDim.x + threadIdx.x;
            any |= j < BT && inp[j] == token;
        }
        if (!__syncthreads_or(any)) { continue; }
        for (int j0 = s0; j0 < s0 + super && j0 < BT; j0 += blockDim.x) {
            int j = j0 + threadIdx.x;
            int match = j < BT && inp[j] == token;
            unsigned m = __ballot_sync(0xffffffffu, match);
            if (lane == 0) { match_mask[warp] = m; }
            if (__syncthreads_or(match)) {  // also the barrier that publishes match_mask
                for (int c = threadIdx.x * X128; c < C; c += blockDim.x * X128) {
                    int count = C - c < X128 ? C - c : X128;
                    float acc[X128], d[X128];
                    load_f32<X128>(acc, drow + c, count, vec);
                    for (int w = 0; w < num_warps; w++) {
                        unsigned mm = match_mask[w];
                        while (mm) {
                            int b = __ffs((int)mm) - 1;
                            mm &= mm - 1;
                            load_f32<X128>(d, dout + (size_t)(j0 + w * WARP_SIZE + b) * C + c, count, vec);
                            for (int k = 0; k < X128; k++) { acc[k] += d[k]; }
                        }
                    }
                    store_f32<X128>(drow + c, acc, count, vec);
                }
                __syncthreads();  // match_mask is rewritten in the next chunk
            }
        }
    }
}

// 128-bit accesses need every row to start 16-byte aligned
inline bool encoder_vec(int C, const void* a, const void* b, const void* c) {
    return C % X128 == 0 && is_aligned16(a) && is_aligned16(b) && is_aligned16(c);
}

inline void encoder_forward(floatX* out, const int* inp, const floatX* wte, const floatX* wpe,
                            int B, int T, int C, cudaStream_t stream) {
    size_t n = (size_t)B * T * CEIL_DIV(C, X128);
    if (n == 0) { return; }
    encoder_forward_kernel<<<elementwise_blocks(n), ELEMENTWISE_BLOCK, 0, stream>>>(
        out, inp, wte, wpe, B, T, C, encoder_vec(C, out, wte, wpe));
    cudaKernelCheck();
}

inline void encoder_backward(float* dwte, float* dwpe, const floatX* dout, const int* inp,
                             int B, int T, int C, cudaStream_t stream) {
    if (B * T == 0 || C == 0) { return; }
    bool vec = encoder_vec(C, dwte, dwpe, dout);
    wpe_backward_kernel<<<elementwise_blocks((size_t)T * CEIL_DIV(C, X128)), ELEMENTWISE_BLOCK, 0, stream>>>(
        dwpe, dout, B, T, C, vec);
    cudaKernelCheck();
    // the summation order does not depend on the block size, so it can follow C (a thread per X128 channels)
    int block = CEIL_DIV(CEIL_DIV(C, X128), WARP_SIZE) * WARP_SIZE;
    if (block > ENCODER_WTE_BWD_MAX_BLOCK) { block = ENCODER_WTE_BWD_MAX_BLOCK; }
    wte_backward_kernel<<<B * T, block, 0, stream>>>(dwte, dout, inp, B * T, C, vec);
    cudaKernelCheck();
}
