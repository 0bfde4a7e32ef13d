// Test of gelu_forward and gelu_backward (llmc/gelu.cuh), including the in-place backward (dinp == dout).
// Build and run: make -f dev/cuda/cuda.mk test_cuda_kernels, or on a GPU
//   nvcc -std=c++17 -O3 -DENABLE_BF16 dev/cuda/gelu.cu -o gelu -lcublas -lcublasLt
//
// Reference: train_gpt2_pp.c's formulas in double, on floatX-rounded inputs. Tolerances are a-priori bounds
// per element (u = U_32, uX |x| = ROUND_FX(x) of common.h; k = sqrt(2/pi), a = 0.044715, z = k(x + a x^3), t = tanh(z)):
//   z in fp32 (5 roundings):           dz = 5 u (|k x| + |k a x^3|)
//   tanhf (CUDA: <= 2 ulp):            dt = (1 - t^2) dz + 2 u |t|
//   forward  0.5 x (1 + t):            0.5 |x| dt + 3 u |out|,                    then + uX |out| (one rounding)
//   backward g = 0.5 (1 + t) + 0.5 x (1 - t^2) du, du = k (1 + 3 a x^2):
//            dg = 0.5 dt + 0.5 |x| (|du| (2 |t| dt + u) + (1 - t^2) 4 u |du|) + 4 u (0.5 |1 + t| + |0.5 x (1 - t^2) du|)
//            dinp = g dout:            |dout| dg + u |dinp|,                      then + uX |dinp|
#include "common.h"
#include "../../llmc/gelu.cuh"

int main(void) {
    print_header("gelu");
    const double k = 0.7978845608028654, a = 0.044715;
    size_t n = 5000;
    Rng rng(1);
    std::vector<float> x = rng.vec(n, -6.0f, 6.0f), dout = rng.vec(n, -2.0f, 2.0f);
    x[0] = 0.0f; x[1] = -10.0f; x[2] = 10.0f; x[3] = 1e-3f;
    round_fX(x); round_fX(dout);
    std::vector<double> out_ref(n), out_tol(n), din_ref(n), din_tol(n);
    for (size_t i = 0; i < n; i++) {
        double xi = x[i];
        double z = k * (xi + a * xi * xi * xi), t = tanh(z);
        double dz = 5 * U_32 * (fabs(k * xi) + fabs(k * a * xi * xi * xi));
        double dt = (1 - t * t) * dz + 2 * U_32 * fabs(t);
        double o = 0.5 * xi * (1 + t);
        out_ref[i] = o;
        out_tol[i] = 0.5 * fabs(xi) * dt + 3 * U_32 * fabs(o) + ROUND_FX(o);
        double du = k * (1 + 3 * a * xi * xi);
        double g = 0.5 * (1 + t) + 0.5 * xi * (1 - t * t) * du;
        double dg = 0.5 * dt + 0.5 * fabs(xi) * (fabs(du) * (2 * fabs(t) * dt + U_32) + (1 - t * t) * 4 * U_32 * fabs(du)) +
                    4 * U_32 * (0.5 * fabs(1 + t) + fabs(0.5 * xi * (1 - t * t) * du));
        din_ref[i] = g * dout[i];
        din_tol[i] = fabs(dout[i]) * dg + U_32 * fabs(g * dout[i]) + ROUND_FX(g * dout[i]);
    }
    floatX* d_x = to_device_x(x);
    floatX* d_dout = to_device_x(dout);
    floatX* d_out = dmalloc<floatX>(n);
    floatX* d_din = dmalloc<floatX>(n);
    gelu_forward(d_out, d_x, n, 0);
    gelu_backward(d_din, d_x, d_dout, n, 0);
    std::vector<floatX> out_bits = from_device(d_out, n), din_bits = from_device(d_din, n);
    validate("gelu_forward out", from_device_x(d_out, n), out_ref, out_tol);
    validate("gelu_backward dinp", from_device_x(d_din, n), din_ref, din_tol);
    gelu_backward(d_dout, d_x, d_dout, n, 0);  // in place
    bitwise_equal("gelu_backward in place", din_bits, from_device(d_dout, n));
    gelu_forward(d_x, d_x, n, 0);  // in place forward
    bitwise_equal("gelu_forward in place", out_bits, from_device(d_x, n));
    copy_to_device_x(d_x, x);
    gelu_forward(d_out, d_x, n, 0);
    bitwise_equal("gelu_forward, run 2", out_bits, from_device(d_out, n));
    // the scalar path (pointers not 16-byte aligned, a length not a multiple of the vector width): the same bits
    copy_to_device_x(d_dout, dout);
    gelu_forward(d_out + 1, d_x + 1, n - 3, 0);
    gelu_backward(d_din + 1, d_x + 1, d_dout + 1, n - 3, 0);
    bitwise_equal("gelu_forward, unaligned, odd n", std::vector<floatX>(out_bits.begin() + 1, out_bits.end() - 2),
                  from_device(d_out + 1, n - 3));
    bitwise_equal("gelu_backward, unaligned, odd n", std::vector<floatX>(din_bits.begin() + 1, din_bits.end() - 2),
                  from_device(d_din + 1, n - 3));

#if defined(SIMT_CPU)
    size_t bn = 64 * 256;
#else
    size_t bn = (size_t)8 * 1024 * 3072;
#endif
    floatX* bx = dmalloc<floatX>(bn);
    floatX* by = dmalloc<floatX>(bn);
    cudaCheck(cudaMemset(bx, 0, bn * sizeof(floatX)));
    float ms = benchmark_ms(BENCH_REPEATS, [&]() { gelu_forward(by, bx, bn, 0); });
    printf("  bench gelu_forward n=%zu: %.4f ms, %.1f GB/s\n", bn, ms, 2.0 * bn * sizeof(floatX) / (ms * 1e6));
    ms = benchmark_ms(BENCH_REPEATS, [&]() { gelu_backward(by, bx, by, bn, 0); });
    printf("  bench gelu_backward (in place) n=%zu: %.4f ms, %.1f GB/s\n", bn, ms, 3.0 * bn * sizeof(floatX) / (ms * 1e6));
    cudaCheck(cudaFree(d_x)); cudaCheck(cudaFree(d_dout)); cudaCheck(cudaFree(d_out)); cudaCheck(cudaFree(d_din));
    cudaCheck(cudaFree(bx)); cudaCheck(cudaFree(by));
    return test_summary();
}
