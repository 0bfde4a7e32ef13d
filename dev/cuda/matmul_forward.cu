// Test of matmul_forward (llmc/matmul.cuh): out = inp @ weight^T + bias through cuBLASLt, optionally with
// the GELU fused (pre_gelu keeps the pre-activation).
// Build and run: make -f dev/cuda/cuda.mk test_cuda_kernels, or on a GPU
//   nvcc -std=c++17 -O3 -DENABLE_BF16 dev/cuda/matmul_forward.cu -o matmul_forward -lcublas -lcublasLt
//
// Reference: double, on floatX-rounded inputs. Tolerances are a-priori bounds per element (u = U_32,
// uX |x| = ROUND_FX(x) of common.h): floatX products are exact in fp32 and cuBLASLt accumulates in fp32 (CUBLAS_COMPUTE_32F, no
// TF32), so a dot product of C terms plus the bias is off by at most
//   (C + 2) u * (sum_c |inp w| + |bias|)
// and the single rounding to floatX adds uX * |out|.
// GELU epilogue: out = gelu(pre-activation), rounded once: |gelu'(pre)| * (the bound above [+ uX |pre| where the
// epilogue rounds the product to floatX first]) + epilogue_gelu_err(pre) + uX |out| (common.h: what cuBLASLt on
// a GPU and the SIMT shim are allowed).
// Then the cuBLASLt plan cache: see plan_cache_case.
#include "common.h"
#include "../../llmc/matmul.cuh"

static double gelu_d(double x) { return 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))); }
static double gelu_grad_d(double x) {
    double u = 0.7978845608028654 * (x + 0.044715 * x * x * x), th = tanh(u);
    return 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * x * x);
}

static void run_case(int N, int C, int OC, bool with_bias, bool with_gelu, uint64_t seed) {
    printf(" case N=%d C=%d OC=%d bias=%d gelu=%d\n", N, C, OC, (int)with_bias, (int)with_gelu);
    Rng rng(seed);
    std::vector<float> inp = rng.vec((size_t)N * C, -1.0f, 1.0f), w = rng.vec((size_t)OC * C, -0.3f, 0.3f);
    std::vector<float> bias = rng.vec(OC, -0.5f, 0.5f);
    round_fX(inp); round_fX(w); round_fX(bias);
    std::vector<double> pre_ref((size_t)N * OC), pre_tol((size_t)N * OC), out_ref((size_t)N * OC), out_tol((size_t)N * OC);
    for (int n = 0; n < N; n++) {
        for (int o = 0; o < OC; o++) {
            double s = with_bias ? bias[o] : 0.0, sabs = with_bias ? fabs(bias[o]) : 0.0;
            for (int c = 0; c < C; c++) {
                double p = (double)inp[(size_t)n * C + c] * w[(size_t)o * C + c];
                s += p; sabs += fabs(p);
            }
            size_t k = (size_t)n * OC + o;
            double acc_err = (C + 2) * U_32 * sabs;
            pre_ref[k] = s;
            pre_tol[k] = acc_err + ROUND_FX(s);
            if (with_gelu) {
                double g = gelu_d(s);
                out_ref[k] = g;
                out_tol[k] = fabs(gelu_grad_d(s)) * (acc_err + EPILOGUE_GELU_ROUNDS_PRODUCT * ROUND_FX(s)) +
                             epilogue_gelu_err(s) + ROUND_FX(g);
            } else {
                out_ref[k] = s;
                out_tol[k] = pre_tol[k];
            }
        }
    }
    floatX* d_inp = to_device_x(inp);
    floatX* d_w = to_device_x(w);
    floatX* d_bias = to_device_x(bias);
    floatX* d_out = dmalloc<floatX>((size_t)N * OC);
    floatX* d_pre = with_gelu ? dmalloc<floatX>((size_t)N * OC) : NULL;
    matmul_forward(d_out, d_inp, d_w, with_bias ? d_bias : NULL, N, C, OC, d_pre, 0);
    std::vector<floatX> out_bits = from_device(d_out, out_ref.size());
    validate(with_gelu ? "out = gelu(pre) (N,OC)" : "out (N,OC)", from_device_x(d_out, out_ref.size()), out_ref, out_tol);
    if (with_gelu) { validate("pre_gelu (N,OC)", from_device_x(d_pre, pre_ref.size()), pre_ref, pre_tol); }
    cudaCheck(cudaMemset(d_out, 0, out_ref.size() * sizeof(floatX)));
    matmul_forward(d_out, d_inp, d_w, with_bias ? d_bias : NULL, N, C, OC, d_pre, 0);
    bitwise_equal("out, run 2", out_bits, from_device(d_out, out_ref.size()));
    cudaCheck(cudaFree(d_inp)); cudaCheck(cudaFree(d_w)); cudaCheck(cudaFree(d_bias)); cudaCheck(cudaFree(d_out));
    if (d_pre) { cudaCheck(cudaFree(d_pre)); }
}

// The plan cache (matmul.cuh): the same GEMM again builds no plan and gives the same bits; on a copy of the
// weight 16 bytes past a 256-byte boundary it builds a plan of its own, since the heuristic is told each
// operand's alignment (a plan chosen for 256 bytes used there: SIMT's cublas-alignment error, and on a GPU an
// algorithm that may not support the address), and its result validates as in run_case.
static void plan_cache_case(void) {
    int N = 32, C = 64, OC = 96;
    printf(" plan cache N=%d C=%d OC=%d\n", N, C, OC);
    Rng rng(6);
    std::vector<float> inp = rng.vec((size_t)N * C, -1.0f, 1.0f), w = rng.vec((size_t)OC * C, -0.3f, 0.3f);
    round_fX(inp); round_fX(w);
    std::vector<double> ref((size_t)N * OC), tol((size_t)N * OC);
    for (int n = 0; n < N; n++) {
        for (int o = 0; o < OC; o++) {
            double s = 0.0, sabs = 0.0;
            for (int c = 0; c < C; c++) { double x = (double)inp[(size_t)n * C + c] * w[(size_t)o * C + c]; s += x; sabs += fabs(x); }
            ref[(size_t)n * OC + o] = s;
            tol[(size_t)n * OC + o] = (C + 2) * U_32 * sabs + ROUND_FX(s);
        }
    }
    size_t off = 16 / sizeof(floatX);
    floatX* d_inp = to_device_x(inp);
    floatX* d_w = to_device_x(w);
    floatX* d_w16 = dmalloc<floatX>(w.size() + off);
    copy_to_device_x(d_w16 + off, w);
    floatX* d_out = dmalloc<floatX>(ref.size());
    matmul_forward(d_out, d_inp, d_w, NULL, N, C, OC, NULL, 0);
    std::vector<floatX> first = from_device(d_out, ref.size());
    long long built = cublaslt_plans_built;
    matmul_forward(d_out, d_inp, d_w, NULL, N, C, OC, NULL, 0);
    check(cublaslt_plans_built == built, "the same GEMM again: no plan built (%lld)", cublaslt_plans_built - built);
    bitwise_equal("the same GEMM again, cached plan", first, from_device(d_out, ref.size()));
    matmul_forward(d_out, d_inp, d_w16 + off, NULL, N, C, OC, NULL, 0);
    check(cublaslt_plans_built == built + 1, "the weight 16 bytes off: a plan of its own (%lld built)",
          cublaslt_plans_built - built);
    validate("out, weight 16 bytes off", from_device_x(d_out, ref.size()), ref, tol);
    cudaCheck(cudaFree(d_inp)); cudaCheck(cudaFree(d_w)); cudaCheck(cudaFree(d_w16)); cudaCheck(cudaFree(d_out));
}

int main(void) {
    print_header("matmul_forward");
    cublas_init();
    run_case(64, 64, 192, true, false, 1);   // the qkv projection of a C=64 model, B*T = 64
    run_case(64, 96, 96, false, false, 2);   // no bias
    run_case(30, 40, 100, true, false, 3);   // odd sizes
    run_case(64, 64, 256, true, true, 4);    // fc + fused GELU (OC = 4C, a multiple of 8)
    run_case(48, 64, 256, false, true, 5);   // GELU without bias
    plan_cache_case();

#if defined(SIMT_CPU)
    int bN = 64, bC = 64, bOC = 256;
#else
    int bN = 8 * 1024, bC = 768, bOC = 3072;
#endif
    floatX* inp = dmalloc<floatX>((size_t)bN * bC);
    floatX* w = dmalloc<floatX>((size_t)bOC * bC);
    floatX* bias = dmalloc<floatX>(bOC);
    floatX* out = dmalloc<floatX>((size_t)bN * bOC);
    floatX* pre = dmalloc<floatX>((size_t)bN * bOC);
    cudaCheck(cudaMemset(inp, 0, (size_t)bN * bC * sizeof(floatX)));
    cudaCheck(cudaMemset(w, 0, (size_t)bOC * bC * sizeof(floatX)));
    cudaCheck(cudaMemset(bias, 0, bOC * sizeof(floatX)));
    double flops = 2.0 * bN * bC * bOC;
    float ms = benchmark_ms(BENCH_REPEATS, [&]() { matmul_forward(out, inp, w, bias, bN, bC, bOC, NULL, 0); });
    printf("  bench N=%d C=%d OC=%d, bias: %.4f ms, %.1f TFLOP/s\n", bN, bC, bOC, ms, flops / (ms * 1e9));
    ms = benchmark_ms(BENCH_REPEATS, [&]() { matmul_forward(out, inp, w, bias, bN, bC, bOC, pre, 0); });
    printf("  bench N=%d C=%d OC=%d, bias + GELU: %.4f ms, %.1f TFLOP/s\n", bN, bC, bOC, ms, flops / (ms * 1e9));
    cudaCheck(cudaFree(inp)); cudaCheck(cudaFree(w)); cudaCheck(cudaFree(bias)); cudaCheck(cudaFree(out));
    cudaCheck(cudaFree(pre));
    cublas_destroy();
    return test_summary();
}
