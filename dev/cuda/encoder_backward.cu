// Test of encoder_backward (llmc/encoder.cuh): dwte (V,C) += per-token sums of dout, dwpe (T,C) += sum_b dout.
// Build and run: make -f dev/cuda/cuda.mk test_cuda_kernels, or on a GPU
//   nvcc -std=c++17 -O3 -DENABLE_BF16 dev/cuda/encoder_backward.cu -o encoder_backward -lcublas -lcublasLt
//
// Tolerance: zero in every precision. Both gradients are fp32; dout converts exactly to fp32, and the kernel
// makes exactly the additions of train_gpt2_pp.c's loop in the same order (dwpe: b order; dwte: (b,t) order,
// one block owning each token row), starting from the same initial gradient, so the results must be
// bitwise equal to the CPU reference. A small vocabulary makes most tokens repeat (up to ~20 times); B*T = 320
// spans several 96-thread chunks and B*T = 1024 several super-chunks of 8 x 64 positions, so the leader's
// walk, its skipping of super-chunks without its token, and the duplicate check are all exercised.
#include "common.h"
#include "../../llmc/encoder.cuh"

static void encoder_backward_cpu(float* dwte, float* dwpe, const float* dout, const int* inp, int B, int T, int C) {
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const float* d = dout + ((size_t)b * T + t) * C;
            float* dte = dwte + (size_t)inp[b * T + t] * C;
            float* dpe = dwpe + (size_t)t * C;
            for (int i = 0; i < C; i++) {
                dte[i] += d[i];
                dpe[i] += d[i];
            }
        }
    }
}

static void run_case(int B, int T, int C, int V, uint64_t seed) {
    printf(" case B=%d T=%d C=%d V=%d\n", B, T, C, V);
    Rng rng(seed);
    std::vector<float> dout = rng.vec((size_t)B * T * C, -1.0f, 1.0f);
    round_fX(dout);
    std::vector<float> dwte = rng.vec((size_t)V * C, -1.0f, 1.0f), dwpe = rng.vec((size_t)T * C, -1.0f, 1.0f);
    std::vector<int> inp(B * T);
    for (int i = 0; i < B * T; i++) { inp[i] = rng.randint(V); }
    inp[B * T - 1] = inp[0];  // the first token repeats at the very end

    floatX* d_dout = to_device_x(dout);
    int* d_inp = to_device(inp);
    float* d_dwte = to_device(dwte);
    float* d_dwpe = to_device(dwpe);
    encoder_backward(d_dwte, d_dwpe, d_dout, d_inp, B, T, C, 0);
    encoder_backward_cpu(dwte.data(), dwpe.data(), dout.data(), inp.data(), B, T, C);  // dwte, dwpe now the reference
    std::vector<float> g_dwte = from_device(d_dwte, dwte.size()), g_dwpe = from_device(d_dwpe, dwpe.size());
    validate("dwte (V,C) +=", g_dwte, dwte, 0.0, 0.0);
    validate("dwpe (T,C) +=", g_dwpe, dwpe, 0.0, 0.0);

    // determinism: a second accumulation from the same starting point gives the same bits
    float* d_dwte2 = to_device(g_dwte);
    float* d_dwpe2 = to_device(g_dwpe);
    encoder_backward(d_dwte, d_dwpe, d_dout, d_inp, B, T, C, 0);
    encoder_backward(d_dwte2, d_dwpe2, d_dout, d_inp, B, T, C, 0);
    bitwise_equal("dwte, run 2", from_device(d_dwte, dwte.size()), from_device(d_dwte2, dwte.size()));
    bitwise_equal("dwpe, run 2", from_device(d_dwpe, dwpe.size()), from_device(d_dwpe2, dwpe.size()));
    cudaCheck(cudaFree(d_dout)); cudaCheck(cudaFree(d_inp)); cudaCheck(cudaFree(d_dwte)); cudaCheck(cudaFree(d_dwpe));
    cudaCheck(cudaFree(d_dwte2)); cudaCheck(cudaFree(d_dwpe2));
}

int main(void) {
    print_header("encoder_backward");
    run_case(2, 32, 64, 13, 1);    // 64 positions, one chunk
    run_case(4, 80, 96, 17, 2);    // 320 positions: several chunks of 96, tokens repeat ~19 times
    run_case(1, 8, 300, 1000, 3);  // C > 256 threads: channels loop; mostly unique tokens
    run_case(4, 256, 64, 300, 4);  // 1024 positions > one super-chunk of 8 x 64: the skip over empty ones

    // benchmark
#if defined(SIMT_CPU)
    int bB = 2, bT = 32, bC = 96, bV = 101;
#else
    int bB = 8, bT = 1024, bC = 768, bV = 50257;
#endif
    Rng rng(7);
    std::vector<int> inp(bB * bT);
    for (int i = 0; i < bB * bT; i++) { inp[i] = rng.randint(bV); }
    int* b_inp = to_device(inp);
    floatX* b_dout = dmalloc<floatX>((size_t)bB * bT * bC);
    float* b_dwte = dmalloc<float>((size_t)bV * bC);
    float* b_dwpe = dmalloc<float>((size_t)bT * bC);
    cudaCheck(cudaMemset(b_dout, 0, (size_t)bB * bT * bC * sizeof(floatX)));
    cudaCheck(cudaMemset(b_dwte, 0, (size_t)bV * bC * sizeof(float)));
    cudaCheck(cudaMemset(b_dwpe, 0, (size_t)bT * bC * sizeof(float)));
    float ms = benchmark_ms(BENCH_REPEATS, [&]() { encoder_backward(b_dwte, b_dwpe, b_dout, b_inp, bB, bT, bC, 0); });
    printf("  bench B=%d T=%d C=%d V=%d (random tokens): %.4f ms\n", bB, bT, bC, bV, ms);
    cudaCheck(cudaFree(b_inp)); cudaCheck(cudaFree(b_dout)); cudaCheck(cudaFree(b_dwte)); cudaCheck(cudaFree(b_dwpe));
    return test_summary();
}
