// Test of layernorm_backward (llmc/layernorm.cuh): dinp += ..., dweight += ..., dbias += ... (fp32).
// Build and run: make -f dev/cuda/cuda.mk test_cuda_kernels, or on a GPU
//   nvcc -std=c++17 -O3 -DENABLE_BF16 dev/cuda/layernorm_backward.cu -o layernorm_backward -lcublas -lcublasLt
//
// Reference: train_gpt2_pp.c's layernorm_backward in double, on floatX-rounded dout/inp/weight and the fp32
// mean/rstd the kernel is given; the gradients start from random values (they accumulate). Tolerances are
// a-priori error bounds evaluated per element (u = U_32 = 2^-24, uX |x| = ROUND_FX(x) of common.h):
//   dweight[c]  fp32 sum of N terms (x-m)*s*d (3 roundings each) in any order, plus the add into the old
//               value:                              (N + 4) u * (sum_n |(x-m) s d| + |dweight_old|)
//   dbias[c]                                        (N + 2) u * (sum_n |d| + |dbias_old|)
//   dweight and dbias are fp32 in every precision, so these bounds do not depend on floatX.
//   dinp        g = (w d - mean(w d) - norm * mean(w d norm)) * s with both means fp32 sums over C:
//               (C + 8) u * s * (|w d| + mean|w d| + |norm| mean|w d norm| + |norm mean(w d norm)|),
//               then dinp_old + g in fp32 (u) and ONE rounding to floatX:  + u |dinp_old + g| + uX |result|
// Blocks: N = 64 (4 blocks), 600 (38), 2000 (125), 3000 (the cap of 128, 24 rows each, the last ones empty):
// the partial rows and the last block's fixed-order reduction are exercised; C = 50 is not a multiple of the
// 128-bit width (the scalar path), C = 1600 (GPT-2 XL) has several warps per row; a second run from the same
// state must give identical bits.
#include "common.h"
#include "../../llmc/layernorm.cuh"

static void run_case(int N, int C, uint64_t seed) {
    printf(" case N=%d C=%d (%d blocks)\n", N, C, layernorm_backward_blocks(N));
    Rng rng(seed);
    std::vector<float> x = rng.vec((size_t)N * C, -2.0f, 2.0f), dout = rng.vec((size_t)N * C, -1.0f, 1.0f);
    std::vector<float> w = rng.vec(C, 0.5f, 1.5f);
    std::vector<float> dinp0 = rng.vec((size_t)N * C, -1.0f, 1.0f);
    std::vector<float> dw0 = rng.vec(C, -1.0f, 1.0f), db0 = rng.vec(C, -1.0f, 1.0f);
    round_fX(x); round_fX(dout); round_fX(w); round_fX(dinp0);
    std::vector<float> mean(N), rstd(N);
    for (int n = 0; n < N; n++) {
        double m = 0.0, v = 0.0;
        for (int i = 0; i < C; i++) { m += x[(size_t)n * C + i]; }
        m /= C;
        for (int i = 0; i < C; i++) { double d = x[(size_t)n * C + i] - m; v += d * d; }
        mean[n] = (float)m;
        rstd[n] = (float)(1.0 / sqrt(v / C + 1e-5));
    }

    // reference and bounds
    std::vector<double> dinp_ref((size_t)N * C), dinp_tol((size_t)N * C);
    std::vector<double> dw_ref(C), db_ref(C), dw_abs(C, 0.0), db_abs(C, 0.0);
    for (int c = 0; c < C; c++) { dw_ref[c] = dw0[c]; db_ref[c] = db0[c]; }
    for (int n = 0; n < N; n++) {
        const float* d = &dout[(size_t)n * C];
        const float* xr = &x[(size_t)n * C];
        double m = mean[n], s = rstd[n];
        double dnm = 0.0, dnnm = 0.0, dnm_abs = 0.0, dnnm_abs = 0.0;
        for (int i = 0; i < C; i++) {
            double dn = (double)w[i] * d[i], norm = (xr[i] - m) * s;
            dnm += dn; dnnm += dn * norm;
            dnm_abs += fabs(dn); dnnm_abs += fabs(dn * norm);
        }
        dnm /= C; dnnm /= C; dnm_abs /= C; dnnm_abs /= C;
        for (int i = 0; i < C; i++) {
            size_t k = (size_t)n * C + i;
            double dn = (double)w[i] * d[i], norm = (xr[i] - m) * s;
            double g = (dn - dnm - norm * dnnm) * s;
            double r = dinp0[k] + g;
            dinp_ref[k] = r;
            dinp_tol[k] = (C + 8) * U_32 * s * (fabs(dn) + dnm_abs + fabs(norm) * dnnm_abs + fabs(norm * dnnm)) +
                          U_32 * fabs(r) + ROUND_FX(r);
            dw_ref[i] += norm * d[i];
            db_ref[i] += d[i];
            dw_abs[i] += fabs(norm * d[i]);
            db_abs[i] += fabs(d[i]);
        }
    }
    std::vector<double> dw_tol(C), db_tol(C);
    for (int c = 0; c < C; c++) {
        dw_tol[c] = (N + 4) * U_32 * (dw_abs[c] + fabs(dw0[c]));
        db_tol[c] = (N + 2) * U_32 * (db_abs[c] + fabs(db0[c]));
    }

    floatX* d_x = to_device_x(x);
    floatX* d_dout = to_device_x(dout);
    floatX* d_w = to_device_x(w);
    floatX* d_dinp = to_device_x(dinp0);
    float* d_mean = to_device(mean);
    float* d_rstd = to_device(rstd);
    float* d_dw = to_device(dw0);
    float* d_db = to_device(db0);
    float* d_scratch = dmalloc<float>(LAYERNORM_BACKWARD_SCRATCH_FLOATS(C));
    layernorm_backward(d_dinp, d_dw, d_db, d_scratch, d_dout, d_x, d_w, d_mean, d_rstd, N, C, 0);
    std::vector<float> dinp = from_device_x(d_dinp, dinp_ref.size());
    std::vector<float> dw = from_device(d_dw, C), db = from_device(d_db, C);
    validate("dinp (N,C) +=", dinp, dinp_ref, dinp_tol);
    validate("dweight (C) += (fp32)", dw, dw_ref, dw_tol);
    validate("dbias (C) += (fp32)", db, db_ref, db_tol);

    // determinism: the same accumulation again from the same starting point
    std::vector<floatX> dinp_bits = from_device(d_dinp, dinp_ref.size());
    copy_to_device_x(d_dinp, dinp0);
    cudaCheck(cudaMemcpy(d_dw, dw0.data(), C * sizeof(float), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(d_db, db0.data(), C * sizeof(float), cudaMemcpyHostToDevice));
    layernorm_backward(d_dinp, d_dw, d_db, d_scratch, d_dout, d_x, d_w, d_mean, d_rstd, N, C, 0);
    bitwise_equal("dinp, run 2", dinp_bits, from_device(d_dinp, dinp_ref.size()));
    bitwise_equal("dweight, run 2", dw, from_device(d_dw, C));
    bitwise_equal("dbias, run 2", db, from_device(d_db, C));

    cudaCheck(cudaFree(d_x)); cudaCheck(cudaFree(d_dout)); cudaCheck(cudaFree(d_w)); cudaCheck(cudaFree(d_dinp));
    cudaCheck(cudaFree(d_mean)); cudaCheck(cudaFree(d_rstd)); cudaCheck(cudaFree(d_dw)); cudaCheck(cudaFree(d_db));
    cudaCheck(cudaFree(d_scratch));
}

int main(void) {
    print_header("layernorm_backward");
    run_case(64, 96, 1);
    run_case(600, 64, 2);
    run_case(2000, 40, 3);
    run_case(16, 768, 4);
    run_case(3000, 16, 5);
    run_case(70, 50, 6);
    run_case(24, 1600, 7);

#if defined(SIMT_CPU)
    int bN = 64, bC = 128;
#else
    int bN = 8 * 1024, bC = 768;
#endif
    floatX* x = dmalloc<floatX>((size_t)bN * bC);
    floatX* dout = dmalloc<floatX>((size_t)bN * bC);
    floatX* dinp = dmalloc<floatX>((size_t)bN * bC);
    floatX* w = dmalloc<floatX>(bC);
    float* mean = dmalloc<float>(bN);
    float* rstd = dmalloc<float>(bN);
    float* dw = dmalloc<float>(bC);
    float* db = dmalloc<float>(bC);
    float* scratch = dmalloc<float>(LAYERNORM_BACKWARD_SCRATCH_FLOATS(bC));
    cudaCheck(cudaMemset(x, 0, (size_t)bN * bC * sizeof(floatX)));
    cudaCheck(cudaMemset(dout, 0, (size_t)bN * bC * sizeof(floatX)));
    cudaCheck(cudaMemset(dinp, 0, (size_t)bN * bC * sizeof(floatX)));
    cudaCheck(cudaMemset(w, 0, bC * sizeof(floatX)));
    cudaCheck(cudaMemset(mean, 0, bN * sizeof(float)));
    cudaCheck(cudaMemset(rstd, 0, bN * sizeof(float)));
    cudaCheck(cudaMemset(dw, 0, bC * sizeof(float)));
    cudaCheck(cudaMemset(db, 0, bC * sizeof(float)));
    float ms = benchmark_ms(BENCH_REPEATS, [&]() {
        layernorm_backward(dinp, dw, db, scratch, dout, x, w, mean, rstd, bN, bC, 0);
    });
    printf("  bench N=%d C=%d: %.4f ms, %.1f GB/s (dout and inp read, dinp read and written)\n", bN, bC, ms,
           4.0 * bN * bC * sizeof(floatX) / (ms * 1e6));
    cudaCheck(cudaFree(x)); cudaCheck(cudaFree(dout)); cudaCheck(cudaFree(dinp)); cudaCheck(cudaFree(w));
    cudaCheck(cudaFree(mean)); cudaCheck(cudaFree(rstd)); cudaCheck(cudaFree(dw)); cudaCheck(cudaFree(db));
    cudaCheck(cudaFree(scratch));
    return test_summary();
}
