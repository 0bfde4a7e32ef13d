// Test of global_norm_squared and is_finite_norm (llmc/global_norm.cuh).
// Build and run: make -f dev/cuda/cuda.mk test_cuda_kernels, or on a GPU
//   nvcc -std=c++17 -O3 -DENABLE_BF16 dev/cuda/global_norm.cu -o global_norm -lcublas -lcublasLt
//
// Reference: sum of (g * scale)^2 in double, in index order. The kernel also sums in double (another fixed
// order), so the two double sums differ by at most about n 2^-53 relative, and the result is rounded once
// to fp32: tolerance (2^-24 + n 2^-52) |ref|. The gradients are fp32 in every precision, so the tolerance
// does not depend on floatX. Sizes cover one block, several blocks, and the 256-block cap (grid-stride).
// Loss-scaler checks: an inf or a NaN anywhere makes the result non-finite (is_finite_norm false); the scale
// factor unscales (scale s gives s^2 times the unscaled sum, checked against the reference).
#include "common.h"
#include "../../llmc/global_norm.cuh"

static double norm_ref(const std::vector<float>& g, double scale) {
    double s = 0.0;
    for (size_t i = 0; i < g.size(); i++) { double x = (double)g[i] * scale; s += x * x; }
    return s;
}

int main(void) {
    print_header("global_norm");
    Rng rng(1);
    double* d_scratch = dmalloc<double>(GLOBAL_NORM_SCRATCH_DOUBLES);
    float* d_out = dmalloc<float>(4);
    size_t sizes[] = {1, 1000, 100003, 2000000};
    for (size_t n : sizes) {
        printf(" n=%zu (%d blocks)\n", n, global_norm_blocks(n));
        std::vector<float> g = rng.vec(n, -1.0f, 1.0f);
        for (size_t i = 0; i < n; i += 1000) { g[i] *= 1000.0f; }
        float* d_g = to_device(g);
        float scales[] = {1.0f, 1.0f / 1024.0f, 0.3f};
        for (float scale : scales) {
            double ref = norm_ref(g, scale);
            global_norm_squared(d_out, d_g, n, scale, d_scratch, 0);
            std::vector<float> out = from_device(d_out, 1);
            std::vector<double> r(1, ref), tol(1, (ldexp(1.0, -24) + n * ldexp(1.0, -52)) * fabs(ref));
            char name[64];
            snprintf(name, sizeof name, "norm^2, scale %g", scale);
            validate(name, out, r, tol);
            global_norm_squared(d_out + 1, d_g, n, scale, d_scratch, 0);
            bitwise_equal("norm^2, run 2", out, from_device(d_out + 1, 1));
        }
        // inf and nan
        float bad[] = {INFINITY, -INFINITY, NAN};
        for (float b : bad) {
            size_t at = n / 2;
            cudaCheck(cudaMemcpy(d_g + at, &b, sizeof(float), cudaMemcpyHostToDevice));
            global_norm_squared(d_out, d_g, n, 1.0f / 65536.0f, d_scratch, 0);
            float out = from_device(d_out, 1)[0];
            check(!is_finite_norm(out) && (isnan(b) ? isnan(out) : isinf(out)),
                  "one %g at [%zu] of %zu -> norm^2 %g, is_finite_norm false", b, at, n, out);
            cudaCheck(cudaMemcpy(d_g + at, &g[at], sizeof(float), cudaMemcpyHostToDevice));
        }
        global_norm_squared(d_out, d_g, n, 1.0f, d_scratch, 0);
        check(is_finite_norm(from_device(d_out, 1)[0]), "finite gradients -> is_finite_norm true");
        cudaCheck(cudaFree(d_g));
    }

#if defined(SIMT_CPU)
    size_t bn = 1000000;
#else
    size_t bn = 124475904;  // GPT-2 124M
#endif
    float* bg = dmalloc<float>(bn);
    cudaCheck(cudaMemset(bg, 0, bn * sizeof(float)));
    float ms = benchmark_ms(BENCH_REPEATS, [&]() { global_norm_squared(d_out, bg, bn, 1.0f, d_scratch, 0); });
    printf("  bench n=%zu: %.4f ms, %.1f GB/s\n", bn, ms, (double)bn * 4 / (ms * 1e6));
    cudaCheck(cudaFree(bg)); cudaCheck(cudaFree(d_scratch)); cudaCheck(cudaFree(d_out));
    return test_summary();
}
