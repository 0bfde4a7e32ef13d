// Test of the multi-tensor squared norm (GlobalNorm, global_norm_squared) and is_finite_norm (llmc/global_norm.cuh).
// Build and run: make -f dev/cuda/cuda.mk test_cuda_kernels, or on a GPU
//   nvcc -std=c++17 -O3 -DENABLE_BF16 dev/cuda/global_norm.cu -o global_norm -lcublas -lcublasLt
//
// A table of pieces of one gradient buffer: sizes from 1 float to several chunks and a tail, 16-byte aligned
// and not (the 128-bit and the scalar path), two pieces in one slot, a slot without pieces.
// Reference: per slot, sum of (g * scale)^2 in double in index order. x = g * scale is exact in double (24-bit
// by 24-bit mantissas) and x * x is rounded as the kernel rounds it, so the two differ only in the order of
// the n additions of positive terms: each order is within (n - 1) 2^-53 of the exact sum, tolerance
// n 2^-52 |ref|. The gradients are fp32 in every precision, so the tolerance does not depend on floatX.
// Order checks (what makes the trainer's norm the same at every pipeline depth): each slot's bits are the same
// in the whole table, in a table of its pieces alone, and in a table that lists other pieces first; a piece
// gives the same bits at another alignment; two runs give the same bits.
// Loss-scaler checks: an inf or a NaN in one piece makes its slot (and so the norm) non-finite and leaves the
// others; scale unscales (checked against the reference at 1, 1/1024 and 0.3).
#include "common.h"
#include "../../llmc/global_norm.cuh"

struct PieceSpec { size_t offset, count; int slot; };

static std::vector<double> norm_ref(const std::vector<float>& g, const std::vector<PieceSpec>& ps, int slots,
                                    double scale, std::vector<double>* tol) {
    std::vector<double> s(slots, 0.0);
    std::vector<size_t> n(slots, 0);
    for (const PieceSpec& p : ps) {
        for (size_t i = 0; i < p.count; i++) { double x = (double)g[p.offset + i] * scale; s[p.slot] += x * x; }
        n[p.slot] += p.count;
    }
    tol->resize(slots);
    for (int k = 0; k < slots; k++) { (*tol)[k] = n[k] * ldexp(1.0, -52) * s[k]; }
    return s;
}

// global_norm_squared over a table of `ps` on buffer d_g; the slots' values
static std::vector<double> run_table(const float* d_g, const std::vector<PieceSpec>& ps, int slots, float scale) {
    std::vector<NormPiece> pieces;
    for (const PieceSpec& p : ps) { pieces.push_back(NormPiece{d_g + p.offset, p.count, p.slot}); }
    GlobalNorm gn;
    global_norm_init(&gn, pieces.data(), (int)pieces.size(), slots, 0);
    double* d_out = dmalloc<double>(slots);
    global_norm_squared(d_out, &gn, scale, 0);
    std::vector<double> out = from_device(d_out, slots);
    cudaCheck(cudaFree(d_out));
    global_norm_free(&gn);
    return out;
}

int main(void) {
    print_header("global_norm");
    Rng rng(1);
    size_t C = GLOBAL_NORM_CHUNK;
    // slot 3 has no piece; slot 4 has two
    std::vector<PieceSpec> ps = {{0, 1, 0}, {64, 1000, 1}, {1089, 100003, 2}, {101124, 3 * C + 5, 4},
                                 {201000, 2 * C, 5}, {301001, 250007, 4}};
    int slots = 6;
    size_t n = 560000;
    std::vector<float> g = rng.vec(n, -1.0f, 1.0f);
    for (size_t i = 0; i < n; i += 1000) { g[i] *= 1000.0f; }
    float* d_g = to_device(g);
    for (const PieceSpec& p : ps) {
        printf(" piece at %zu (%s), %zu floats, slot %d\n", p.offset, is_aligned16(d_g + p.offset) ? "16-byte aligned" : "unaligned",
               p.count, p.slot);
    }
    float scales[] = {1.0f, 1.0f / 1024.0f, 0.3f};
    for (float scale : scales) {
        std::vector<double> tol;
        std::vector<double> ref = norm_ref(g, ps, slots, scale, &tol);
        std::vector<double> out = run_table(d_g, ps, slots, scale);
        char name[64];
        snprintf(name, sizeof name, "norm^2 per slot, scale %g", scale);
        validate(name, out, ref, tol);
        check(out[3] == 0.0, "a slot without pieces is 0 (%g)", out[3]);
        bitwise_equal("norm^2 per slot, run 2", out, run_table(d_g, ps, slots, scale));
    }

    // the same slot, whatever else the table holds (a stage's slots at any pipeline depth)
    std::vector<double> whole = run_table(d_g, ps, slots, 1.0f);
    for (int s = 0; s < slots; s++) {
        std::vector<PieceSpec> alone, others_first;
        for (const PieceSpec& p : ps) { if (p.slot != s) { others_first.push_back(PieceSpec{p.offset, p.count, 0}); } }
        for (const PieceSpec& p : ps) {
            if (p.slot == s) { alone.push_back(PieceSpec{p.offset, p.count, 0}); others_first.push_back(PieceSpec{p.offset, p.count, 1}); }
        }
        double a = run_table(d_g, alone, 1, 1.0f)[0], b = run_table(d_g, others_first, 2, 1.0f)[1];
        check(memcmp(&a, &whole[s], sizeof a) == 0 && memcmp(&b, &whole[s], sizeof b) == 0,
              "slot %d: the same bits alone (%.17g) and after other pieces (%.17g) as in the whole table (%.17g)", s, a,
              b, whole[s]);
    }
    // the same piece at another alignment: the scalar path sums in the 128-bit path's order
    {
        const PieceSpec& p = ps[3];
        float* d_shift = dmalloc<float>(p.count + 1);
        cudaCheck(cudaMemcpy(d_shift + 1, d_g + p.offset, p.count * sizeof(float), cudaMemcpyDeviceToDevice));
        std::vector<PieceSpec> at0 = {{0, p.count, 0}}, at1 = {{1, p.count, 0}};
        std::vector<double> a = run_table(d_g + p.offset, at0, 1, 1.0f), b = run_table(d_shift, at1, 1, 1.0f);
        check(is_aligned16(d_g + p.offset) != is_aligned16(d_shift + 1) && memcmp(&a[0], &b[0], sizeof(double)) == 0,
              "%zu floats 16-byte aligned and 4 bytes off: the same bits (%.17g, %.17g)", p.count, a[0], b[0]);
        cudaCheck(cudaFree(d_shift));
    }

    // inf and nan: that slot only
    float bad[] = {INFINITY, -INFINITY, NAN};
    for (float b : bad) {
        size_t at = ps[5].offset + ps[5].count / 2;
        cudaCheck(cudaMemcpy(d_g + at, &b, sizeof(float), cudaMemcpyHostToDevice));
        std::vector<double> out = run_table(d_g, ps, slots, 1.0f / 65536.0f);
        bool others_finite = true;
        for (int s = 0; s < slots; s++) { if (s != ps[5].slot) { others_finite &= is_finite_norm((float)out[s]); } }
        double x = out[ps[5].slot];
        check(!is_finite_norm((float)x) && (isnan(b) ? isnan(x) : isinf(x)) && others_finite,
              "one %g at [%zu] -> its slot %g, is_finite_norm false; the other slots finite", b, at, x);
        cudaCheck(cudaMemcpy(d_g + at, &g[at], sizeof(float), cudaMemcpyHostToDevice));
    }
    std::vector<double> fin = run_table(d_g, ps, slots, 1.0f);
    double sum = 0.0;
    for (double v : fin) { sum += v; }
    check(is_finite_norm((float)sqrt(sum)), "finite gradients -> is_finite_norm true");
    cudaCheck(cudaFree(d_g));

#if defined(SIMT_CPU)
    size_t bn = 1000000;
#else
    size_t bn = 124475904;  // GPT-2 124M
#endif
    float* bg = dmalloc<float>(bn);
    cudaCheck(cudaMemset(bg, 0, bn * sizeof(float)));
    // GPT-2's tensors per layer as pieces: 12 slots of a 124M-like split of bn
    const int bslots = 12;
    NormPiece bp[bslots];
    for (int s = 0; s < bslots; s++) { bp[s] = NormPiece{bg + bn / bslots * s, bn / bslots, s}; }
    GlobalNorm gn;
    global_norm_init(&gn, bp, bslots, bslots, 0);
    double* d_out = dmalloc<double>(bslots);
    float ms = benchmark_ms(BENCH_REPEATS, [&]() { global_norm_squared(d_out, &gn, 1.0f, 0); });
    printf("  bench n=%zu in %d pieces: %.4f ms, %.1f GB/s\n", bn, bslots, ms, (double)bn * 4 / (ms * 1e6));
    global_norm_free(&gn);
    cudaCheck(cudaFree(bg)); cudaCheck(cudaFree(d_out));
    return test_summary();
}
