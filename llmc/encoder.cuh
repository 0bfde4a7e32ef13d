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
//             Grid: B*T blocks of min(256, C rounded up to 32) threads.
//     No aliasing between dwte, dwpe and dout.
#pragma once
#include "cuda_common.h"
#include "cuda_utils.cuh"

#define ENCODER_WTE_BWD_MAX_BLOCK 256
#define ENCODER_WTE_BWD_UNROLL 8

__global__ void encoder_forward_kernel(floatX* out, const int* inp, const floatX* wte, const floatX* wpe,
                                       int B, int T, int C) {
    size_t n = (size_t)B * T * C;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        size_t bt = i / C;
        int c = (int)(i % C);
        int t = (int)(bt % T);
        int token = inp[bt];
        out[i] = to_fX(to_f32(wte[(size_t)token * C + c]) + to_f32(wpe[(size_t)t * C + c]));
    }
}

// one thread per (t,c), summing over b in order
__global__ void wpe_backward_kernel(float* dwpe, const floatX* dout, int B, int T, int C) {
    size_t n = (size_t)T * C;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float acc = dwpe[i];
        for (int b = 0; b < B; b++) { acc += to_f32(dout[(size_t)b * n + i]); }
        dwpe[i] = acc;
    }
}

// One block per position; see the header comment. blockDim.x: a multiple of 32, <= ENCODER_WTE_BWD_MAX_BLOCK.
// Positions are scanned in super-chunks of ENCODER_WTE_BWD_UNROLL * blockDim.x (one barrier each), and only
// a super-chunk that holds the token is walked chunk by chunk with ballots.
__global__ void wte_backward_kernel(float* dwte, const floatX* dout, const int* inp, int BT, int C) {
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
                for (int c = threadIdx.x; c < C; c += blockDim.x) {
                    float acc = drow[c];
                    for (int w = 0; w < num_warps; w++) {
                        unsigned mm = match_mask[w];
                        while (mm) {
                            int b = __ffs((int)mm) - 1;
                            mm &= mm - 1;
                            acc += to_f32(dout[(size_t)(j0 + w * WARP_SIZE + b) * C + c]);
                        }
                    }
                    drow[c] = acc;
                }
                __syncthreads();  // match_mask is rewritten in the next chunk
            }
        }
    }
}

inline void encoder_forward(floatX* out, const int* inp, const floatX* wte, const floatX* wpe,
                            int B, int T, int C, cudaStream_t stream) {
    size_t n = (size_t)B * T * C;
    if (n == 0) { return; }
    encoder_forward_kernel<<<elementwise_blocks(n), ELEMENTWISE_BLOCK, 0, stream>>>(out, inp, wte, wpe, B, T, C);
    cudaKernelCheck();
}

inline void encoder_backward(float* dwte, float* dwpe, const floatX* dout, const int* inp,
                             int B, int T, int C, cudaStream_t stream) {
    if (B * T == 0 || C == 0) { return; }
    size_t n = (size_t)T * C;
    wpe_backward_kernel<<<elementwise_blocks(n), ELEMENTWISE_BLOCK, 0, stream>>>(dwpe, dout, B, T, C);
    cudaKernelCheck();
    // the summation order does not depend on the block size, so it can follow C
    int block = CEIL_DIV(C, WARP_SIZE) * WARP_SIZE;
    if (block > ENCODER_WTE_BWD_MAX_BLOCK) { block = ENCODER_WTE_BWD_MAX_BLOCK; }
    wte_backward_kernel<<<B * T, block, 0, stream>>>(dwte, dout, inp, B * T, C);
    cudaKernelCheck();
}
