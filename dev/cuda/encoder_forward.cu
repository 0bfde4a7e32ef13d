// Test of encoder_forward (llmc/encoder.cuh): out[b,t,:] = wte[inp[b,t],:] + wpe[t,:].
// Build and run: make -f dev/cuda/cuda.mk test_cuda_kernels (all precisions, SIMT CPU runtime), or on a GPU
//   nvcc -std=c++17 -O3 -DENABLE_BF16 dev/cuda/encoder_forward.cu -o encoder_forward -lcublas -lcublasLt
//
// Tolerance: zero in every precision. The kernel adds two floatX values in fp32 (exact conversion, one
// fp32 rounding, the same as the CPU reference on the same rounded inputs) and rounds once to floatX, so the
// output must equal to_fX(CPU reference) bit for bit.
#include "common.h"
#include "../../llmc/encoder.cuh"

static void encoder_forward_cpu(float* out, const int* inp, const float* wte, const float* wpe, int B, int T, int C) {
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            float* o = out + ((size_t)b * T + t) * C;
            const float* te = wte + (size_t)inp[b * T + t] * C;
            const float* pe = wpe + (size_t)t * C;
            for (int i = 0; i < C; i++) { o[i] = te[i] + pe[i]; }
        }
    }
}

int main(void) {
    print_header("encoder_forward");
    int B = 2, T = 32, C = 96, V = 101;
    Rng rng(1);
    std::vector<float> wte = rng.vec((size_t)V * C, -1.0f, 1.0f), wpe = rng.vec((size_t)T * C, -1.0f, 1.0f);
    round_fX(wte);
    round_fX(wpe);
    std::vector<int> inp(B * T);
    for (int i = 0; i < B * T; i++) { inp[i] = rng.randint(V); }
    std::vector<float> ref((size_t)B * T * C);
    encoder_forward_cpu(ref.data(), inp.data(), wte.data(), wpe.data(), B, T, C);
    std::vector<float> ref_x(ref);
    round_fX(ref_x);

    floatX* d_wte = to_device_x(wte);
    floatX* d_wpe = to_device_x(wpe);
    int* d_inp = to_device(inp);
    floatX* d_out = dmalloc<floatX>(ref.size());
    encoder_forward(d_out, d_inp, d_wte, d_wpe, B, T, C, 0);
    std::vector<float> out = from_device_x(d_out, ref.size());
    validate("out (B,T,C)", out, ref_x, 0.0, 0.0);

    // determinism: a second run gives the same bits
    std::vector<floatX> first = from_device(d_out, ref.size());
    cudaCheck(cudaMemset(d_out, 0, ref.size() * sizeof(floatX)));
    encoder_forward(d_out, d_inp, d_wte, d_wpe, B, T, C, 0);
    bitwise_equal("out, run 2", first, from_device(d_out, ref.size()));

    // benchmark
#if defined(SIMT_CPU)
    int bB = B, bT = T, bC = C, bV = V;
#else
    int bB = 8, bT = 1024, bC = 768, bV = 50257;
#endif
    floatX* b_wte = dmalloc<floatX>((size_t)bV * bC);
    floatX* b_wpe = dmalloc<floatX>((size_t)bT * bC);
    floatX* b_out = dmalloc<floatX>((size_t)bB * bT * bC);
    int* b_inp = dmalloc<int>((size_t)bB * bT);
    // every input written: compute-sanitizer's initcheck on an H200 caught this benchmark reading b_wte and b_wpe
    // uninitialised (SIMT's uninitialized-read rule now does too)
    cudaCheck(cudaMemset(b_wte, 0, (size_t)bV * bC * sizeof(floatX)));
    cudaCheck(cudaMemset(b_wpe, 0, (size_t)bT * bC * sizeof(floatX)));
    cudaCheck(cudaMemset(b_inp, 0, (size_t)bB * bT * sizeof(int)));
    float ms = benchmark_ms(BENCH_REPEATS, [&]() { encoder_forward(b_out, b_inp, b_wte, b_wpe, bB, bT, bC, 0); });
    printf("  bench B=%d T=%d C=%d: %.4f ms, %.1f GB/s\n", bB, bT, bC, ms,
           3.0 * bB * bT * bC * sizeof(floatX) / (ms * 1e6));

    cudaCheck(cudaFree(d_wte)); cudaCheck(cudaFree(d_wpe)); cudaCheck(cudaFree(d_inp)); cudaCheck(cudaFree(d_out));
    cudaCheck(cudaFree(b_wte)); cudaCheck(cudaFree(b_wpe)); cudaCheck(cudaFree(b_out)); cudaCheck(cudaFree(b_inp));
    return test_summary();
}
