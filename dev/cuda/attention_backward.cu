// Test of attention_backward (llmc/attention.cuh).
// Build and run: make -f dev/cuda/cuda.mk test_cuda_kernels, or on a GPU
//   nvcc -std=c++17 -O3 -DENABLE_BF16 dev/cuda/attention_backward.cu -o attention_backward -lcublas -lcublasLt
//
// Inputs: qkv and dout random, rounded to floatX; att = the exact causal softmax of qkv, rounded to floatX
// (the backward takes att as given, so the forward's errors do not enter). Reference: train_gpt2_pp.c's
// attention_backward in double on those values. Tolerances are first-order a-priori bounds evaluated per
// element (u = U_32, uX |x| = ROUND_FX(x) of common.h, scale = 1/sqrt(HS)); each GEMM accumulates in fp32 and rounds once to floatX:
//   datt_t2 = dy . v_t2              a_t2 = (HS + 1) u sum|dy v| + uX |datt_t2|
//   dot = sum att datt               d = sum att a + (T + 2) u sum att |datt|
//   dpre = att (datt - dot) scale    b_t2 = att scale (a_t2 + d) + 4 u |dpre| + uX |dpre|   (stored as floatX)
//   dq_t  = sum_t2 dpre k_t2         sum_t2 b |k| + (T + 1) u sum |dpre k| + uX |dq|
//   dk_t2 = sum_t dpre q_t           sum_t b |q| + (T + 1) u sum |dpre q| + uX |dk|
//   dv_t2 = sum_t att dy_t           (T + 1) u sum att |dy| + uX |dv|
// The intermediate roundings of datt and dpreatt to floatX (the GEMMs' outputs) dominate in BF16/FP16.
#include "common.h"
#include "../../llmc/attention.cuh"

static void run_case(int B, int T, int C, int NH, uint64_t seed) {
    int HS = C / NH;
    printf(" case B=%d T=%d C=%d NH=%d (HS=%d)\n", B, T, C, NH, HS);
    Rng rng(seed);
    std::vector<float> qkv = rng.vec((size_t)B * T * 3 * C, -1.0f, 1.0f), dout = rng.vec((size_t)B * T * C, -1.0f, 1.0f);
    round_fX(qkv); round_fX(dout);
    double scale = 1.0 / sqrt((double)HS);
    // att: exact softmax, rounded to floatX
    std::vector<float> att((size_t)B * NH * T * T, 0.0f);
    for (int b = 0; b < B; b++) for (int h = 0; h < NH; h++) for (int t = 0; t < T; t++) {
        const float* q = &qkv[((size_t)b * T + t) * 3 * C + h * HS];
        std::vector<double> l(t + 1);
        double mx = -INFINITY, sum = 0.0;
        for (int t2 = 0; t2 <= t; t2++) {
            const float* k = &qkv[((size_t)b * T + t2) * 3 * C + C + h * HS];
            double s = 0.0;
            for (int i = 0; i < HS; i++) { s += (double)q[i] * k[i]; }
            l[t2] = s * scale;
            if (l[t2] > mx) { mx = l[t2]; }
        }
        for (int t2 = 0; t2 <= t; t2++) { sum += exp(l[t2] - mx); }
        for (int t2 = 0; t2 <= t; t2++) { att[(((size_t)b * NH + h) * T + t) * T + t2] = (float)(exp(l[t2] - mx) / sum); }
    }
    round_fX(att);

    // reference and bounds
    std::vector<double> dref((size_t)B * T * 3 * C, 0.0), dtol((size_t)B * T * 3 * C, 0.0);
    std::vector<double> dpre((size_t)T * T), bnd((size_t)T * T);
    for (int b = 0; b < B; b++) for (int h = 0; h < NH; h++) {
        auto Q = [&](int t, int i) { return (double)qkv[((size_t)b * T + t) * 3 * C + h * HS + i]; };
        auto K = [&](int t, int i) { return (double)qkv[((size_t)b * T + t) * 3 * C + C + h * HS + i]; };
        auto V = [&](int t, int i) { return (double)qkv[((size_t)b * T + t) * 3 * C + 2 * C + h * HS + i]; };
        auto DY = [&](int t, int i) { return (double)dout[((size_t)b * T + t) * C + h * HS + i]; };
        auto A = [&](int t, int t2) { return (double)att[(((size_t)b * NH + h) * T + t) * T + t2]; };
        std::fill(dpre.begin(), dpre.end(), 0.0);
        std::fill(bnd.begin(), bnd.end(), 0.0);
        for (int t = 0; t < T; t++) {
            std::vector<double> datt(t + 1), a(t + 1);
            double dot = 0.0, d = 0.0, dabs = 0.0;
            for (int t2 = 0; t2 <= t; t2++) {
                double s = 0.0, sabs = 0.0;
                for (int i = 0; i < HS; i++) { s += DY(t, i) * V(t2, i); sabs += fabs(DY(t, i) * V(t2, i)); }
                datt[t2] = s;
                a[t2] = (HS + 1) * U_32 * sabs + ROUND_FX(s);
                dot += A(t, t2) * s;
                d += A(t, t2) * a[t2];
                dabs += A(t, t2) * fabs(s);
            }
            d += (T + 2) * U_32 * dabs;
            for (int t2 = 0; t2 <= t; t2++) {
                double g = A(t, t2) * (datt[t2] - dot) * scale;
                dpre[(size_t)t * T + t2] = g;
                bnd[(size_t)t * T + t2] = A(t, t2) * scale * (a[t2] + d) + 4 * U_32 * fabs(g) + ROUND_FX(g);
            }
        }
        for (int t = 0; t < T; t++) {
            for (int i = 0; i < HS; i++) {
                double dq = 0, dqb = 0, dqa = 0, dk = 0, dkb = 0, dka = 0, dv = 0, dva = 0;
                for (int t2 = 0; t2 <= t; t2++) {  // dq_t: over keys t2 <= t
                    dq += dpre[(size_t)t * T + t2] * K(t2, i);
                    dqb += bnd[(size_t)t * T + t2] * fabs(K(t2, i));
                    dqa += fabs(dpre[(size_t)t * T + t2] * K(t2, i));
                }
                for (int t1 = t; t1 < T; t1++) {  // dk_t, dv_t: over queries t1 >= t
                    dk += dpre[(size_t)t1 * T + t] * Q(t1, i);
                    dkb += bnd[(size_t)t1 * T + t] * fabs(Q(t1, i));
                    dka += fabs(dpre[(size_t)t1 * T + t] * Q(t1, i));
                    dv += A(t1, t) * DY(t1, i);
                    dva += A(t1, t) * fabs(DY(t1, i));
                }
                size_t base = ((size_t)b * T + t) * 3 * C + h * HS + i;
                dref[base] = dq;         dtol[base] = dqb + (T + 1) * U_32 * dqa + ROUND_FX(dq);
                dref[base + C] = dk;     dtol[base + C] = dkb + (T + 1) * U_32 * dka + ROUND_FX(dk);
                dref[base + 2 * C] = dv; dtol[base + 2 * C] = (T + 1) * U_32 * dva + ROUND_FX(dv);
            }
        }
    }
    // split the check into dq, dk, dv
    size_t n3 = (size_t)B * T * C;
    std::vector<double> rq(n3), rk(n3), rv(n3), tq(n3), tk(n3), tv(n3);
    auto split = [&](const std::vector<float>& g, std::vector<float>& gq, std::vector<float>& gk, std::vector<float>& gv) {
        gq.resize(n3); gk.resize(n3); gv.resize(n3);
        for (size_t bt = 0; bt < (size_t)B * T; bt++) for (int c = 0; c < C; c++) {
            gq[bt * C + c] = g[bt * 3 * C + c]; gk[bt * C + c] = g[bt * 3 * C + C + c]; gv[bt * C + c] = g[bt * 3 * C + 2 * C + c];
        }
    };
    for (size_t bt = 0; bt < (size_t)B * T; bt++) for (int c = 0; c < C; c++) {
        rq[bt * C + c] = dref[bt * 3 * C + c]; tq[bt * C + c] = dtol[bt * 3 * C + c];
        rk[bt * C + c] = dref[bt * 3 * C + C + c]; tk[bt * C + c] = dtol[bt * 3 * C + C + c];
        rv[bt * C + c] = dref[bt * 3 * C + 2 * C + c]; tv[bt * C + c] = dtol[bt * 3 * C + 2 * C + c];
    }

    floatX* d_inp = to_device_x(qkv);
    floatX* d_att = to_device_x(att);
    floatX* d_dout = to_device_x(dout);
    floatX* d_dinp = dmalloc<floatX>(dref.size());
    floatX* d_datt = dmalloc<floatX>(att.size());
    floatX* d_scratch = dmalloc<floatX>(ATTENTION_BACKWARD_SCRATCH(B, T, C));
    attention_backward(d_dinp, d_datt, d_scratch, d_dout, d_inp, d_att, B, T, C, NH, 0);
    std::vector<floatX> bits = from_device(d_dinp, dref.size());
    std::vector<float> gq, gk, gv;
    split(from_device_x(d_dinp, dref.size()), gq, gk, gv);
    validate("dq (B,T,C of dinp)", gq, rq, tq);
    validate("dk (B,T,C of dinp)", gk, rk, tk);
    validate("dv (B,T,C of dinp)", gv, rv, tv);
    cudaCheck(cudaMemset(d_dinp, 0, dref.size() * sizeof(floatX)));
    attention_backward(d_dinp, d_datt, d_scratch, d_dout, d_inp, d_att, B, T, C, NH, 0);
    bitwise_equal("dinp, run 2", bits, from_device(d_dinp, dref.size()));
    cudaCheck(cudaFree(d_inp)); cudaCheck(cudaFree(d_att)); cudaCheck(cudaFree(d_dout)); cudaCheck(cudaFree(d_dinp));
    cudaCheck(cudaFree(d_datt)); cudaCheck(cudaFree(d_scratch));
}

int main(void) {
    print_header("attention_backward");
    cublas_init();
    run_case(2, 48, 64, 4, 1);
    run_case(1, 37, 96, 3, 2);
    run_case(2, 8, 32, 1, 3);

#if defined(SIMT_CPU)
    int bB = 2, bT = 32, bC = 64, bNH = 4;
#else
    int bB = 8, bT = 1024, bC = 768, bNH = 12;
#endif
    floatX* inp = dmalloc<floatX>((size_t)bB * bT * 3 * bC);
    floatX* dinp = dmalloc<floatX>((size_t)bB * bT * 3 * bC);
    floatX* dout = dmalloc<floatX>((size_t)bB * bT * bC);
    floatX* att = dmalloc<floatX>((size_t)bB * bNH * bT * bT);
    floatX* datt = dmalloc<floatX>((size_t)bB * bNH * bT * bT);
    floatX* scratch = dmalloc<floatX>(ATTENTION_BACKWARD_SCRATCH(bB, bT, bC));
    cudaCheck(cudaMemset(inp, 0, (size_t)bB * bT * 3 * bC * sizeof(floatX)));
    cudaCheck(cudaMemset(dout, 0, (size_t)bB * bT * bC * sizeof(floatX)));
    cudaCheck(cudaMemset(att, 0, (size_t)bB * bNH * bT * bT * sizeof(floatX)));
    float ms = benchmark_ms(BENCH_REPEATS, [&]() {
        attention_backward(dinp, datt, scratch, dout, inp, att, bB, bT, bC, bNH, 0);
    });
    printf("  bench B=%d T=%d C=%d NH=%d: %.4f ms\n", bB, bT, bC, bNH, ms);
    cudaCheck(cudaFree(inp)); cudaCheck(cudaFree(dinp)); cudaCheck(cudaFree(dout)); cudaCheck(cudaFree(att));
    cudaCheck(cudaFree(datt)); cudaCheck(cudaFree(scratch));
    cublas_destroy();
    return test_summary();
}
