// Test of attention_forward (llmc/attention.cuh): causal multi-head attention through a permute, two
// cuBLASLt strided-batched GEMMs, a warp online softmax and an unpermute.
// Build and run: make -f dev/cuda/cuda.mk test_cuda_kernels, or on a GPU
//   nvcc -std=c++17 -O3 -DENABLE_BF16 dev/cuda/attention_forward.cu -o attention_forward -lcublas -lcublasLt
//
// Reference: train_gpt2_pp.c's attention_forward in double, on the floatX-rounded qkv. Tolerances are
// first-order a-priori error bounds evaluated per element (u = U_32, uX |x| = ROUND_FX(x) of common.h, scale = 1/sqrt(HS)):
//   logit l = (q.k) scale: the fp32 dot product of HS exact products, ROUNDED TO floatX when the GEMM stores
//     the pre-softmax matrix (as llm.c does), then scaled in fp32:
//       e = scale ((HS + 1) u sum|q k| + uX |q.k|) + 2 u |l|
//   att p_i = softmax: dp_i = p_i (dl_i - sum_j p_j dl_j), so |dp_i| <= p_i (e_i + sum_j p_j e_j); the fp32
//     exp/sum/divide add (T + 4) u p_i, and storing p as floatX adds uX p_i. Entries above the diagonal must be
//     exactly 0.
//   out y = sum_t2 p v (fp32 GEMM over T, rounded to floatX once):
//       sum_t2 tol(p_t2) |v_t2| + (T + 1) u sum_t2 p |v| + uX |y|
// In BF16 the logit rounding dominates: e.g. |q.k| = 4 gives a logit error of up to 4 * 2^-8 * scale.
#include "common.h"
#include "../../llmc/attention.cuh"

static void run_case(int B, int T, int C, int NH, uint64_t seed) {
    int HS = C / NH;
    printf(" case B=%d T=%d C=%d NH=%d (HS=%d)\n", B, T, C, NH, HS);
    Rng rng(seed);
    std::vector<float> qkv = rng.vec((size_t)B * T * 3 * C, -1.0f, 1.0f);
    round_fX(qkv);
    double scale = 1.0 / sqrt((double)HS);
    std::vector<double> att_ref((size_t)B * NH * T * T, 0.0), att_tol((size_t)B * NH * T * T, 0.0);
    std::vector<double> out_ref((size_t)B * T * C), out_tol((size_t)B * T * C);
    std::vector<double> l(T), e(T);
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            for (int t = 0; t < T; t++) {
                const float* q = &qkv[((size_t)b * T + t) * 3 * C + h * HS];
                double mx = -INFINITY;
                for (int t2 = 0; t2 <= t; t2++) {
                    const float* k = &qkv[((size_t)b * T + t2) * 3 * C + C + h * HS];
                    double s = 0.0, sabs = 0.0;
                    for (int i = 0; i < HS; i++) { s += (double)q[i] * k[i]; sabs += fabs((double)q[i] * k[i]); }
                    l[t2] = s * scale;
                    e[t2] = scale * ((HS + 1) * U_32 * sabs + ROUND_FX(s)) + 2 * U_32 * fabs(l[t2]);
                    if (l[t2] > mx) { mx = l[t2]; }
                }
                double sum = 0.0;
                for (int t2 = 0; t2 <= t; t2++) { sum += exp(l[t2] - mx); }
                double* a = &att_ref[(((size_t)b * NH + h) * T + t) * T];
                double* at = &att_tol[(((size_t)b * NH + h) * T + t) * T];
                double erow = 0.0;
                for (int t2 = 0; t2 <= t; t2++) { a[t2] = exp(l[t2] - mx) / sum; erow += a[t2] * e[t2]; }
                for (int t2 = 0; t2 <= t; t2++) { at[t2] = a[t2] * (e[t2] + erow + (T + 4) * U_32) + ROUND_FX(a[t2]); }
                for (int i = 0; i < HS; i++) {
                    double y = 0.0, yt = 0.0, pv = 0.0;
                    for (int t2 = 0; t2 <= t; t2++) {
                        double v = qkv[((size_t)b * T + t2) * 3 * C + 2 * C + h * HS + i];
                        y += a[t2] * v; yt += at[t2] * fabs(v); pv += a[t2] * fabs(v);
                    }
                    size_t k = ((size_t)b * T + t) * C + h * HS + i;
                    out_ref[k] = y;
                    out_tol[k] = yt + (T + 1) * U_32 * pv + ROUND_FX(y);
                }
            }
        }
    }
    floatX* d_inp = to_device_x(qkv);
    floatX* d_out = dmalloc<floatX>(out_ref.size());
    floatX* d_att = dmalloc<floatX>(att_ref.size());
    floatX* d_scratch = dmalloc<floatX>(ATTENTION_FORWARD_SCRATCH(B, T, C));
    cudaCheck(cudaMemset(d_att, 0xFF, att_ref.size() * sizeof(floatX)));  // NaN: every entry must be written
    attention_forward(d_out, d_att, d_scratch, d_inp, B, T, C, NH, 0);
    std::vector<floatX> out_bits = from_device(d_out, out_ref.size()), att_bits = from_device(d_att, att_ref.size());
    validate("att (B,NH,T,T)", from_device_x(d_att, att_ref.size()), att_ref, att_tol);
    validate("out (B,T,C)", from_device_x(d_out, out_ref.size()), out_ref, out_tol);
    cudaCheck(cudaMemset(d_out, 0, out_ref.size() * sizeof(floatX)));
    attention_forward(d_out, d_att, d_scratch, d_inp, B, T, C, NH, 0);
    bitwise_equal("out, run 2", out_bits, from_device(d_out, out_ref.size()));
    bitwise_equal("att, run 2", att_bits, from_device(d_att, att_ref.size()));
    cudaCheck(cudaFree(d_inp)); cudaCheck(cudaFree(d_out)); cudaCheck(cudaFree(d_att)); cudaCheck(cudaFree(d_scratch));
}

int main(void) {
    print_header("attention_forward");
    cublas_init();
    run_case(2, 48, 64, 4, 1);   // HS = 16; rows longer than a warp
    run_case(1, 37, 96, 3, 2);   // HS = 32, odd T
    run_case(2, 8, 32, 1, 3);    // one head, short rows (most lanes idle)

#if defined(SIMT_CPU)
    int bB = 2, bT = 32, bC = 64, bNH = 4;
#else
    int bB = 8, bT = 1024, bC = 768, bNH = 12;
#endif
    floatX* inp = dmalloc<floatX>((size_t)bB * bT * 3 * bC);
    floatX* out = dmalloc<floatX>((size_t)bB * bT * bC);
    floatX* att = dmalloc<floatX>((size_t)bB * bNH * bT * bT);
    floatX* scratch = dmalloc<floatX>(ATTENTION_FORWARD_SCRATCH(bB, bT, bC));
    cudaCheck(cudaMemset(inp, 0, (size_t)bB * bT * 3 * bC * sizeof(floatX)));
    float ms = benchmark_ms(BENCH_REPEATS, [&]() { attention_forward(out, att, scratch, inp, bB, bT, bC, bNH, 0); });
    printf("  bench B=%d T=%d C=%d NH=%d: %.4f ms\n", bB, bT, bC, bNH, ms);
    cudaCheck(cudaFree(inp)); cudaCheck(cudaFree(out)); cudaCheck(cudaFree(att)); cudaCheck(cudaFree(scratch));
    cublas_destroy();
    return test_summary();
}
