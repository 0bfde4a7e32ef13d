// fused_classifier.cuh -- softmax cross-entropy over the vocabulary, fused with its backward pass.
//
// void fused_classifier(floatX* logits, float* losses, float dloss, const int* targets,
//                       int N, int V, int Vp, cudaStream_t stream);
//     logits (N,Vp): in: the logits (only the first V columns are used); out, if dloss != 0: overwritten in
//     place by d(loss)/d(logits) = (softmax(logits[:V]) - onehot(target)) * dloss for the first V columns and
//     0 for the padded columns V..Vp-1. dloss == 0: logits are left untouched (evaluation).
//     losses (N) = logsumexp(logits[n,:V]) - logits[n, targets[n]]   (overwritten, fp32; may be NULL)
//     targets (N) in [0, V). dloss is each position's weight in the total loss: the caller folds in
//     1/(M*B*T) and, in FP16, the loss scale.
//     One 512-thread block per row: each thread keeps an online (max, sum of exp) over its columns
//     (groups of X128 columns i = X128 tid, X128 (tid+512), ...: one 128-bit load each when Vp is a multiple
//     of X128 and logits 16-byte aligned), the pairs are merged by a warp butterfly and then warp by warp in order, so every
//     thread holds the same row max M and sum S; then each column is rewritten once. The probabilities are never
//     stored. Deterministic: nothing depends on anything but N, V, Vp.
//
// void losses_mean(double* out, const float* losses, int N, cudaStream_t stream);
//     out[0] = (losses[0] + ... + losses[N-1]) / N in double (device memory): a micro-batch's mean loss, kept on
//     the device so that a training step reads all its losses once, at its end. One block, a fixed order.
#pragma once
#include "cuda_common.h"
#include "cuda_utils.cuh"

#define FUSED_CLASSIFIER_BLOCK 512

__global__ void fused_classifier_kernel(floatX* logits, float* losses, float dloss, const int* targets,
                                        int V, int Vp, bool vec) {
    __shared__ float s_max[FUSED_CLASSIFIER_BLOCK / WARP_SIZE];
    __shared__ float s_sum[FUSED_CLASSIFIER_BLOCK / WARP_SIZE];
    int row = blockIdx.x;
    int lane = threadIdx.x % WARP_SIZE, warp = threadIdx.x / WARP_SIZE;
    int num_warps = blockDim.x / WARP_SIZE;
    floatX* x = logits + (size_t)row * Vp;
    int y = targets[row];
    // read before the barrier below: after it, other threads overwrite the row
    float x_target = threadIdx.x == 0 ? to_f32(x[y]) : 0.0f;
    float m = -INFINITY, s = 0.0f;
    for (int i = threadIdx.x * X128; i < V; i += blockDim.x * X128) {
        int count = V - i < X128 ? V - i : X128;
        float v[X128];
        load_f32<X128>(v, x + i, count, vec);
        for (int k = 0; k < count; k++) { softmax_state_add(&m, &s, v[k]); }
    }
    warp_softmax_state_merge(&m, &s);
    if (lane == 0) {
        s_max[warp] = m;
        s_sum[warp] = s;
    }
    __syncthreads();
    m = s_max[0];
    s = s_sum[0];
    for (int w = 1; w < num_warps; w++) { softmax_state_merge(&m, &s, s_max[w], s_sum[w]); }
    if (threadIdx.x == 0 && losses) { losses[row] = logf(s) - (x_target - m); }
    if (dloss != 0.0f) {
        float inv = 1.0f / s;
        for (int i = threadIdx.x * X128; i < Vp; i += blockDim.x * X128) {
            int count = Vp - i < X128 ? Vp - i : X128;
            float v[X128];
            load_f32<X128>(v, x + i, count, vec);
            for (int k = 0; k < X128; k++) {
                v[k] = i + k < V ? (expf(v[k] - m) * inv - (i + k == y ? 1.0f : 0.0f)) * dloss : 0.0f;
            }
            store_f32<X128>(x + i, v, count, vec);
        }
    }
}

inline void fused_classifier(floatX* logits, float* losses, float dloss, const int* targets,
                             int N, int V, int Vp, cudaStream_t stream) {
    if (N == 0) { return; }
    bool vec = Vp % X128 == 0 && is_aligned16(logits);  // every row starts 16-byte aligned
    fused_classifier_kernel<<<N, FUSED_CLASSIFIER_BLOCK, 0, stream>>>(logits, losses, dloss, targets, V, Vp, vec);
    cudaKernelCheck();
}

__global__ void losses_mean_kernel(double* out, const float* losses, int N) {
    __shared__ double smem[WARP_SIZE];
    double s = 0.0;
    for (int i = threadIdx.x; i < N; i += blockDim.x) { s += losses[i]; }
    s = block_reduce_sum_d(s, smem);
    if (threadIdx.x == 0) { out[0] = s / N; }
}

inline void losses_mean(double* out, const float* losses, int N, cudaStream_t stream) {
    losses_mean_kernel<<<1, 256, 0, stream>>>(out, losses, N);
    cudaKernelCheck();
}
