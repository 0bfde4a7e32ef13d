// gelu.cuh -- the tanh-approximation GELU GPT-2 was trained with, forward and backward.
//
// void gelu_forward(floatX* out, const floatX* inp, size_t n, cudaStream_t stream);
//     out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), fp32 math, rounded once. out may alias inp.
//
// void gelu_backward(floatX* dinp, const floatX* inp, const floatX* dout, size_t n, cudaStream_t stream);
//     dinp = gelu'(inp) * dout. In place allowed: dinp == dout (each element is read before it is written,
//     by the same thread). inp is the pre-activation (the fc output, "fch").
// 128-bit loads and stores when the pointers are 16-byte aligned; any n and alignment work.
//
// Formulas exactly as train_gpt2_pp.c's gelu_forward/gelu_backward (tanhf differs from glibc's in the last
// bits, so FP32 results agree to ~1e-7 relative, not bitwise). For a GELU fused into the GEMMs see
// matmul_forward/matmul_backward's pre_gelu argument (matmul.cuh).
#pragma once
#include "cuda_common.h"
#include "cuda_utils.cuh"

#define GELU_SQRT_2_OVER_PI 0.7978845608028654f

__device__ inline float gelu_f32(float x) {
    return 0.5f * x * (1.0f + tanhf(GELU_SQRT_2_OVER_PI * (x + 0.044715f * x * x * x)));
}

__device__ inline float gelu_grad_f32(float x) {
    float u = GELU_SQRT_2_OVER_PI * (x + 0.044715f * x * x * x);
    float th = tanhf(u);
    float sech2 = 1.0f - th * th;
    float du = GELU_SQRT_2_OVER_PI * (1.0f + 3.0f * 0.044715f * x * x);
    return 0.5f * (1.0f + th) + 0.5f * x * sech2 * du;
}

__global__ void gelu_forward_kernel(floatX* out, const floatX* inp, size_t n, bool vec) {
    for_each_group<X128>(n, [&](size_t i, int count) {
        float x[X128];
        load_f32<X128>(x, inp + i, count, vec);
        for (int k = 0; k < X128; k++) { x[k] = gelu_f32(x[k]); }
        store_f32<X128>(out + i, x, count, vec);
    });
}

__global__ void gelu_backward_kernel(floatX* dinp, const floatX* inp, const floatX* dout, size_t n, bool vec) {
    for_each_group<X128>(n, [&](size_t i, int count) {
        float x[X128], d[X128];
        load_f32<X128>(x, inp + i, count, vec);
        load_f32<X128>(d, dout + i, count, vec);
        for (int k = 0; k < X128; k++) { x[k] = gelu_grad_f32(x[k]) * d[k]; }
        store_f32<X128>(dinp + i, x, count, vec);
    });
}

inline void gelu_forward(floatX* out, const floatX* inp, size_t n, cudaStream_t stream) {
    if (n == 0) { return; }
    gelu_forward_kernel<<<elementwise_blocks_groups(n, X128), ELEMENTWISE_BLOCK, 0, stream>>>(
        out, inp, n, is_aligned16(out) && is_aligned16(inp));
    cudaKernelCheck();
}

inline void gelu_backward(floatX* dinp, const floatX* inp, const floatX* dout, size_t n, cudaStream_t stream) {
    if (n == 0) { return; }
    gelu_backward_kernel<<<elementwise_blocks_groups(n, X128), ELEMENTWISE_BLOCK, 0, stream>>>(
        dinp, inp, dout, n, is_aligned16(dinp) && is_aligned16(inp) && is_aligned16(dout));
    cudaKernelCheck();
}
