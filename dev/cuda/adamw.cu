// Test of adamw_update (llmc/adamw.cuh).
// Build and run: make -f dev/cuda/cuda.mk test_cuda_kernels, or on a GPU
//   nvcc -std=c++17 -O3 -DENABLE_BF16 dev/cuda/adamw.cu -o adamw -lcublas -lcublasLt
//
// Reference: train_gpt2_pp.c's stage_adamw loop body, in fp32, compiled without FMA contraction
// (-ffp-contract=off, as gcc -std=c11 compiles the CPU trainer). Tolerance: ZERO in every precision. The
// kernel performs the same IEEE fp32 operations in the same order (explicit __fmul_rn/__fadd_rn, IEEE
// division and sqrt), so m, v and the fp32 master weights must be bitwise equal to the CPU's after every
// step, and the floatX params bitwise equal to round-to-nearest-even(master). Without a master copy
// (master == NULL) the update reads the floatX params and rounds its result: bitwise to_fX(CPU(p)).
// Three steps (t = 1, 2, 3) with weight decay, a grad scale (clip factor) and n not a multiple of any block.
#include "common.h"
#include "../../llmc/adamw.cuh"

static void adamw_cpu(float* p, const float* g, float* m, float* v, size_t n, float lr, float beta1, float beta2,
                      float bc1, float bc2, float eps, float wd, float grad_scale) {
    for (size_t j = 0; j < n; j++) {
        float grad = g[j] * grad_scale;
        m[j] = beta1 * m[j] + (1.0f - beta1) * grad;
        v[j] = beta2 * v[j] + (1.0f - beta2) * grad * grad;
        float m_hat = m[j] / bc1;
        float v_hat = v[j] / bc2;
        p[j] -= lr * (m_hat / (sqrtf(v_hat) + eps) + wd * p[j]);
    }
}

int main(void) {
    print_header("adamw");
    size_t n = 10007;
    float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, wd = 0.1f, grad_scale = 0.7f;
    Rng rng(1);
    std::vector<float> master = rng.vec(n, -1.0f, 1.0f), m(n, 0.0f), v(n, 0.0f);
    std::vector<float> params_x(master);
    round_fX(params_x);  // the no-master path's parameters
    std::vector<floatX> params(n);
    for (size_t i = 0; i < n; i++) { params[i] = to_fX(master[i]); }
    floatX* d_params = to_device(params);
    float* d_master = to_device(master);
    float* d_m = to_device(m);
    float* d_v = to_device(v);
    floatX* d_params2 = to_device(params);  // master == NULL
    float* d_m2 = to_device(m);
    float* d_v2 = to_device(v);
    std::vector<float> m2(m), v2(v);
    float* d_grads = dmalloc<float>(n);
    for (int t = 1; t <= 3; t++) {
        printf(" step %d\n", t);
        std::vector<float> grads = rng.vec(n, -2.0f, 2.0f);
        for (size_t i = 0; i < n; i += 97) { grads[i] *= 1e-4f; }  // a spread of magnitudes
        cudaCheck(cudaMemcpy(d_grads, grads.data(), n * sizeof(float), cudaMemcpyHostToDevice));
        float bc1 = 1.0f - powf(beta1, (float)t), bc2 = 1.0f - powf(beta2, (float)t);
        adamw_update(d_params, d_master, d_grads, d_m, d_v, n, lr, beta1, beta2, bc1, bc2, eps, wd, grad_scale, 0);
        adamw_update(d_params2, NULL, d_grads, d_m2, d_v2, n, lr, beta1, beta2, bc1, bc2, eps, wd, grad_scale, 0);
        adamw_cpu(master.data(), grads.data(), m.data(), v.data(), n, lr, beta1, beta2, bc1, bc2, eps, wd, grad_scale);
        adamw_cpu(params_x.data(), grads.data(), m2.data(), v2.data(), n, lr, beta1, beta2, bc1, bc2, eps, wd, grad_scale);
        round_fX(params_x);
        std::vector<floatX> params_ref(n), params2_ref(n);
        for (size_t i = 0; i < n; i++) { params_ref[i] = to_fX(master[i]); params2_ref[i] = to_fX(params_x[i]); }
        bitwise_equal("master (fp32)", master, from_device(d_master, n));
        bitwise_equal("m", m, from_device(d_m, n));
        bitwise_equal("v", v, from_device(d_v, n));
        bitwise_equal("params = to_fX(master)", params_ref, from_device(d_params, n));
        bitwise_equal("no master: params", params2_ref, from_device(d_params2, n));
        bitwise_equal("no master: m", m2, from_device(d_m2, n));
    }
    // the values did move
    std::vector<float> p_now = from_device_x(d_params, n);
    size_t moved = 0;
    for (size_t i = 0; i < n; i++) { moved += p_now[i] != to_f32(params[i]); }
    check(moved > n / 2, "%zu of %zu params changed over 3 steps", moved, n);

#if defined(SIMT_CPU)
    size_t bn = 100000;
#else
    size_t bn = 124475904;  // GPT-2 124M
#endif
    floatX* bp = dmalloc<floatX>(bn);
    float* bmaster = dmalloc<float>(bn);
    float* bg = dmalloc<float>(bn);
    float* bm = dmalloc<float>(bn);
    float* bv = dmalloc<float>(bn);
    cudaCheck(cudaMemset(bmaster, 0, bn * sizeof(float)));
    cudaCheck(cudaMemset(bg, 0, bn * sizeof(float)));
    cudaCheck(cudaMemset(bm, 0, bn * sizeof(float)));
    cudaCheck(cudaMemset(bv, 0, bn * sizeof(float)));
    float ms = benchmark_ms(BENCH_REPEATS, [&]() {
        adamw_update(bp, bmaster, bg, bm, bv, bn, lr, beta1, beta2, 0.1f, 0.05f, eps, wd, 1.0f, 0);
    });
    printf("  bench n=%zu with master weights: %.4f ms, %.1f GB/s\n", bn, ms,
           (double)bn * (4 * 4 + 3 * 4 + sizeof(floatX)) / (ms * 1e6));
    cudaCheck(cudaFree(d_params)); cudaCheck(cudaFree(d_master)); cudaCheck(cudaFree(d_m)); cudaCheck(cudaFree(d_v));
    cudaCheck(cudaFree(d_params2)); cudaCheck(cudaFree(d_m2)); cudaCheck(cudaFree(d_v2)); cudaCheck(cudaFree(d_grads));
    cudaCheck(cudaFree(bp)); cudaCheck(cudaFree(bmaster)); cudaCheck(cudaFree(bg)); cudaCheck(cudaFree(bm));
    cudaCheck(cudaFree(bv));
    return test_summary();
}
