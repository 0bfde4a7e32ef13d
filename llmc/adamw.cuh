// adamw.cuh -- the AdamW update, on fp32 master weights, writing the floatX parameters.
//
// void adamw_update(floatX* params, float* master, const float* grads, float* m, float* v, size_t n,
//                   float lr, float beta1, float beta2, float beta1_correction, float beta2_correction,
//                   float eps, float weight_decay, float grad_scale, cudaStream_t stream);
//     For each of the n elements, exactly train_gpt2_pp.c's stage_adamw:
//         g = grads[i] * grad_scale
//         m = beta1*m + (1-beta1)*g
//         v = beta2*v + (1-beta2)*g*g
//         p -= lr * ((m/beta1_correction) / (sqrtf(v/beta2_correction) + eps) + weight_decay*p)
//     p is the fp32 master weight master[i]; params[i] = p rounded to floatX (round to nearest even, NOT
//     stochastic rounding: deterministic). master == NULL: p is read from and written to params (the FP32
//     build, where params are fp32; in BF16/FP16 that would lose the update, so pass a master there).
//     grads are fp32 and read only; m, v fp32 in place.
//     Pass exactly what the CPU trainer computes on the host: beta1_correction = 1.0f - powf(beta1, t),
//     beta2_correction = 1.0f - powf(beta2, t), grad_scale = clip factor / loss scale (1 if neither),
//     weight_decay = 0 for the tensors the CPU trainer does not decay.
//     Every multiply/add is an explicitly rounded __fmul_rn/__fadd_rn (never contracted into an FMA) and
//     the divisions and sqrtf are IEEE, so in FP32 the results are BITWISE those of the CPU formula
//     (compiled without FMA contraction, as gcc -std=c11 does). n may be anything; any alignment (128-bit
//     accesses when all five pointers are 16-byte aligned, scalar ones otherwise).
#pragma once
#include "cuda_common.h"
#include "cuda_utils.cuh"

// IEEE round-to-nearest operations that nvcc may not contract into FMAs. (Division and sqrtf are IEEE
// by default in nvcc unless -use_fast_math / -prec-div=false / -prec-sqrt=false; these make it explicit.)
#if defined(SIMT_CPU)
__device__ inline float adamw_div_rn(float a, float b) { return a / b; }
__device__ inline float adamw_sqrt_rn(float a) { return sqrtf(a); }
#else
__device__ inline float adamw_div_rn(float a, float b) { return __fdiv_rn(a, b); }
__device__ inline float adamw_sqrt_rn(float a) { return __fsqrt_rn(a); }
#endif

// Groups of X128 elements: one 128-bit access for params, X128 * 4 / 16 for each fp32 array.
__global__ void adamw_kernel(floatX* params, float* master, const float* grads, float* m_mem, float* v_mem, size_t n,
                             float lr, float beta1, float beta2, float beta1_correction, float beta2_correction,
                             float eps, float weight_decay, float grad_scale, bool vec) {
    float one_minus_beta1 = 1.0f - beta1;
    float one_minus_beta2 = 1.0f - beta2;
    for_each_group<X128>(n, [&](size_t i, int count) {
        float g[X128], m[X128], v[X128], p[X128];
        load_f32<X128>(g, grads + i, count, vec);
        load_f32<X128>(m, m_mem + i, count, vec);
        load_f32<X128>(v, v_mem + i, count, vec);
        if (master) { load_f32<X128>(p, master + i, count, vec); } else { load_f32<X128>(p, params + i, count, vec); }
        for (int k = 0; k < X128; k++) {
            float gk = __fmul_rn(g[k], grad_scale);
            m[k] = __fadd_rn(__fmul_rn(beta1, m[k]), __fmul_rn(one_minus_beta1, gk));
            v[k] = __fadd_rn(__fmul_rn(beta2, v[k]), __fmul_rn(__fmul_rn(one_minus_beta2, gk), gk));
            float m_hat = adamw_div_rn(m[k], beta1_correction);
            float v_hat = adamw_div_rn(v[k], beta2_correction);
            float step = __fadd_rn(adamw_div_rn(m_hat, __fadd_rn(adamw_sqrt_rn(v_hat), eps)),
                                   __fmul_rn(weight_decay, p[k]));
            p[k] = __fadd_rn(p[k], -__fmul_rn(lr, step));
        }
        store_f32<X128>(m_mem + i, m, count, vec);
        store_f32<X128>(v_mem + i, v, count, vec);
        if (master) { store_f32<X128>(master + i, p, count, vec); }
        store_f32<X128>(params + i, p, count, vec);
    });
}

inline void adamw_update(floatX* params, float* master, const float* grads, float* m, float* v, size_t n,
                         float lr, float beta1, float beta2, float beta1_correction, float beta2_correction,
                         float eps, float weight_decay, float grad_scale, cudaStream_t stream) {
    if (n == 0) { return; }
    bool vec = is_aligned16(params) && is_aligned16(master) && is_aligned16(grads) && is_aligned16(m) &&
               is_aligned16(v);
    adamw_kernel<<<elementwise_blocks_groups(n, X128), ELEMENTWISE_BLOCK, 0, stream>>>(
        params, master, grads, m, v, n, lr, beta1, beta2, beta1_correction, beta2_correction, eps, weight_decay,
        grad_scale, vec);
    cudaKernelCheck();
}
