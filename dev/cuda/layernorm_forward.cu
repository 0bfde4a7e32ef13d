// Test of layernorm_forward, residual_forward and fused_residual_layernorm_forward (llmc/layernorm.cuh).
// Build and run: make -f dev/cuda/cuda.mk test_cuda_kernels, or on a GPU
//   nvcc -std=c++17 -O3 -DENABLE_BF16 dev/cuda/layernorm_forward.cu -o layernorm_forward -lcublas -lcublasLt
//
// Reference: train_gpt2_pp.c's math in double, on the floatX-rounded inputs. Tolerances are a-priori error
// bounds evaluated per element (u = U_32 = 2^-24; uX = U_FX: 2^-24 FP32, 2^-8 BF16, 2^-11 FP16, and "uX |x|"
// stands for ROUND_FX(x) of common.h, which also adds half the FP16 subnormal spacing):
//   mean  fp32 sum of C terms (lane partial sums + a 5-step tree) then /C:      (C + 2) u * mean|x|
//   rstd  var's relative error is about (C + 4) u (squares of (x - mean) summed like the mean, plus mean's
//         error entering at second order); 1/sqrt halves it and adds 2 roundings:    (C + 8) u * rstd
//   out   s*(x-m)*w + b in fp32: the relative errors of s and of (x-m) (mean's error / |x-m|) times |s(x-m)w|,
//         plus 4 roundings of |s(x-m)w| + |b|, then ONE rounding to floatX:
//         (C + 12) u * (|s(x-m)w| + |b| + s|w| mean|x|) + uX * |out|
//   mean and rstd are fp32 outputs in every precision, so their tolerance does not depend on floatX.
// residual_forward: fp32 add of two floatX values rounded once: must equal to_fX(fl32(a + b)) exactly.
// fused_residual_layernorm_forward: must equal residual_forward + layernorm_forward bit for bit.
#include "common.h"
#include "../../llmc/layernorm.cuh"

static void run_case(int N, int C, uint64_t seed) {
    printf(" case N=%d C=%d\n", N, C);
    Rng rng(seed);
    std::vector<float> a = rng.vec((size_t)N * C, -2.0f, 2.0f), b = rng.vec((size_t)N * C, -1.0f, 1.0f);
    std::vector<float> w = rng.vec(C, 0.5f, 1.5f), bias = rng.vec(C, -0.5f, 0.5f);
    for (int i = 0; i < N; i++) { a[(size_t)i * C] += 3.0f * (i % 5); }  // rows with different means
    round_fX(a); round_fX(b); round_fX(w); round_fX(bias);
    // the residual as the device computes it: fp32 add, rounded to floatX
    std::vector<float> x((size_t)N * C);
    for (size_t i = 0; i < x.size(); i++) { x[i] = to_f32(to_fX(a[i] + b[i])); }

    // reference and bounds (double)
    std::vector<double> out_ref((size_t)N * C), mean_ref(N), rstd_ref(N);
    std::vector<double> out_tol((size_t)N * C), mean_tol(N), rstd_tol(N);
    for (int n = 0; n < N; n++) {
        const float* xr = &x[(size_t)n * C];
        double m = 0.0, mabs = 0.0;
        for (int i = 0; i < C; i++) { m += xr[i]; mabs += fabs(xr[i]); }
        m /= C; mabs /= C;
        double v = 0.0;
        for (int i = 0; i < C; i++) { v += (xr[i] - m) * (xr[i] - m); }
        v /= C;
        double s = 1.0 / sqrt(v + 1e-5);
        mean_ref[n] = m; rstd_ref[n] = s;
        mean_tol[n] = (C + 2) * U_32 * mabs;
        rstd_tol[n] = (C + 8) * U_32 * s;
        for (int i = 0; i < C; i++) {
            double nw = s * (xr[i] - m) * w[i];
            double o = nw + bias[i];
            out_ref[(size_t)n * C + i] = o;
            out_tol[(size_t)n * C + i] = (C + 12) * U_32 * (fabs(nw) + fabs(bias[i]) + s * fabs(w[i]) * mabs) + ROUND_FX(o);
        }
    }

    floatX* d_a = to_device_x(a);
    floatX* d_b = to_device_x(b);
    floatX* d_w = to_device_x(w);
    floatX* d_bias = to_device_x(bias);
    floatX* d_x = dmalloc<floatX>((size_t)N * C);
    floatX* d_out = dmalloc<floatX>((size_t)N * C);
    float* d_mean = dmalloc<float>(N);
    float* d_rstd = dmalloc<float>(N);
    residual_forward(d_x, d_a, d_b, (size_t)N * C, 0);
    validate("residual_forward", from_device_x(d_x, x.size()), x, 0.0, 0.0);
    layernorm_forward(d_out, d_mean, d_rstd, d_x, d_w, d_bias, N, C, 0);
    std::vector<float> out = from_device_x(d_out, out_ref.size());
    std::vector<float> mean = from_device(d_mean, N), rstd = from_device(d_rstd, N);
    validate("layernorm out (N,C)", out, out_ref, out_tol);
    validate("layernorm mean (N)", mean, mean_ref, mean_tol);
    validate("layernorm rstd (N)", rstd, rstd_ref, rstd_tol);

    // determinism
    std::vector<floatX> out_bits = from_device(d_out, out_ref.size());
    cudaCheck(cudaMemset(d_out, 0, out_ref.size() * sizeof(floatX)));
    layernorm_forward(d_out, d_mean, d_rstd, d_x, d_w, d_bias, N, C, 0);
    bitwise_equal("layernorm out, run 2", out_bits, from_device(d_out, out_ref.size()));

    // fused residual + layernorm == the two kernels
    floatX* d_res2 = dmalloc<floatX>((size_t)N * C);
    floatX* d_out2 = dmalloc<floatX>((size_t)N * C);
    float* d_mean2 = dmalloc<float>(N);
    float* d_rstd2 = dmalloc<float>(N);
    fused_residual_layernorm_forward(d_res2, d_out2, d_mean2, d_rstd2, d_a, d_b, d_w, d_bias, N, C, 0);
    bitwise_equal("fused: residual", from_device(d_x, x.size()), from_device(d_res2, x.size()));
    bitwise_equal("fused: out", out_bits, from_device(d_out2, out_ref.size()));
    bitwise_equal("fused: mean", mean, from_device(d_mean2, N));
    bitwise_equal("fused: rstd", rstd, from_device(d_rstd2, N));
    // in place: residual written over a
    fused_residual_layernorm_forward(d_a, d_out2, d_mean2, d_rstd2, d_a, d_b, d_w, d_bias, N, C, 0);
    bitwise_equal("fused in place (residual = a)", from_device(d_x, x.size()), from_device(d_a, x.size()));
    bitwise_equal("fused in place: out", out_bits, from_device(d_out2, out_ref.size()));

    cudaCheck(cudaFree(d_a)); cudaCheck(cudaFree(d_b)); cudaCheck(cudaFree(d_w)); cudaCheck(cudaFree(d_bias));
    cudaCheck(cudaFree(d_x)); cudaCheck(cudaFree(d_out)); cudaCheck(cudaFree(d_mean)); cudaCheck(cudaFree(d_rstd));
    cudaCheck(cudaFree(d_res2)); cudaCheck(cudaFree(d_out2)); cudaCheck(cudaFree(d_mean2)); cudaCheck(cudaFree(d_rstd2));
}

int main(void) {
    print_header("layernorm_forward");
    run_case(64, 128, 1);  // B=2, T=32
    run_case(74, 96, 2);   // rows not a multiple of 8, C not a multiple of 32
    run_case(13, 768, 3);  // GPT-2 small's width
    run_case(9, 100, 4);   // C not a multiple of the 128-bit width: the scalar path
    run_case(11, 1600, 5); // GPT-2 XL's width: 8 (BF16/FP16) or 16 (FP32) vectors per lane

#if defined(SIMT_CPU)
    int bN = 64, bC = 128;
#else
    int bN = 8 * 1024, bC = 768;
#endif
    floatX* x = dmalloc<floatX>((size_t)bN * bC);
    floatX* out = dmalloc<floatX>((size_t)bN * bC);
    floatX* w = dmalloc<floatX>(bC);
    floatX* bias = dmalloc<floatX>(bC);
    float* mean = dmalloc<float>(bN);
    float* rstd = dmalloc<float>(bN);
    cudaCheck(cudaMemset(x, 0, (size_t)bN * bC * sizeof(floatX)));
    cudaCheck(cudaMemset(w, 0, bC * sizeof(floatX)));
    cudaCheck(cudaMemset(bias, 0, bC * sizeof(floatX)));
    float ms = benchmark_ms(BENCH_REPEATS, [&]() { layernorm_forward(out, mean, rstd, x, w, bias, bN, bC, 0); });
    printf("  bench layernorm_forward N=%d C=%d: %.4f ms, %.1f GB/s\n", bN, bC, ms,
           2.0 * bN * bC * sizeof(floatX) / (ms * 1e6));
    ms = benchmark_ms(BENCH_REPEATS, [&]() { fused_residual_layernorm_forward(out, out, mean, rstd, x, x, w, bias, bN, bC, 0); });
    printf("  bench fused_residual_layernorm_forward N=%d C=%d: %.4f ms\n", bN, bC, ms);
    cudaCheck(cudaFree(x)); cudaCheck(cudaFree(out)); cudaCheck(cudaFree(w)); cudaCheck(cudaFree(bias));
    cudaCheck(cudaFree(mean)); cudaCheck(cudaFree(rstd));
    return test_summary();
}
