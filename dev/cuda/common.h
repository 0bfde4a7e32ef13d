// dev/cuda/common.h -- helpers shared by the kernel tests in dev/cuda/*.cu (host side only).
//
//   Rng                         fixed-seed xorshift64*: uniform(lo, hi), randint(n)
//   round_fX(v)                 round a host vector in place to floatX values (what the device will hold), so
//                               the CPU reference runs on exactly the GPU's inputs and only the kernel's own
//                               arithmetic and output rounding are measured
//   to_device(v) / from_device  cudaMalloc + copy (float, int, double; floatX through to_device_x/from_device_x)
//   validate(name, got, ref, tol)  |got[i] - ref[i]| <= tol[i] for every i (NaN never passes); one check;
//                               prints max |err|, max |err|/tol and the worst element
//   validate(name, got, ref, atol, rtol)  the same with tol[i] = atol + rtol*|ref[i]|
//   check(cond, fmt, ...)       one check
//   bitwise_equal(name, a, b)   two host vectors with identical bytes (the determinism checks); one check
//   benchmark_ms(repeats, fn)   mean time of fn() by cudaEvents (host time under the SIMT CPU runtime);
//                               KERNEL_BENCH=once (scripts/gpu_check.sh's sanitizer runs): fn() once, untimed
//                               (NaN), so the GPT-2-sized shapes are checked without 20 slow instrumented runs
//   test_summary()              prints "N passed, N failed" (the last line) and returns the exit status
//   U_FX                        the unit roundoff of floatX: 2^-24 (FP32), 2^-8 (BF16), 2^-11 (FP16): one
//                               round-to-nearest changes a value by at most U_FX relative
//   U_32                        2^-24, fp32's unit roundoff
//   ROUND_FX(x)                 the bound of one rounding of x to floatX: U_FX |x| + half the smallest subnormal
//                               (2^-25 in FP16, where small gradients are subnormal; 2^-134 BF16, 2^-150 FP32)
#pragma once
#include "../../llmc/cuda_common.h"
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <vector>

#define U_32 (1.0 / 16777216.0)
#if defined(ENABLE_FP32)
#define U_FX U_32
#define UNDERFLOW_FX ldexp(1.0, -150)
#elif defined(ENABLE_FP16)
#define U_FX (1.0 / 2048.0)
#define UNDERFLOW_FX ldexp(1.0, -25)
#else
#define U_FX (1.0 / 256.0)
#define UNDERFLOW_FX ldexp(1.0, -134)
#endif
#define ROUND_FX(x) (U_FX * fabs((double)(x)) + UNDERFLOW_FX)
// The GELU and DGELU epilogues of matmul_forward/backward: how accurately they evaluate gelu(x) and gelu'(x),
// tanh included, and whether they round the GEMM result to floatX before the activation. cuBLASLt documents
// neither; on its first GPU run (H200, cuBLASLt 13.1.0) the FP32 errors exceeded an exact-tanh bound by up to
// 15% and the BF16 DGELU output was off by up to 0.88 of its ulp, which one rounding cannot give. So DGELU rounds
// the product first, everywhere: SIMT's cuBLASLt shim now does too (dev/simt/cublas_cpu.cpp). On a GPU the GELU
// may as well, and tanh is allowed the relative error PTX documents for tanh.approx.f32, 2^-11: through
// gelu = x (1 + tanh(u)) / 2 that is |x| |tanh| 2^-12, through gelu' below its derivative in tanh. The shim's
// GELU rounds once and its tanh is libm's, within 16 u (|x| + 1).
#define EPILOGUE_DGELU_ROUNDS_PRODUCT 1
#if defined(SIMT_CPU)
#define EPILOGUE_GELU_ROUNDS_PRODUCT 0
static inline double epilogue_gelu_err(double x) { return 16 * U_32 * (fabs(x) + 1.0); }
static inline double epilogue_gelu_grad_err(double x) { return 16 * U_32 * (fabs(x) + 1.0); }
#else
#define EPILOGUE_GELU_ROUNDS_PRODUCT 1
static inline double epilogue_tanh(double x) { return tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)); }
static inline double epilogue_gelu_err(double x) {
    return fabs(x) * fabs(epilogue_tanh(x)) * ldexp(1.0, -12) + 16 * U_32 * (fabs(x) + 1.0);
}
// gelu'(x) = (1 + th) / 2 + x (1 - th^2) k (1 + 3 a x^2) / 2, so |d gelu' / d th| <= 1/2 + |x th| k (1 + 3 a x^2)
static inline double epilogue_gelu_grad_err(double x) {
    double th = fabs(epilogue_tanh(x)), slope = 0.5 + fabs(x) * th * 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * x * x);
    return slope * th * ldexp(1.0, -11) + 16 * U_32 * (fabs(x) + 1.0);
}
#endif

// ----------------------------------------------------------------------------
// bookkeeping

static int tests_passed = 0, tests_failed = 0;

static void check(bool ok, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(bool ok, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("  %s ", ok ? "ok  " : "FAIL");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    if (ok) { tests_passed++; } else { tests_failed++; }
    fflush(stdout);
}

static int test_summary(void) {
    printf("%d passed, %d failed\n", tests_passed, tests_failed);
    fflush(stdout);
    return tests_failed == 0 ? 0 : 1;
}

// ----------------------------------------------------------------------------
// random inputs

struct Rng {
    uint64_t s;
    explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
    uint64_t next() {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        return s * 0x2545F4914F6CDD1Dull;
    }
    float uniform(float lo, float hi) { return lo + (hi - lo) * (float)((next() >> 40) * (1.0 / 16777216.0)); }
    int randint(int n) { return (int)(next() % (uint64_t)n); }
    std::vector<float> vec(size_t n, float lo, float hi) {
        std::vector<float> v(n);
        for (size_t i = 0; i < n; i++) { v[i] = uniform(lo, hi); }
        return v;
    }
};

static void round_fX(std::vector<float>& v) {
    for (size_t i = 0; i < v.size(); i++) { v[i] = to_f32(to_fX(v[i])); }
}

// ----------------------------------------------------------------------------
// device memory

template <class T>
static T* dmalloc(size_t n) {
    T* p = NULL;
    cudaCheck(cudaMalloc((void**)&p, (n > 0 ? n : 1) * sizeof(T)));
    return p;
}

template <class T>
static T* to_device(const std::vector<T>& v) {
    T* p = dmalloc<T>(v.size());
    cudaCheck(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
    return p;
}

template <class T>
static std::vector<T> from_device(const T* p, size_t n) {
    std::vector<T> v(n);
    cudaCheck(cudaDeviceSynchronize());
    cudaCheck(cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return v;
}

// float values -> floatX device array (rounded to nearest even)
static floatX* to_device_x(const std::vector<float>& v) {
    std::vector<floatX> x(v.size());
    for (size_t i = 0; i < v.size(); i++) { x[i] = to_fX(v[i]); }
    return to_device(x);
}

static void copy_to_device_x(floatX* d, const std::vector<float>& v) {
    std::vector<floatX> x(v.size());
    for (size_t i = 0; i < v.size(); i++) { x[i] = to_fX(v[i]); }
    cudaCheck(cudaMemcpy(d, x.data(), x.size() * sizeof(floatX), cudaMemcpyHostToDevice));
}

static std::vector<float> from_device_x(const floatX* d, size_t n) {
    std::vector<floatX> x = from_device(d, n);
    std::vector<float> v(n);
    for (size_t i = 0; i < n; i++) { v[i] = to_f32(x[i]); }
    return v;
}

// ----------------------------------------------------------------------------
// validation

template <class G, class R>
static bool validate(const char* name, const std::vector<G>& got, const std::vector<R>& ref,
                     const std::vector<double>& tol) {
    size_t n = ref.size();
    if (got.size() != n || tol.size() != n) {
        check(false, "%s: size mismatch (%zu, %zu, %zu)", name, got.size(), n, tol.size());
        return false;
    }
    double max_err = 0.0, max_ratio = 0.0, max_ref = 0.0;
    size_t worst = 0, bad = 0;
    for (size_t i = 0; i < n; i++) {
        double g = (double)got[i], r = (double)ref[i];
        double err = fabs(g - r);
        bool ok = err <= tol[i];  // false for NaN
        if (!ok) {
            if (bad < 5) { printf("    %s[%zu]: got %.9g, ref %.9g, |err| %.3g > tol %.3g\n", name, i, g, r, err, tol[i]); }
            bad++;
        }
        double ratio = tol[i] > 0 ? err / tol[i] : (err > 0 ? INFINITY : 0.0);
        if (!(ratio <= max_ratio)) { max_ratio = ratio; worst = i; }
        if (!(err <= max_err)) { max_err = err; }
        if (fabs(r) > max_ref) { max_ref = fabs(r); }
    }
    check(bad == 0, "%-28s n=%-7zu max|err| %.3e (max|ref| %.3e)  max|err|/tol %.3f at [%zu]%s", name, n, max_err,
          max_ref, max_ratio, worst, bad ? "  <-- mismatches" : "");
    return bad == 0;
}

template <class G, class R>
static bool validate(const char* name, const std::vector<G>& got, const std::vector<R>& ref, double atol, double rtol) {
    std::vector<double> tol(ref.size());
    for (size_t i = 0; i < ref.size(); i++) { tol[i] = atol + rtol * fabs((double)ref[i]); }
    return validate(name, got, ref, tol);
}

template <class T>
static bool bitwise_equal(const char* name, const std::vector<T>& a, const std::vector<T>& b) {
    bool ok = a.size() == b.size() && memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
    check(ok, "%-28s bitwise identical (%zu elements)", name, a.size());
    return ok;
}

// ----------------------------------------------------------------------------
// benchmark

template <class F>
static float benchmark_ms(int repeats, F&& fn) {
    fn();  // warm-up
    const char* mode = getenv("KERNEL_BENCH");
    if (mode && strcmp(mode, "once") == 0) {
        cudaCheck(cudaDeviceSynchronize());
        return NAN;
    }
    cudaEvent_t start, stop;
    cudaCheck(cudaEventCreate(&start));
    cudaCheck(cudaEventCreate(&stop));
    cudaCheck(cudaEventRecord(start, 0));
    for (int i = 0; i < repeats; i++) { fn(); }
    cudaCheck(cudaEventRecord(stop, 0));
    cudaCheck(cudaEventSynchronize(stop));
    float ms = 0.0f;
    cudaCheck(cudaEventElapsedTime(&ms, start, stop));
    cudaCheck(cudaEventDestroy(start));
    cudaCheck(cudaEventDestroy(stop));
    return ms / repeats;
}

// Shapes: small under the SIMT CPU runtime (CI), GPT-2 124M-like on a GPU.
#if defined(SIMT_CPU)
#define BENCH_REPEATS 2
#else
#define BENCH_REPEATS 20
#endif

static void print_header(const char* test) {
    printf("%s [%s]%s\n", test, PRECISION_NAME,
#if defined(SIMT_CPU)
           " (SIMT CPU runtime)"
#else
           ""
#endif
    );
}
