// Test of matmul_backward (llmc/matmul.cuh): dinp = dout @ weight [* gelu'(pre_gelu)], dweight += dout^T @ inp
// (fp32), dbias += column sums of dout (fp32, our deterministic kernel).
// Build and run: make -f dev/cuda/cuda.mk test_cuda_kernels, or on a GPU
//   nvcc -std=c++17 -O3 -DENABLE_BF16 dev/cuda/matmul_backward.cu -o matmul_backward -lcublas -lcublasLt
//
// Reference: double, on floatX-rounded inputs; dweight and dbias start from random values. Tolerances are
// a-priori bounds per element (u = U_32, uX |x| = ROUND_FX(x) of common.h); floatX products are exact in fp32 and every sum is fp32:
//   dinp[n,c]   (OC + 1) u * sum_o |dout w| + uX |dinp|                      (one rounding to floatX)
//     DGELU:    |gelu'(pre)| ((OC + 1) u sum_o |dout w| + uX |dout @ w|, the epilogue rounding it first)
//               + epilogue_gelu_grad_err(pre) |dout @ w| + uX |dinp|   (common.h: cuBLASLt on a GPU, SIMT shim)
//   dweight     (N + 2) u * (sum_n |dout inp| + |dweight_old|)               fp32 in every precision
//   dbias       (N + 2) u * (sum_n |dout| + |dbias_old|)                     fp32 in every precision
// N = 600 cuts the bias sum into 3 slices. A second run from the same state must give identical bits.
#include "common.h"
#include "../../llmc/matmul.cuh"

static double gelu_grad_d(double x) {
    double u = 0.7978845608028654 * (x + 0.044715 * x * x * x), th = tanh(u);
    return 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * x * x);
}

static void run_case(int N, int C, int OC, bool with_gelu, uint64_t seed) {
    printf(" case N=%d C=%d OC=%d dgelu=%d (bias slices %d)\n", N, C, OC, (int)with_gelu, matmul_bias_slices(N));
    Rng rng(seed);
    std::vector<float> inp = rng.vec((size_t)N * C, -1.0f, 1.0f), w = rng.vec((size_t)OC * C, -0.3f, 0.3f);
    std::vector<float> dout = rng.vec((size_t)N * OC, -1.0f, 1.0f), pre = rng.vec((size_t)N * C, -3.0f, 3.0f);
    std::vector<float> dw0 = rng.vec((size_t)OC * C, -1.0f, 1.0f), db0 = rng.vec(OC, -1.0f, 1.0f);
    round_fX(inp); round_fX(w); round_fX(dout); round_fX(pre);

    std::vector<double> dinp_ref((size_t)N * C), dinp_tol((size_t)N * C);
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < C; c++) {
            double s = 0.0, sabs = 0.0;
            for (int o = 0; o < OC; o++) {
                double p = (double)dout[(size_t)n * OC + o] * w[(size_t)o * C + c];
                s += p; sabs += fabs(p);
            }
            size_t k = (size_t)n * C + c;
            if (with_gelu) {
                double gg = gelu_grad_d(pre[k]);
                dinp_ref[k] = s * gg;
                dinp_tol[k] = fabs(gg) * ((OC + 1) * U_32 * sabs + EPILOGUE_DGELU_ROUNDS_PRODUCT * ROUND_FX(s)) +
                              epilogue_gelu_grad_err(pre[k]) * fabs(s) + ROUND_FX(s * gg);
            } else {
                dinp_ref[k] = s;
                dinp_tol[k] = (OC + 1) * U_32 * sabs + ROUND_FX(s);
            }
        }
    }
    std::vector<double> dw_ref((size_t)OC * C), dw_tol((size_t)OC * C), db_ref(OC), db_tol(OC);
    for (int o = 0; o < OC; o++) {
        for (int c = 0; c < C; c++) {
            double s = dw0[(size_t)o * C + c], sabs = fabs(s);
            for (int n = 0; n < N; n++) {
                double p = (double)dout[(size_t)n * OC + o] * inp[(size_t)n * C + c];
                s += p; sabs += fabs(p);
            }
            dw_ref[(size_t)o * C + c] = s;
            dw_tol[(size_t)o * C + c] = (N + 2) * U_32 * sabs;
        }
        double s = db0[o], sabs = fabs(s);
        for (int n = 0; n < N; n++) { s += dout[(size_t)n * OC + o]; sabs += fabs(dout[(size_t)n * OC + o]); }
        db_ref[o] = s;
        db_tol[o] = (N + 2) * U_32 * sabs;
    }

    floatX* d_inp = to_device_x(inp);
    floatX* d_w = to_device_x(w);
    floatX* d_dout = to_device_x(dout);
    floatX* d_pre = to_device_x(pre);
    floatX* d_dinp = dmalloc<floatX>((size_t)N * C);
    float* d_dw = to_device(dw0);
    float* d_db = to_device(db0);
    float* d_scratch = dmalloc<float>(MATMUL_BACKWARD_SCRATCH_FLOATS(OC));
    matmul_backward(d_dinp, d_dw, d_db, d_scratch, d_dout, d_inp, d_w, N, C, OC, with_gelu ? d_pre : NULL, 0);
    std::vector<floatX> dinp_bits = from_device(d_dinp, dinp_ref.size());
    std::vector<float> dw = from_device(d_dw, dw_ref.size()), db = from_device(d_db, OC);
    validate(with_gelu ? "dinp (N,C) with DGELU" : "dinp (N,C)", from_device_x(d_dinp, dinp_ref.size()), dinp_ref, dinp_tol);
    validate("dweight (OC,C) += (fp32)", dw, dw_ref, dw_tol);
    validate("dbias (OC) += (fp32)", db, db_ref, db_tol);

    cudaCheck(cudaMemcpy(d_dw, dw0.data(), dw0.size() * sizeof(float), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(d_db, db0.data(), db0.size() * sizeof(float), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemset(d_dinp, 0, dinp_ref.size() * sizeof(floatX)));
    matmul_backward(d_dinp, d_dw, d_db, d_scratch, d_dout, d_inp, d_w, N, C, OC, with_gelu ? d_pre : NULL, 0);
    bitwise_equal("dinp, run 2", dinp_bits, from_device(d_dinp, dinp_ref.size()));
    bitwise_equal("dweight, run 2", dw, from_device(d_dw, dw_ref.size()));
    bitwise_equal("dbias, run 2", db, from_device(d_db, OC));
    cudaCheck(cudaFree(d_inp)); cudaCheck(cudaFree(d_w)); cudaCheck(cudaFree(d_dout)); cudaCheck(cudaFree(d_pre));
    cudaCheck(cudaFree(d_dinp)); cudaCheck(cudaFree(d_dw)); cudaCheck(cudaFree(d_db)); cudaCheck(cudaFree(d_scratch));
}

int main(void) {
    print_header("matmul_backward");
    cublas_init();
    run_case(64, 64, 192, false, 1);   // qkv projection, C=64
    run_case(600, 32, 96, false, 2);   // 3 bias slices
    run_case(64, 256, 64, true, 3);    // fc-proj of a C=64 model: inp (N,4C), pre_gelu = fch (N,4C), DGELU
    run_case(37, 40, 50, false, 4);    // odd sizes

#if defined(SIMT_CPU)
    int bN = 64, bC = 64, bOC = 256;
#else
    int bN = 8 * 1024, bC = 768, bOC = 3072;
#endif
    floatX* inp = dmalloc<floatX>((size_t)bN * bC);
    floatX* w = dmalloc<floatX>((size_t)bOC * bC);
    floatX* dout = dmalloc<floatX>((size_t)bN * bOC);
    floatX* dinp = dmalloc<floatX>((size_t)bN * bC);
    float* dw = dmalloc<float>((size_t)bOC * bC);
    float* db = dmalloc<float>(bOC);
    float* scratch = dmalloc<float>(MATMUL_BACKWARD_SCRATCH_FLOATS(bOC));
    cudaCheck(cudaMemset(inp, 0, (size_t)bN * bC * sizeof(floatX)));
    cudaCheck(cudaMemset(w, 0, (size_t)bOC * bC * sizeof(floatX)));
    cudaCheck(cudaMemset(dout, 0, (size_t)bN * bOC * sizeof(floatX)));
    cudaCheck(cudaMemset(dw, 0, (size_t)bOC * bC * sizeof(float)));
    cudaCheck(cudaMemset(db, 0, bOC * sizeof(float)));
    float ms = benchmark_ms(BENCH_REPEATS, [&]() { matmul_backward(dinp, dw, db, scratch, dout, inp, w, bN, bC, bOC, NULL, 0); });
    printf("  bench N=%d C=%d OC=%d (dinp, dweight, dbias): %.4f ms, %.1f TFLOP/s\n", bN, bC, bOC, ms,
           4.0 * bN * bC * bOC / (ms * 1e9));
    ms = benchmark_ms(BENCH_REPEATS, [&]() { matmul_backward_bias(db, scratch, dout, bN, bOC, 0); });
    printf("  bench bias gradient alone: %.4f ms, %.1f GB/s\n", ms, (double)bN * bOC * sizeof(floatX) / (ms * 1e6));
    cudaCheck(cudaFree(inp)); cudaCheck(cudaFree(w)); cudaCheck(cudaFree(dout)); cudaCheck(cudaFree(dinp));
    cudaCheck(cudaFree(dw)); cudaCheck(cudaFree(db)); cudaCheck(cudaFree(scratch));
    cublas_destroy();
    return test_summary();
}
