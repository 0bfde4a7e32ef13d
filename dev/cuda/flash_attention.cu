// Test and benchmark of flash_attention_forward / flash_attention_backward (llmc/flash_attention.cuh): causal
// attention in tiles with an online softmax (WMMA in BF16/FP16, plain fp32 in FP32), backward by recomputation.
// Build and run: make -f dev/cuda/cuda.mk test_cuda_kernels CUDA_TESTS=flash_attention, or on a GPU
//   nvcc -std=c++17 -O3 -arch=sm_90 -DENABLE_BF16 dev/cuda/flash_attention.cu -o flash_attention
// Under SIMT run it with SIMT_WMMA_MAPPING=0 and =1 (two fragment element-to-lane mappings).
//
// Reference: a plain causal softmax attention in double on the floatX-rounded qkv and dout (its backward: dP =
// dO V^T, D = rowsum(P dP), dS = P (dP - D) scale, dQ = dS K, dK = dS^T Q, dV = P^T dO). The backward runs on
// the kernel's own out and lse, as in training. Tolerances are first-order a-priori bounds evaluated per element
// (u = U_32; uX = U_FX, ROUND_FX(x) = one rounding to floatX, common.h; scale = 1/sqrt(HS); nt = T/32 tiles):
//   logit l = q.k scale: fp32 dot of HS exact products, scaled  e_l = scale (HS + 2) u sum|q k| + 2 u |l|
//   weight p_i: the softmax couples the logits (dp_i = p_i (dl_i - sum_j p_j dl_j)), and the kernel rounds p to
//     floatX before P V (only there: the row sum is fp32) and rescales by fp32 exps once per tile:
//       rho_i = e_l,i + sum_j p_j e_l,j + uX + (T + 3 nt + 8) u                      (relative)
//   out y = sum p v / l:   sum_i p_i rho_i |v_i| + (T + 2 nt + 2) u sum p |v| + ROUND_FX(y)
//   lse:                   sum_j p_j e_l,j + (T + 3 nt + 8) u + u |lse|
//   backward, P recomputed as exp(l - lse): relative e_P = e_l + tol(lse) + 3 u; dP: (HS + 1) u sum|dO v|;
//     D = dO . out on the kernel's floatX out: sum_d |dO| tol(out) + (HS + 1) u sum|dO out|;
//     dS (rounded to floatX for the mma): scale (p e_P |dP - D| + p (tol(dP) + tol(D))) + (uX + 3 u) |dS|
//   dQ = sum dS K, dK = sum dS Q: sum tol(dS) |.| + (T + 1) u sum |dS .| + ROUND_FX
//   dV = sum P dO:              sum p (e_P + uX) |dO| + (T + 1) u sum p |dO| + ROUND_FX
// In BF16/FP16 the roundings of P and dS to floatX (uX) dominate; in FP32 everything is a few hundred u.
// Determinism: a second forward and backward must give identical bits (no atomics, fixed summation orders); under
// SIMT the second run uses the other WMMA element-to-lane mapping (SIMT_WMMA_MAPPING picks the first run's).
#include "common.h"
#include "../../llmc/flash_attention.cuh"

static void run_case(int B, int T, int NH, int HS, uint64_t seed) {
    int C = NH * HS, nt = CEIL_DIV(T, FLASH_TILE);
    printf(" case B=%d T=%d C=%d NH=%d (HS=%d)\n", B, T, C, NH, HS);
    Rng rng(seed);
    std::vector<float> qkv = rng.vec((size_t)B * T * 3 * C, -1.0f, 1.0f), dout = rng.vec((size_t)B * T * C, -1.0f, 1.0f);
    round_fX(qkv); round_fX(dout);
    double scale = 1.0 / sqrt((double)HS), u = U_32;

    // device: forward, then backward on the forward's out and lse
    floatX* d_inp = to_device_x(qkv);
    floatX* d_dout = to_device_x(dout);
    floatX* d_out = dmalloc<floatX>((size_t)B * T * C);
    float* d_lse = dmalloc<float>((size_t)B * NH * T);
    floatX* d_dinp = dmalloc<floatX>((size_t)B * T * 3 * C);
    float* d_scratch = dmalloc<float>(FLASH_ATTENTION_BACKWARD_SCRATCH(B, T, NH));
    cudaCheck(cudaMemset(d_dinp, 0xFF, (size_t)B * T * 3 * C * sizeof(floatX)));  // NaN: every entry must be written
    flash_attention_forward(d_out, d_lse, d_inp, B, T, C, NH, 0);
    flash_attention_backward(d_dinp, d_scratch, d_dout, d_inp, d_out, d_lse, B, T, C, NH, 0);
    std::vector<floatX> out_bits = from_device(d_out, (size_t)B * T * C);
    std::vector<float> lse_got = from_device(d_lse, (size_t)B * NH * T);
    std::vector<floatX> dinp_bits = from_device(d_dinp, (size_t)B * T * 3 * C);
    std::vector<float> out_got = from_device_x(d_out, (size_t)B * T * C);
    std::vector<float> dinp_got = from_device_x(d_dinp, (size_t)B * T * 3 * C);

    // reference and bounds, one (b, h) at a time
    size_t n = (size_t)B * T * C;
    std::vector<double> out_ref(n), out_tol(n), lse_ref((size_t)B * NH * T), lse_tol((size_t)B * NH * T);
    std::vector<double> dq_ref(n), dq_tol(n), dk_ref(n), dk_tol(n), dv_ref(n), dv_tol(n);
    std::vector<double> P((size_t)T * T), EL((size_t)T * T), DS((size_t)T * T), DST((size_t)T * T);
    for (int b = 0; b < B; b++) for (int h = 0; h < NH; h++) {
        auto Q = [&](int t) { return &qkv[((size_t)b * T + t) * 3 * C + h * HS]; };
        auto K = [&](int t) { return &qkv[((size_t)b * T + t) * 3 * C + C + h * HS]; };
        auto V = [&](int t) { return &qkv[((size_t)b * T + t) * 3 * C + 2 * C + h * HS]; };
        auto DY = [&](int t) { return &dout[((size_t)b * T + t) * C + h * HS]; };
        size_t bh = ((size_t)b * NH + h) * T;
        for (int t = 0; t < T; t++) {
            double* p = &P[(size_t)t * T];
            double* el = &EL[(size_t)t * T];
            double mx = -INFINITY, sum = 0.0, ebar = 0.0;
            for (int t2 = 0; t2 <= t; t2++) {
                double s = 0.0, sabs = 0.0;
                for (int i = 0; i < HS; i++) { s += (double)Q(t)[i] * K(t2)[i]; sabs += fabs((double)Q(t)[i] * K(t2)[i]); }
                p[t2] = s * scale;
                el[t2] = scale * (HS + 2) * u * sabs + 2 * u * fabs(p[t2]);
                mx = fmax(mx, p[t2]);
            }
            for (int t2 = 0; t2 <= t; t2++) { p[t2] = exp(p[t2] - mx); sum += p[t2]; }
            for (int t2 = 0; t2 <= t; t2++) { p[t2] /= sum; ebar += p[t2] * el[t2]; }
            lse_ref[bh + t] = mx + log(sum);
            lse_tol[bh + t] = ebar + (T + 3 * nt + 8) * u + u * fabs(lse_ref[bh + t]);
            for (int i = 0; i < HS; i++) {
                double y = 0.0, yt = 0.0, pv = 0.0;
                for (int t2 = 0; t2 <= t; t2++) {
                    double v = V(t2)[i], rho = el[t2] + ebar + U_FX + (T + 3 * nt + 8) * u;
                    y += p[t2] * v; yt += p[t2] * rho * fabs(v); pv += p[t2] * fabs(v);
                }
                size_t k = ((size_t)b * T + t) * C + h * HS + i;
                out_ref[k] = y;
                out_tol[k] = yt + (T + 2 * nt + 2) * u * pv + ROUND_FX(y);
            }
        }
        // backward: dS and its bound, then the three products
        for (int t = 0; t < T; t++) {
            size_t ko = ((size_t)b * T + t) * C + h * HS;
            double D = 0.0, Dtol = 0.0, Dabs = 0.0;  // D from the exact softmax; its bound from the kernel's out
            for (int i = 0; i < HS; i++) {
                D += (double)DY(t)[i] * out_ref[ko + i];
                Dtol += fabs((double)DY(t)[i]) * out_tol[ko + i];
                Dabs += fabs((double)DY(t)[i] * out_got[ko + i]);
            }
            Dtol += (HS + 1) * u * Dabs;
            for (int t2 = 0; t2 <= t; t2++) {
                double dp = 0.0, dpabs = 0.0;
                for (int i = 0; i < HS; i++) { dp += (double)DY(t)[i] * V(t2)[i]; dpabs += fabs((double)DY(t)[i] * V(t2)[i]); }
                double p = P[(size_t)t * T + t2], eP = EL[(size_t)t * T + t2] + lse_tol[bh + t] + 3 * u;
                double ds = p * (dp - D) * scale;
                DS[(size_t)t * T + t2] = ds;
                DST[(size_t)t * T + t2] = scale * (p * eP * fabs(dp - D) + p * ((HS + 1) * u * dpabs + Dtol)) +
                                          (U_FX + 3 * u) * fabs(ds);
                EL[(size_t)t * T + t2] = eP;  // from here on: the relative error of the recomputed P
            }
        }
        for (int t = 0; t < T; t++) {
            for (int i = 0; i < HS; i++) {
                double dq = 0, dqt = 0, dqa = 0, dk = 0, dkt = 0, dka = 0, dv = 0, dvt = 0, dva = 0;
                for (int t2 = 0; t2 <= t; t2++) {  // dq_t: over keys t2 <= t
                    double ds = DS[(size_t)t * T + t2], kk = K(t2)[i];
                    dq += ds * kk; dqt += DST[(size_t)t * T + t2] * fabs(kk); dqa += fabs(ds * kk);
                }
                for (int t1 = t; t1 < T; t1++) {  // dk_t, dv_t: over queries t1 >= t
                    double ds = DS[(size_t)t1 * T + t], qq = Q(t1)[i], p = P[(size_t)t1 * T + t], dy = DY(t1)[i];
                    dk += ds * qq; dkt += DST[(size_t)t1 * T + t] * fabs(qq); dka += fabs(ds * qq);
                    dv += p * dy; dvt += p * (EL[(size_t)t1 * T + t] + U_FX) * fabs(dy); dva += p * fabs(dy);
                }
                size_t k = ((size_t)b * T + t) * C + h * HS + i;
                dq_ref[k] = dq; dq_tol[k] = dqt + (T + 1) * u * dqa + ROUND_FX(dq);
                dk_ref[k] = dk; dk_tol[k] = dkt + (T + 1) * u * dka + ROUND_FX(dk);
                dv_ref[k] = dv; dv_tol[k] = dvt + (T + 1) * u * dva + ROUND_FX(dv);
            }
        }
    }
    std::vector<float> gq(n), gk(n), gv(n);
    for (size_t bt = 0; bt < (size_t)B * T; bt++) for (int c = 0; c < C; c++) {
        gq[bt * C + c] = dinp_got[bt * 3 * C + c];
        gk[bt * C + c] = dinp_got[bt * 3 * C + C + c];
        gv[bt * C + c] = dinp_got[bt * 3 * C + 2 * C + c];
    }
    validate("out (B,T,C)", out_got, out_ref, out_tol);
    validate("lse (B,NH,T)", lse_got, lse_ref, lse_tol);
    validate("dq (B,T,C of dinp)", gq, dq_ref, dq_tol);
    validate("dk (B,T,C of dinp)", gk, dk_ref, dk_tol);
    validate("dv (B,T,C of dinp)", gv, dv_ref, dv_tol);

    // run 2: the same bits (no atomics, fixed orders); under SIMT also with the other WMMA element-to-lane mapping,
    // which only a kernel that depends on the mapping would notice
#if defined(SIMT_CPU)
    simt::wmma_set_mapping(1 - simt::wmma_mapping());
#endif
    cudaCheck(cudaMemset(d_out, 0, (size_t)B * T * C * sizeof(floatX)));
    cudaCheck(cudaMemset(d_dinp, 0, (size_t)B * T * 3 * C * sizeof(floatX)));
    cudaCheck(cudaMemset(d_scratch, 0, FLASH_ATTENTION_BACKWARD_SCRATCH(B, T, NH) * sizeof(float)));
    flash_attention_forward(d_out, d_lse, d_inp, B, T, C, NH, 0);
    flash_attention_backward(d_dinp, d_scratch, d_dout, d_inp, d_out, d_lse, B, T, C, NH, 0);
    bitwise_equal("out, run 2", out_bits, from_device(d_out, (size_t)B * T * C));
    bitwise_equal("lse, run 2", lse_got, from_device(d_lse, (size_t)B * NH * T));
    bitwise_equal("dinp, run 2", dinp_bits, from_device(d_dinp, (size_t)B * T * 3 * C));
#if defined(SIMT_CPU)
    simt::wmma_set_mapping(1 - simt::wmma_mapping());
#endif
    cudaCheck(cudaFree(d_inp)); cudaCheck(cudaFree(d_dout)); cudaCheck(cudaFree(d_out)); cudaCheck(cudaFree(d_lse));
    cudaCheck(cudaFree(d_dinp)); cudaCheck(cudaFree(d_scratch));
}

int main(void) {
    print_header("flash_attention");
#if defined(SIMT_CPU)
    printf(" SIMT WMMA mapping %d (run 2 of each case: %d)\n", simt::wmma_mapping(), 1 - simt::wmma_mapping());
#endif
    run_case(2, 37, 3, 16, 1);    // odd T: a partial tile, HS = 16
    run_case(2, 32, 2, 32, 2);    // exactly one tile
    run_case(1, 100, 12, 64, 3);  // NH = 12, HS = 64 (GPT-2), 4 tiles
    run_case(1, 70, 25, 128, 4);  // NH = 25, HS = 128 (GPT-2 1.5B)
    // one long sequence per precision (the CPU reference and SIMT keep the CI shapes small); not under ASan, where
    // it takes minutes and reaches no access pattern that the 4-tile cases above do not
#if defined(__SANITIZE_ADDRESS__)
#elif defined(ENABLE_FP32)
    run_case(1, 1024, 2, 64, 5);
#elif defined(ENABLE_FP16)
    run_case(1, 1024, 1, 128, 5);
#else
    run_case(1, 1024, 3, 64, 5);
#endif

#if defined(SIMT_CPU)
    int bB = 1, bT = 128, bC = 128, bNH = 2;
#else
    int bB = 8, bT = 1024, bC = 768, bNH = 12;
#endif
    floatX* inp = dmalloc<floatX>((size_t)bB * bT * 3 * bC);
    floatX* out = dmalloc<floatX>((size_t)bB * bT * bC);
    floatX* dout = dmalloc<floatX>((size_t)bB * bT * bC);
    floatX* dinp = dmalloc<floatX>((size_t)bB * bT * 3 * bC);
    float* lse = dmalloc<float>((size_t)bB * bNH * bT);
    float* scratch = dmalloc<float>(FLASH_ATTENTION_BACKWARD_SCRATCH(bB, bT, bNH));
    cudaCheck(cudaMemset(inp, 0, (size_t)bB * bT * 3 * bC * sizeof(floatX)));
    cudaCheck(cudaMemset(dout, 0, (size_t)bB * bT * bC * sizeof(floatX)));
    float fwd = benchmark_ms(BENCH_REPEATS, [&]() { flash_attention_forward(out, lse, inp, bB, bT, bC, bNH, 0); });
    float bwd = benchmark_ms(BENCH_REPEATS, [&]() {
        flash_attention_backward(dinp, scratch, dout, inp, out, lse, bB, bT, bC, bNH, 0);
    });
    // causal FLOPs: forward 2 GEMMs, backward 5 (S and dP twice: dkdv and dq recompute both), half the square each
    double f = 2.0 * bB * bNH * (double)bT * bT * (bC / bNH) / 2;
    printf("  bench B=%d T=%d C=%d NH=%d: forward %.4f ms (%.1f TFLOP/s), backward %.4f ms (%.1f TFLOP/s)\n", bB, bT,
           bC, bNH, fwd, 2 * f / fwd * 1e-9, bwd, 7 * f / bwd * 1e-9);
    cudaCheck(cudaFree(inp)); cudaCheck(cudaFree(out)); cudaCheck(cudaFree(dout)); cudaCheck(cudaFree(dinp));
    cudaCheck(cudaFree(lse)); cudaCheck(cudaFree(scratch));
    return test_summary();
}
