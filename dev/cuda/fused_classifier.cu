// Test of fused_classifier (llmc/fused_classifier.cuh): per-row cross-entropy loss over the first V of Vp
// logits, with the logits overwritten in place by their gradient.
// Build and run: make -f dev/cuda/cuda.mk test_cuda_kernels, or on a GPU
//   nvcc -std=c++17 -O3 -DENABLE_BF16 dev/cuda/fused_classifier.cu -o fused_classifier -lcublas -lcublasLt
//
// Reference: train_gpt2_pp.c's crossentropy_forward in double, on floatX-rounded logits. Tolerances are
// a-priori bounds (u = U_32, uX |x| = ROUND_FX(x) of common.h) for the fp32 online max/sum: every exp is within 2u, each rescaling
// of a partial sum and each addition costs u, and a sum of V terms in any order is within (V + 10) u relative:
//   loss      (V + 10) u + 2 u (|log S| + |max| + |x_target|)        fp32 output: no floatX term
//   dlogits   |dloss| (p (V + 14) u + u) + uX |dlogit|               one rounding to floatX
//   padded columns V..Vp-1 must be exactly 0; with dloss = 0 the logits must be untouched (bitwise).
#include "common.h"
#include "../../llmc/fused_classifier.cuh"

static void run_case(int N, int V, int Vp, uint64_t seed) {
    printf(" case N=%d V=%d Vp=%d\n", N, V, Vp);
    Rng rng(seed);
    std::vector<float> logits = rng.vec((size_t)N * Vp, -4.0f, 4.0f);
    for (int n = 0; n < N; n++) {
        logits[(size_t)n * Vp + rng.randint(V)] += 12.0f;  // a confident prediction in some rows
        for (int i = V; i < Vp; i++) { logits[(size_t)n * Vp + i] = 1000.0f; }  // padding must be ignored
    }
    round_fX(logits);
    std::vector<int> targets(N);
    for (int n = 0; n < N; n++) { targets[n] = rng.randint(V); }
    targets[0] = V - 1;
    float dloss = 1.0f / N;
    std::vector<double> loss_ref(N), loss_tol(N), dl_ref((size_t)N * Vp), dl_tol((size_t)N * Vp);
    for (int n = 0; n < N; n++) {
        const float* x = &logits[(size_t)n * Vp];
        double mx = -INFINITY, s = 0.0;
        for (int i = 0; i < V; i++) { if (x[i] > mx) { mx = x[i]; } }
        for (int i = 0; i < V; i++) { s += exp(x[i] - mx); }
        int y = targets[n];
        loss_ref[n] = log(s) - (x[y] - mx);
        loss_tol[n] = (V + 10) * U_32 + 2 * U_32 * (fabs(log(s)) + fabs(mx) + fabs(x[y]));
        for (int i = 0; i < Vp; i++) {
            size_t k = (size_t)n * Vp + i;
            if (i >= V) { dl_ref[k] = 0.0; dl_tol[k] = 0.0; continue; }
            double p = exp(x[i] - mx) / s;
            double g = (p - (i == y ? 1.0 : 0.0)) * dloss;
            dl_ref[k] = g;
            dl_tol[k] = fabs(dloss) * (p * (V + 14) * U_32 + U_32) + ROUND_FX(g);
        }
    }
    floatX* d_logits = to_device_x(logits);
    int* d_targets = to_device(targets);
    float* d_losses = dmalloc<float>(N);
    // evaluation: dloss = 0 leaves the logits alone
    fused_classifier(d_logits, d_losses, 0.0f, d_targets, N, V, Vp, 0);
    std::vector<float> losses_eval = from_device(d_losses, N);
    validate("losses (dloss = 0)", losses_eval, loss_ref, loss_tol);
    std::vector<floatX> logits_x(logits.size());
    for (size_t i = 0; i < logits.size(); i++) { logits_x[i] = to_fX(logits[i]); }
    bitwise_equal("logits untouched (dloss = 0)", logits_x, from_device(d_logits, logits.size()));
    // training: losses and dlogits in place
    fused_classifier(d_logits, d_losses, dloss, d_targets, N, V, Vp, 0);
    std::vector<float> losses = from_device(d_losses, N);
    std::vector<floatX> dl_bits = from_device(d_logits, logits.size());
    validate("losses (N)", losses, loss_ref, loss_tol);
    bitwise_equal("losses, with and without dloss", losses_eval, losses);
    validate("dlogits (N,Vp), pad = 0", from_device_x(d_logits, logits.size()), dl_ref, dl_tol);
    copy_to_device_x(d_logits, logits);
    fused_classifier(d_logits, d_losses, dloss, d_targets, N, V, Vp, 0);
    bitwise_equal("dlogits, run 2", dl_bits, from_device(d_logits, logits.size()));
    cudaCheck(cudaFree(d_logits)); cudaCheck(cudaFree(d_targets)); cudaCheck(cudaFree(d_losses));
}

int main(void) {
    print_header("fused_classifier");
    run_case(8, 101, 128, 1);     // V < one block: most threads idle
    run_case(24, 1500, 1536, 2);  // ~3 columns per thread
    run_case(3, 50257, 50304, 3); // GPT-2's vocabulary

#if defined(SIMT_CPU)
    int bN = 64, bV = 1500, bVp = 1536;
#else
    int bN = 8 * 1024, bV = 50257, bVp = 50304;
#endif
    floatX* logits = dmalloc<floatX>((size_t)bN * bVp);
    float* losses = dmalloc<float>(bN);
    std::vector<int> t(bN, 0);
    int* targets = to_device(t);
    cudaCheck(cudaMemset(logits, 0, (size_t)bN * bVp * sizeof(floatX)));
    float ms = benchmark_ms(BENCH_REPEATS, [&]() { fused_classifier(logits, losses, 0.0f, targets, bN, bV, bVp, 0); });
    printf("  bench N=%d V=%d (loss only): %.4f ms, %.1f GB/s\n", bN, bV, ms, (double)bN * bVp * sizeof(floatX) / (ms * 1e6));
    ms = benchmark_ms(BENCH_REPEATS, [&]() { fused_classifier(logits, losses, 1.0f / bN, targets, bN, bV, bVp, 0); });
    printf("  bench N=%d V=%d (loss + dlogits): %.4f ms, %.1f GB/s\n", bN, bV, ms,
           2.0 * bN * bVp * sizeof(floatX) / (ms * 1e6));
    cudaCheck(cudaFree(logits)); cudaCheck(cudaFree(losses)); cudaCheck(cudaFree(targets));
    return test_summary();
}
