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
//     (compiled without FMA contraction, as gcc -std=c11 does). n may be anything; any alignment.
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

__global__ void adamw_kernel(floatX* params, float* master, const float* grads, float* m_mem, float* v_mem, size_t n,
                             float lr, float beta1, float beta2, float beta1_correction, float beta2_correction,
                             float eps, float weight_decay, float grad_scale) {
    float one_minus_beta1 = 1.0f - beta1;
    float one_minus_beta2 = 1.0f - beta2;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float g = __fmul_rn(grads[i], grad_scale);
        float m = __fadd_rn(__fmul_rn(beta1, m_mem[i]), __fmul_rn(one_minus_beta1, g));
        float v = __fadd_rn(__fmul_rn(beta2, v_mem[i]), __fmul_rn(__fmul_rn(one_minus_beta2, g), g));
        m_mem[i] = m;
        v_mem[i] = v;
        float m_hat = adamw_div_rn(m, beta1_correction);
        float v_hat = adamw_div_rn(v, beta2_correction);
        float p = master ? master[i] : to_f32(params[i]);
        float step = __fadd_rn(adamw_div_rn(m_hat, __fadd_rn(adamw_sqrt_rn(v_hat), eps)), __fmul_rn(weight_decay, p));
        p = __fadd_rn(p, -__fmul_rn(lr, step));
        if (master) { master[i] = p; }
        params[i] = to_fX(p);
    }
}

inline void adamw_update(floatX* params, float* master, const float* grads, float* m, float* v, size_t n,
                         float lr, float beta1, float beta2, float beta1_correction, float beta2_correction,
                         float eps, float weight_decay, float grad_scale, cudaStream_t stream) {
    if (n == 0) { return; }
    adamw_kernel<<<elementwise_blocks(n), ELEMENTWISE_BLOCK, 0, stream>>>(params, master, grads, m, v, n, lr, beta1,
                                                                          beta2, beta1_correction, beta2_correction,
                                                                          eps, weight_decay, grad_scale);
    cudaKernelCheck();
}
