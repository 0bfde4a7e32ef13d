// Self-tests of the SIMT runtime (sim mode only): ordinary CUDA kernels checked against plain C
// references, then deliberately broken kernels, each run in a forked child with a timeout and
// checked for the right report (kind, kernel, launch site, block/thread, source line).
// Run by `make test_simt` under SIMT_SCHED=forward, reverse and random, and once with ASan+UBSan.
// Lines that a report must name carry a "BUG:<tag>" marker; the test looks them up in this file.
#ifndef SIMT_CPU
#error "simt_selftest.cu tests the SIMT CPU runtime; build it in sim mode (dev/simt/simt.mk)"
#endif
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>
#include "simt_test_util.h"
#include "simt_test_kernels.cuh"  // layernorm + warp reductions, shared with the benchmark

using namespace simt_test;
static const char* kFile = __FILE__;
static std::string bug_at(const char* tag) { return at_line(kFile, line_of_marker(kFile, (std::string("BUG:") + tag).c_str())); }
static const char* sched_name() { const char* s = getenv("SIMT_SCHED"); return s ? s : "forward"; }

#if defined(__SANITIZE_ADDRESS__)  // gcc
#define SELFTEST_ASAN 1
#elif defined(__has_feature)      // clang
#if __has_feature(address_sanitizer)
#define SELFTEST_ASAN 1
#endif
#endif

// ================================================================ kernels that must work
// ---- causal softmax: one block per row, static shared memory, two barriers per reduction
__device__ float block_reduce(float v, bool is_max) {
  __shared__ float partial[32];
  int lane = threadIdx.x % 32, wid = threadIdx.x / 32, nw = blockDim.x / 32;
  v = is_max ? warp_max(v) : warp_sum(v);
  if (lane == 0) partial[wid] = v;
  __syncthreads();
  v = lane < nw ? partial[lane] : (is_max ? -FLT_MAX : 0.f);
  v = is_max ? warp_max(v) : warp_sum(v);
  __syncthreads();  // partial[] is reused by the next call
  return v;
}
__global__ void softmax_causal(float* out, const float* inp, int T, float scale) {
  int row = blockIdx.x, t = row % T;
  const float* x = inp + (size_t)row * T;
  float mx = -FLT_MAX;
  for (int j = threadIdx.x; j <= t; j += blockDim.x) mx = fmaxf(mx, x[j] * scale);
  mx = block_reduce(mx, true);
  float sum = 0.f;
  for (int j = threadIdx.x; j <= t; j += blockDim.x) sum += __expf(x[j] * scale - mx);
  sum = block_reduce(sum, false);
  for (int j = threadIdx.x; j < T; j += blockDim.x) out[(size_t)row * T + j] = j <= t ? __fdividef(__expf(x[j] * scale - mx), sum) : 0.f;
}

// ---- histogram: shared-memory privatisation with atomics, then global atomics
__global__ void histogram256(unsigned* hist, const unsigned char* data, int n, float* total, const float* vals) {
  __shared__ unsigned h[256];
  for (int i = threadIdx.x; i < 256; i += blockDim.x) h[i] = 0;
  __syncthreads();
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    atomicAdd(&h[data[i]], 1u);
    atomicAdd(total, vals[i]);
  }
  __syncthreads();
  for (int i = threadIdx.x; i < 256; i += blockDim.x) atomicAdd(&hist[i], h[i]);
}

// ---- dynamic shared memory tree reduction, one block per row
__global__ void rowsum_dyn(float* out, const float* in, int C) {
  extern __shared__ float buf[];
  float s = 0.f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) s += in[(size_t)blockIdx.x * C + c];
  buf[threadIdx.x] = s;
  __syncthreads();
  for (int k = blockDim.x / 2; k > 0; k >>= 1) {
    if ((int)threadIdx.x < k) buf[threadIdx.x] += buf[threadIdx.x + k];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = buf[0];
}
// touches every byte of a big dynamic smem buffer (needs the opt-in above 48 KiB)
__global__ void big_smem(float* out, int nfloat) {
  extern __shared__ __align__(16) float big[];
  for (int i = threadIdx.x; i < nfloat; i += blockDim.x) big[i] = (float)i;
  __syncthreads();
  float s = 0.f;
  for (int i = threadIdx.x; i < nfloat; i += blockDim.x) s += big[nfloat - 1 - i];
  s = block_reduce(s, false);
  if (threadIdx.x == 0) out[0] = s;
}

// ---- warp-level: sub-warp widths, votes, block votes, broadcast, activemask
__global__ void warp_ops(int* out) {
  int t = threadIdx.x, lane = t % 32;
  int v = lane;
  if (lane < 16) v += __shfl_down_sync(0x0000ffffu, v, 1, 16);   // disjoint masks, legal divergence
  else           v += __shfl_up_sync(0xffff0000u, v, 1, 16);
  int* o = out + t * 12;
  o[0] = v;
  o[1] = (int)__ballot_sync(0xffffffffu, v % 2);
  o[2] = __any_sync(0xffffffffu, lane == 7);
  o[3] = __all_sync(0xffffffffu, lane < 31);
  o[4] = __shfl_sync(0xffffffffu, lane * 10, 5);                  // broadcast from lane 5
  o[5] = __shfl_sync(0xffffffffu, lane * 10, lane + 1, 8);        // rotate inside segments of 8
  o[6] = __shfl_xor_sync(0xffffffffu, lane, 4, 8);
  o[7] = __syncthreads_count(v > 20);
  o[8] = __syncthreads_and(lane < 32);
  o[9] = __syncthreads_or(t == 3);
  __syncwarp();
  o[10] = (int)__activemask();
  o[11] = __shfl_up_sync(0xffffffffu, lane, 3);                   // lanes 0-2 keep their own value
}

// ---- a tree reduction over a half-warp mask: lanes 8-15 read lanes 16-23, which are not in the
// mask (undefined values), but lane 0's sum never uses them and must be exact; lane 15's result
// does use one and must come out poisoned.
__global__ void partial_mask_sum(int* out, const int* in) {
  unsigned mask = __ballot_sync(0xffffffffu, threadIdx.x < 16);
  if (threadIdx.x < 16) {
    int v = in[threadIdx.x];
    for (int o = 8; o > 0; o /= 2) v += __shfl_down_sync(mask, v, o);
    if (threadIdx.x == 0) out[0] = v;
    if (threadIdx.x == 15) out[1] = v;
  }
}

// ---- shuffles of every payload type the kernels use
__global__ void shuffle_types(float* out) {
  int lane = threadIdx.x;
  __nv_bfloat16 b = __float2bfloat16((float)lane);
  __nv_bfloat162 b2 = __floats2bfloat162_rn((float)lane, (float)-lane);
  __half h = __float2half((float)lane);
  __half2 h2 = __floats2half2_rn((float)lane, 0.5f);
  double d = lane * 1.5;
  int4 i4 = make_int4(lane, lane + 1, lane + 2, lane + 3);
  float4 f4 = make_float4(lane, 2.f * lane, 0.f, 1.f);
  b = __shfl_xor_sync(0xffffffffu, b, 1);
  b2 = __shfl_xor_sync(0xffffffffu, b2, 2);
  h = __shfl_down_sync(0xffffffffu, h, 1);
  h2 = __shfl_sync(0xffffffffu, h2, 0);
  d = __shfl_xor_sync(0xffffffffu, d, 16);
  i4 = __shfl_xor_sync(0xffffffffu, i4, 3);
  f4 = __shfl_up_sync(0xffffffffu, f4, 1);
  float* o = out + lane * 12;
  o[0] = __bfloat162float(b); o[1] = __low2float(b2); o[2] = __high2float(b2); o[3] = __half2float(h);
  o[4] = __low2float(h2); o[5] = __high2float(h2); o[6] = (float)d; o[7] = (float)i4.x; o[8] = (float)i4.w;
  o[9] = f4.x; o[10] = f4.y;
  // half/bf16 vector arithmetic from the real headers
  __nv_bfloat162 s = __hadd2(b2, __floats2bfloat162_rn(1.f, 1.f));
  o[11] = __low2float(s) + __high2float(__hmul2(h2, h2));
}

// ---- atomics of every kind the issue lists, all threads hammering the same words
struct AtomicOut {
  int iadd, isub, imin, imax, iexch_seen, icas_count; unsigned uadd, umin, umax, uinc;
  unsigned long long uladd, ulmax, ulcas; float fadd, fmax; double dadd; __nv_bfloat16 badd; __half hadd;
  __nv_bfloat162 b2add; int pad;
};
__global__ void atomics_all(AtomicOut* a) {
  int t = blockIdx.x * blockDim.x + threadIdx.x;
  atomicAdd(&a->iadd, 2);
  atomicSub(&a->isub, 1);
  atomicMin(&a->imin, 1000 - t);
  atomicMax(&a->imax, t);
  atomicExch(&a->iexch_seen, t);
  // CAS loop: count successful increments
  int old = a->icas_count, assumed;
  do { assumed = old; old = atomicCAS(&a->icas_count, assumed, assumed + 1); } while (old != assumed);
  atomicAdd(&a->uadd, 3u);
  atomicMin(&a->umin, 5000u - (unsigned)t);
  atomicMax(&a->umax, (unsigned)t * 2);
  atomicInc(&a->uinc, 99u);  // wraps to 0 after 99
  atomicAdd(&a->uladd, 1ull << 33);
  atomicMax(&a->ulmax, (unsigned long long)t << 40);
  unsigned long long o2 = a->ulcas, a2;
  do { a2 = o2; o2 = atomicCAS(&a->ulcas, a2, a2 + 7); } while (o2 != a2);
  atomicAdd(&a->fadd, 0.25f);
  atomicMax(&a->fmax, (float)t * 0.5f);
  atomicAdd(&a->dadd, 0.125);
  atomicAdd(&a->badd, __float2bfloat16(1.f));
  atomicAdd(&a->hadd, __float2half(1.f));
  atomicAdd(&a->b2add, __floats2bfloat162_rn(1.f, 2.f));
}

// ---- 3-D grids and blocks: each thread records its coordinates
__global__ void coords(int* out) {
  int bx = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  int tx = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  int g = bx * blockDim.x * blockDim.y * blockDim.z + tx;
  out[g * 4 + 0] = threadIdx.x + 100 * threadIdx.y + 10000 * threadIdx.z;
  out[g * 4 + 1] = blockIdx.x + 100 * blockIdx.y + 10000 * blockIdx.z;
  out[g * 4 + 2] = blockDim.x + 100 * blockDim.y + 10000 * blockDim.z;
  out[g * 4 + 3] = gridDim.x + 100 * gridDim.y + 10000 * gridDim.z;
}

// ---- device math used by our kernels
__global__ void math_funcs(float* out, const float* in, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float x = __ldg(in + i);
  out[i * 6 + 0] = __expf(x);
  out[i * 6 + 1] = rsqrtf(fabsf(x) + 1.f);
  out[i * 6 + 2] = tanhf(x);
  out[i * 6 + 3] = __fdividef(x, 3.f);
  out[i * 6 + 4] = __logf(fabsf(x) + 1.f);
  out[i * 6 + 5] = (float)(__popc((unsigned)i) + __clz(i + 1) + __ffs(i)) + __saturatef(x);
}

// ---- templates with deduced arguments, namespaces, multi-line launches
namespace ns {
template <class Tp, class Tg> __global__ void axpy(Tp* y, const Tg* x, float a, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = (Tp)((float)y[i] + a * (float)x[i]);
}
}  // namespace ns

// ---- missing __syncthreads (a real bug, found by poisoned smem and the thread orders)
__global__ void racy_shift(float* out, const float* in) {
  __shared__ float s[256];
  s[threadIdx.x] = in[threadIdx.x];
  // __syncthreads();  <- missing
  out[threadIdx.x] = s[(threadIdx.x + 1) % blockDim.x];
}
__global__ void read_uninit(float* out, const float* never_written) {
  out[threadIdx.x] = never_written[threadIdx.x] + 1.f;  // BUG:read_uninit
}

// ================================================================ broken kernels
__global__ void bad_shuffle(float* out, const float* in) {
  int lane = threadIdx.x % 32;
  if (lane >= 16) return;
  float v = in[threadIdx.x];
  v += __shfl_xor_sync(0xffffffffu, v, 16);  // BUG:bad_shuffle (lanes 16-31 returned)
  out[threadIdx.x] = v;
}
__global__ void barrier_in_branch(float* out) {
  if (threadIdx.x < 16) __syncthreads();  // BUG:barrier_in_branch
  out[threadIdx.x] = 1.f;
}
__global__ void two_barriers(float* out) {
  if (threadIdx.x % 2) __syncthreads();  // BUG:two_barriers_a
  else __syncthreads();                  // BUG:two_barriers_b
  out[threadIdx.x] = 1.f;
}
__global__ void deadlock_kernel(float* out) {
  float v = (float)threadIdx.x;
  if (threadIdx.x != 0) v = __shfl_xor_sync(0xffffffffu, v, 1);  // BUG:deadlock_shfl (lane 0 never comes)
  __syncthreads();  // BUG:deadlock_bar
  out[threadIdx.x] = v;
}
__global__ void divergent_intrinsics(int* out) {
  int lane = threadIdx.x;
  if (lane < 16) out[lane] = (int)__ballot_sync(0xffffffffu, 1);
  else out[lane] = __shfl_sync(0xffffffffu, lane, 0);  // BUG:divergent_intrinsics
}
__global__ void not_in_mask(int* out) { out[threadIdx.x] = __shfl_sync(0x1u, (int)threadIdx.x, 0); }  // BUG:not_in_mask
__global__ void bad_width(int* out) { out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, (int)threadIdx.x, 1, 12); }  // BUG:bad_width
__global__ void trap_kernel(int* out) { if (threadIdx.x == 5) __trap(); out[threadIdx.x] = 1; }  // BUG:trap
__device__ int deep(int n) {
  volatile char big[4096];
  big[n % 4096] = (char)n;
  return n ? deep(n - 1) + big[0] : 0;  // BUG:deep (the frames of this recursion fill the stack)
}
__global__ void stack_hog(int* out) { out[threadIdx.x] = deep(1000); }
__global__ void spin_on_other_block(volatile int* flag, int* ticket) {
  if (atomicAdd(ticket, 1) == 0) { while (*flag == 0) {} }  // BUG:spin (the other block would set it, but runs later)
  else *flag = 1;
}
__global__ void wild_read(int* out) {
  int* volatile p = (int*)(uintptr_t)64;  // a wild (non-null) address: a plain SIGSEGV, not UB the compiler may fold
  out[threadIdx.x] = p[threadIdx.x];  // BUG:wild_read
}
__global__ void copy_shift(float* out, const float* in, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = in[i + 1];  // BUG:oob (reads in[n] in the last thread)
}
__global__ void misaligned_load(float* out, const float* in) {
  int4 v = *reinterpret_cast<const int4*>(in + 1);  // BUG:misaligned (16-byte load at a 4-byte offset)
  out[0] = __int_as_float(v.x);
}
__global__ void smem_overrun(float* out) {
  __shared__ float s[32];
  s[threadIdx.x] = 1.f;  // BUG:smem_overrun (64 threads, 32 slots)
  __syncthreads();
  out[threadIdx.x] = s[threadIdx.x % 32];
}

// ================================================================ host side
static void ref_layernorm(const std::vector<float>& x, const std::vector<float>& w, const std::vector<float>& b, int N,
                          int C, std::vector<float>& y, std::vector<float>& mean, std::vector<float>& rstd) {
  for (int n = 0; n < N; n++) {
    double m = 0, v = 0;
    for (int c = 0; c < C; c++) m += x[(size_t)n * C + c];
    m /= C;
    for (int c = 0; c < C; c++) { double d = x[(size_t)n * C + c] - m; v += d * d; }
    double r = 1.0 / sqrt(v / C + 1e-5);
    for (int c = 0; c < C; c++) y[(size_t)n * C + c] = (float)((x[(size_t)n * C + c] - m) * r * w[c] + b[c]);
    mean[n] = (float)m; rstd[n] = (float)r;
  }
}

static void test_layernorm() {
  const int N = 256, C = 768;  // 256 rows of GPT-2 small width (also the timing the README quotes)
  std::mt19937 rng(42); std::normal_distribution<float> nd(0.5f, 2.0f);
  std::vector<float> x((size_t)N * C), w(C), b(C), y((size_t)N * C), m(N), r(N);
  for (auto& v : x) v = nd(rng);
  for (auto& v : w) v = 1.0f + 0.1f * nd(rng);
  for (auto& v : b) v = 0.1f * nd(rng);
  ref_layernorm(x, w, b, N, C, y, m, r);
  float *dx = to_device(x), *dw = to_device(w), *db = to_device(b), *dy, *dm, *dr;
  cudaMalloc(&dy, x.size() * 4); cudaMalloc(&dm, N * 4); cudaMalloc(&dr, N * 4);
  double t0 = now_s();
  layernorm_forward(dy, dm, dr, dx, dw, db, N, C, 128);
  double t1 = now_s();
  CHECK(cudaGetLastError() == cudaSuccess, "layernorm f32 launch");
  printf("layernorm f32 %dx%d: %.2f ms (%s)\n", N, C, (t1 - t0) * 1e3, sched_name());
  // fp32 sums of 768 terms against a double reference: relative error ~1e-6; allow 1e-5.
  validate("layernorm f32 out", from_device(dy, x.size()).data(), y.data(), x.size(), 1e-5, 1e-5);
  validate("layernorm f32 mean", from_device(dm, N).data(), m.data(), N, 1e-5, 1e-5);
  validate("layernorm f32 rstd", from_device(dr, N).data(), r.data(), N, 0, 1e-5);
  // bf16: reference computed from the bf16-rounded inputs; the output is one bf16 rounding of
  // a float result, so 2^-8 relative (half an ulp of bf16's 8-bit mantissa) plus float noise.
  std::vector<__nv_bfloat16> xb(x.size()), wb(C), bb(C);
  std::vector<float> xr(x.size()), wr(C), br(C);
  for (size_t i = 0; i < x.size(); i++) { xb[i] = __float2bfloat16(x[i]); xr[i] = __bfloat162float(xb[i]); }
  for (int i = 0; i < C; i++) {
    wb[i] = __float2bfloat16(w[i]); wr[i] = __bfloat162float(wb[i]);
    bb[i] = __float2bfloat16(b[i]); br[i] = __bfloat162float(bb[i]);
  }
  ref_layernorm(xr, wr, br, N, C, y, m, r);
  __nv_bfloat16 *dxb = to_device(xb), *dwb = to_device(wb), *dbb = to_device(bb), *dyb;
  cudaMalloc(&dyb, x.size() * 2);
  t0 = now_s();
  layernorm_forward(dyb, dm, dr, dxb, dwb, dbb, N, C, 256);
  t1 = now_s();
  CHECK(cudaGetLastError() == cudaSuccess, "layernorm bf16 launch");
  printf("layernorm bf16 %dx%d: %.2f ms (%s)\n", N, C, (t1 - t0) * 1e3, sched_name());
  validate("layernorm bf16 out", from_device(dyb, x.size()).data(), y.data(), x.size(), 1e-6, 1.0 / 256 + 1e-5);
  validate("layernorm bf16 mean", from_device(dm, N).data(), m.data(), N, 1e-5, 1e-5);
  for (void* p : {(void*)dx, (void*)dw, (void*)db, (void*)dy, (void*)dm, (void*)dr, (void*)dxb, (void*)dwb, (void*)dbb, (void*)dyb}) cudaFree(p);
}

static void test_softmax() {
  const int BNH = 8, T = 64, rows = BNH * T;
  const float scale = 0.125f;
  std::mt19937 rng(7); std::normal_distribution<float> nd(0.f, 3.f);
  std::vector<float> x((size_t)rows * T), y((size_t)rows * T);
  for (auto& v : x) v = nd(rng);
  for (int r = 0; r < rows; r++) {
    int t = r % T; double mx = -1e30, s = 0;
    for (int j = 0; j <= t; j++) mx = fmax(mx, x[(size_t)r * T + j] * scale);
    for (int j = 0; j <= t; j++) s += exp(x[(size_t)r * T + j] * scale - mx);
    for (int j = 0; j < T; j++) y[(size_t)r * T + j] = j <= t ? (float)(exp(x[(size_t)r * T + j] * scale - mx) / s) : 0.f;
  }
  float *dx = to_device(x), *dy; cudaMalloc(&dy, x.size() * 4);
  for (int block : {32, 128, 256}) {
    softmax_causal<<<rows, block>>>(dy, dx, T, scale);
    CHECK(cudaGetLastError() == cudaSuccess, "softmax launch block %d", block);
    // probabilities <= 1 from fp32 exp and a 64-term sum: absolute error well under 1e-6
    char name[64]; snprintf(name, sizeof name, "softmax block=%d", block);
    validate(name, from_device(dy, y.size()).data(), y.data(), y.size(), 1e-6, 0);
  }
  cudaFree(dx); cudaFree(dy);
}

static void test_histogram() {
  const int n = 100000;
  std::mt19937 rng(3);
  std::vector<unsigned char> data(n); std::vector<float> vals(n); std::vector<unsigned> ref(256, 0);
  double total = 0;
  for (int i = 0; i < n; i++) { data[i] = (unsigned char)(rng() % 256); vals[i] = 0.001f * (rng() % 1000); ref[data[i]]++; total += vals[i]; }
  unsigned char* dd = to_device(data); float* dv = to_device(vals);
  unsigned* dh; float* dt; cudaMalloc(&dh, 256 * 4); cudaMalloc(&dt, 4);
  cudaMemset(dh, 0, 256 * 4); cudaMemset(dt, 0, 4);
  histogram256<<<8, 128>>>(dh, dd, n, dt, dv);
  CHECK(cudaGetLastError() == cudaSuccess, "histogram launch");
  CHECK(from_device(dh, 256) == ref, "histogram counts differ");
  float got = from_device(dt, 1)[0];
  // 1e5 float additions of values < 1 into a total near 5e4: rounding error ~ n * ulp(5e4)/2 ~ 0.2
  CHECK(fabs(got - total) < 1e-4 * total, "float atomicAdd total %f vs %f", got, total);
  cudaFree(dd); cudaFree(dv); cudaFree(dh); cudaFree(dt);
}

static void test_dynamic_smem() {
  const int rows = 16, C = 1000;
  std::vector<float> x((size_t)rows * C), ref(rows, 0.f);
  for (int i = 0; i < rows * C; i++) { x[i] = (i % 17) * 0.25f; ref[i / C] += x[i]; }  // exact in fp32
  float *dx = to_device(x), *dy; cudaMalloc(&dy, rows * 4);
  rowsum_dyn<<<rows, 256, 256 * sizeof(float)>>>(dy, dx, C);
  CHECK(cudaGetLastError() == cudaSuccess, "rowsum launch");
  validate("rowsum (dynamic smem)", from_device(dy, rows).data(), ref.data(), rows, 0, 0);
  // 64 KiB of dynamic smem works after the opt-in, like on sm_80/sm_90
  const int nf = 16384;
  cudaFuncSetAttribute(big_smem, cudaFuncAttributeMaxDynamicSharedMemorySize, nf * 4);
  big_smem<<<1, 256, nf * 4>>>(dy, nf);
  CHECK(cudaGetLastError() == cudaSuccess, "64 KiB smem with opt-in");
  CHECK(from_device(dy, 1)[0] == (float)nf * (nf - 1) / 2, "big smem sum %f", from_device(dy, 1)[0]);  // < 2^24*8: exact
  // 200 KiB fits an H100 (227 KiB) but not an A100 (163 KiB): refused, as on the smallest target CI builds for
  CHECK(cudaFuncSetAttribute(big_smem, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024) == cudaErrorInvalidValue,
        "a 200 KiB opt-in is refused (sm_80's limit)");
  cudaGetLastError();
  cudaFree(dx); cudaFree(dy);
}

static void test_warp_ops() {
  const int n = 64;
  int* d; cudaMalloc(&d, n * 12 * 4);
  warp_ops<<<1, n>>>(d);
  CHECK(cudaGetLastError() == cudaSuccess, "warp_ops launch");
  auto h = from_device(d, n * 12);
  std::vector<int> v(n); int cnt = 0;
  for (int t = 0; t < n; t++) {
    int l = t % 32, li = l & 15;
    v[t] = l + (l < 16 ? ((li + 1 < 16) ? l + 1 : l) : ((li >= 1) ? l - 1 : l));
    cnt += v[t] > 20;
  }
  int bad = 0;
  for (int t = 0; t < n; t++) {
    int l = t % 32, w = t / 32; const int* o = &h[t * 12];
    unsigned ballot = 0; for (int k = 0; k < 32; k++) if (v[w * 32 + k] % 2) ballot |= 1u << k;
    int exp[12] = {v[t], (int)ballot, 1, 0, 50, ((l & ~7) + ((l + 1) & 7)) * 10, l ^ 4, cnt, 1, 1, -1, l >= 3 ? l - 3 : l};
    for (int k = 0; k < 12; k++) if (o[k] != exp[k]) { if (bad++ < 5) printf("  warp_ops t=%d k=%d got %d want %d\n", t, k, o[k], exp[k]); }
  }
  CHECK(bad == 0, "warp_ops: %d wrong values", bad);
  cudaFree(d);
  // partial-mask reduction: lane 0 sums 16 values; lane 15 adds undefined (poisoned, -1) values
  std::vector<int> in(32); int sum = 0;
  for (int i = 0; i < 32; i++) { in[i] = i * i; if (i < 16) sum += in[i]; }
  int *din = to_device(in), *dout; cudaMalloc(&dout, 8);
  partial_mask_sum<<<1, 32>>>(dout, din);
  CHECK(cudaGetLastError() == cudaSuccess, "partial mask launch");
  auto pm = from_device(dout, 2);
  CHECK(pm[0] == sum, "partial-mask reduction %d vs %d", pm[0], sum);
  // lane 15 reads lanes 23, 19, 17, 16 (offsets 8, 4, 2, 1): four poisoned -1 values
  CHECK(pm[1] == 15 * 15 - 4, "lane 15 read lanes outside the mask: expected four poison values (-1), got %d", pm[1]);
  cudaFree(din); cudaFree(dout);
}

static void test_shuffle_types() {
  float* d; cudaMalloc(&d, 32 * 12 * 4);
  shuffle_types<<<1, 32>>>(d);
  CHECK(cudaGetLastError() == cudaSuccess, "shuffle_types launch");
  auto h = from_device(d, 32 * 12);
  int bad = 0;
  for (int l = 0; l < 32; l++) {
    // small integers and halves: exact in bf16 (8-bit mantissa, |v| <= 32) and fp16
    float e[12] = {(float)(l ^ 1), (float)(l ^ 2), (float)-(l ^ 2), (float)(l + 1 < 32 ? l + 1 : l), 0.f, 0.5f,
                   (float)((l ^ 16) * 1.5), (float)(l ^ 3), (float)((l ^ 3) + 3), (float)(l >= 1 ? l - 1 : l),
                   (float)(2 * (l >= 1 ? l - 1 : l)), 0.f};
    e[11] = (float)((l ^ 2) + 1) + 0.25f;
    for (int k = 0; k < 12; k++) if (h[l * 12 + k] != e[k]) { if (bad++ < 5) printf("  shuffle_types lane %d k %d: %g vs %g\n", l, k, h[l * 12 + k], e[k]); }
  }
  CHECK(bad == 0, "shuffle payload types: %d wrong", bad);
  cudaFree(d);
}

static void test_atomics() {
  AtomicOut init{}; init.imin = 1 << 30; init.umin = 1u << 31; init.fmax = -1.f;
  AtomicOut* d = to_device(std::vector<AtomicOut>{init});
  const int blocks = 4, threads = 256, n = blocks * threads;
  atomics_all<<<blocks, threads>>>(d);
  CHECK(cudaGetLastError() == cudaSuccess, "atomics launch");
  AtomicOut a = from_device(d, 1)[0];
  CHECK(a.iadd == 2 * n && a.isub == -n && a.imin == 1000 - (n - 1) && a.imax == n - 1, "int atomics %d %d %d %d", a.iadd, a.isub, a.imin, a.imax);
  CHECK(a.iexch_seen >= 0 && a.iexch_seen < n && a.icas_count == n, "exch %d cas %d", a.iexch_seen, a.icas_count);
  CHECK(a.uadd == 3u * n && a.umin == 5000u - (n - 1) && a.umax == 2u * (n - 1) && a.uinc == (unsigned)(n % 100),
        "unsigned atomics %u %u %u %u", a.uadd, a.umin, a.umax, a.uinc);
  CHECK(a.uladd == (unsigned long long)n << 33 && a.ulmax == (unsigned long long)(n - 1) << 40 && a.ulcas == 7ull * n, "u64 atomics");
  // 0.25 and 0.125 steps and counts up to 1024 are exact in float/double, bf16 counts to 256 exact
  CHECK(a.fadd == 0.25f * n && a.fmax == 0.5f * (n - 1) && a.dadd == 0.125 * n, "float/double atomics %g %g %g", a.fadd, a.fmax, a.dadd);
  CHECK(__bfloat162float(a.badd) == 256.f, "bf16 atomicAdd saturates at 256 (8-bit mantissa): %g", __bfloat162float(a.badd));
  CHECK(__half2float(a.hadd) == 1024.f, "half atomicAdd %g", __half2float(a.hadd));
  CHECK(__low2float(a.b2add) == 256.f && __high2float(a.b2add) == 512.f, "bf162 atomicAdd %g %g", __low2float(a.b2add), __high2float(a.b2add));
  cudaFree(d);
}

static void test_coords() {
  dim3 grid(3, 2, 2), block(4, 3, 2);
  int n = 3 * 2 * 2 * 4 * 3 * 2;
  int* d; cudaMalloc(&d, n * 16);
  coords<<<grid, block>>>(d);
  CHECK(cudaGetLastError() == cudaSuccess, "coords launch");
  auto h = from_device(d, n * 4);
  int bad = 0, g = 0;
  for (unsigned bz = 0; bz < 2; bz++) for (unsigned by = 0; by < 2; by++) for (unsigned bx = 0; bx < 3; bx++)
    for (unsigned tz = 0; tz < 2; tz++) for (unsigned ty = 0; ty < 3; ty++) for (unsigned tx = 0; tx < 4; tx++, g++) {
      int e[4] = {(int)(tx + 100 * ty + 10000 * tz), (int)(bx + 100 * by + 10000 * bz), 4 + 300 + 20000, 3 + 200 + 20000};
      for (int k = 0; k < 4; k++) bad += h[g * 4 + k] != e[k];
    }
  CHECK(bad == 0, "3-D coordinates: %d wrong", bad);
  cudaFree(d);
}

static void test_math() {
  const int n = 300;
  std::vector<float> x(n);
  for (int i = 0; i < n; i++) x[i] = -6.f + 12.f * i / n;
  float *dx = to_device(x), *dy; cudaMalloc(&dy, n * 6 * 4);
  math_funcs<<<(n + 127) / 128, 128>>>(dy, dx, n);
  CHECK(cudaGetLastError() == cudaSuccess, "math launch");
  auto h = from_device(dy, n * 6);
  std::vector<float> ref(n * 6);
  for (int i = 0; i < n; i++) {
    double v = x[i];
    ref[i * 6 + 0] = (float)exp(v); ref[i * 6 + 1] = (float)(1 / sqrt(fabs(v) + 1)); ref[i * 6 + 2] = (float)tanh(v);
    ref[i * 6 + 3] = (float)(v / 3); ref[i * 6 + 4] = (float)log(fabs(v) + 1);
    ref[i * 6 + 5] = (float)(__builtin_popcount(i) + __builtin_clz(i + 1) + (i ? __builtin_ctz(i) + 1 : 0)) + (float)fmin(fmax(v, 0.), 1.);
  }
  // The host versions are libm-accurate (a few ulp); the GPU's fast versions are looser, so this
  // only pins down that each intrinsic computes the right function.
  validate("device math", h.data(), ref.data(), ref.size(), 1e-6, 1e-5);
  cudaFree(dx); cudaFree(dy);
}

static void test_templates_and_syntax() {
  const int n = 1000;
  std::vector<float> y(n, 1.f); std::vector<__nv_bfloat16> x(n);
  for (int i = 0; i < n; i++) x[i] = __float2bfloat16((float)(i % 8));
  float* dy = to_device(y); __nv_bfloat16* dx = to_device(x);
  cudaStream_t st; cudaStreamCreate(&st);
  // deduced template arguments, a namespace, a stream, and a launch split over lines
  ns::axpy
      <<<(n + 255) / 256,
         256, 0, st>>>(
          dy, dx, 2.f,
          n);
  CHECK(cudaGetLastError() == cudaSuccess, "deduced-template launch");
  ns::axpy<float, __nv_bfloat16><<<(n + 255) / 256, 256, 0, st>>>(dy, dx, 1.f, n);
  cudaStreamSynchronize(st);
  auto h = from_device(dy, n);
  int bad = 0;
  for (int i = 0; i < n; i++) bad += h[i] != 1.f + 3.f * (i % 8);
  CHECK(bad == 0, "axpy: %d wrong", bad);
  cudaStreamDestroy(st);
  cudaFree(dy); cudaFree(dx);
}

static void test_race_detection() {
  // Missing __syncthreads: shared memory starts as NaN and the thread order changes who reads
  // first; every order must give wrong outputs (forward: 255 of 256, reverse: 1, random: ~half).
  std::vector<float> in(256); for (int i = 0; i < 256; i++) in[i] = (float)i;
  float *din = to_device(in), *d; cudaMalloc(&d, 256 * 4);
  racy_shift<<<1, 256>>>(d, din);
  auto h = from_device(d, 256);
  int wrong = 0; for (int i = 0; i < 256; i++) wrong += h[i] != in[(i + 1) % 256];
  printf("missing __syncthreads: %d/256 wrong outputs (%s)\n", wrong, sched_name());
  CHECK(wrong > 0, "missing __syncthreads went unnoticed in order %s", sched_name());
  // device memory that was never written reads as NaN; a kernel that reads it is reported, except in the ASan
  // build (uninitialized-read: its other cases are in tests/simt_libs_test.cu)
  auto uninit = [d] {
    float* never; cudaMalloc(&never, 64 * 4);
    read_uninit<<<1, 64>>>(d, never);
    auto h = from_device(d, 64);
    int nans = 0; for (int i = 0; i < 64; i++) nans += std::isnan(h[i]);
    printf("uninitialised device memory gave %d NaNs of 64\n", nans);
    return nans == 64 ? 0 : 3;
  };
#if defined(__x86_64__) && !defined(SELFTEST_ASAN)
  auto r = expect_report("never-written device memory", uninit, {"SIMT ERROR [uninitialized-read] in kernel read_uninit", bug_at("read_uninit")});
  CHECK(r.exit_code == 0, "never-written device memory did not read as NaN (exit %d)", r.exit_code);
#else
  CHECK(uninit() == 0, "never-written device memory did not read as NaN");
#endif
  cudaFree(din); cudaFree(d);
}

// ---- "the last block adds the partial results" (llmc/layernorm.cuh's backward). Blocks run in the order of
// SIMT_SCHED: forward, reverse or a permutation. Taking the block with the highest index for the last one is
// right only in forward order (and wrong on a GPU); the ticket of the block that finishes last is right in every
// order. One thread per block sums its 32 inputs.
__global__ void last_by_index(float* out, float* partials, const float* in) {
  if (threadIdx.x != 0) return;
  float s = 0.f;
  for (int i = 0; i < 32; i++) s += in[blockIdx.x * 32 + i];
  partials[blockIdx.x] = s;
  if (blockIdx.x == gridDim.x - 1) {  // wrong: assumes that every other block has finished
    float t = 0.f;
    for (unsigned b = 0; b < gridDim.x; b++) t += partials[b];
    *out = t;
  }
}
__global__ void last_by_ticket(float* out, float* partials, unsigned* ticket, unsigned* order, const float* in, bool fence) {
  if (threadIdx.x != 0) return;
  float s = 0.f;
  for (int i = 0; i < 32; i++) s += in[blockIdx.x * 32 + i];
  partials[blockIdx.x] = s;
  if (fence) __threadfence();  // the partial is visible device-wide before the ticket is taken
  auto t = atomicAdd(ticket, 1u);  // BUG:ticket_without_fence
  order[blockIdx.x] = t;
  if (t != gridDim.x - 1) return;
  __threadfence();
  float sum = 0.f;
  for (unsigned b = 0; b < gridDim.x; b++) sum += partials[b];
  *out = sum;
  *ticket = 0;  // ready for the next launch
}
static void test_block_order() {
  const int G = 8;
  std::vector<float> in(G * 32);
  for (int i = 0; i < G * 32; i++) in[i] = (float)i;
  const float total = (float)(G * 32 * (G * 32 - 1) / 2);  // an integer below 2^24: exact in fp32 in any order
  float *din = to_device(in), *out, *partials; unsigned *ticket, *order;
  cudaMalloc(&out, 4); cudaMalloc(&partials, G * 4); cudaMalloc(&ticket, 4); cudaMalloc(&order, G * 4);
  cudaMemset(ticket, 0, 4);
  last_by_ticket<<<G, 32>>>(out, partials, ticket, order, din, true);
  std::vector<unsigned> ord = from_device(order, G);
  CHECK(from_device(out, 1)[0] == total, "the ticket's last block: sum %g, expected %g (%s)", from_device(out, 1)[0], total, sched_name());
  std::vector<unsigned> sorted = ord; std::sort(sorted.begin(), sorted.end());
  bool perm = true; for (int b = 0; b < G; b++) perm &= sorted[b] == (unsigned)b;
  int identity = 0, last = -1; for (int b = 0; b < G; b++) { identity += ord[b] == (unsigned)b; if (ord[b] == G - 1u) last = b; }
  CHECK(perm, "every block ran once (%s)", sched_name());
  std::string sched = sched_name();
  CHECK(sched == "forward" ? identity == G : sched == "reverse" ? last == 0 : identity < G,
        "block order in %s: %d of %d blocks in place, block %d last", sched.c_str(), identity, G, last);
  cudaMemset(partials, 0xff, G * 4);  // NaN: a partial not yet written
  last_by_index<<<G, 32>>>(out, partials, din);
  bool right = from_device(out, 1)[0] == total;
  CHECK(right == (last == G - 1), "the highest block taken for the last: %s in %s order, where block %d runs last", right ? "right" : "wrong",
        sched.c_str(), last);
  // without the fence: right here, where blocks run one after another, but reported
  auto r = expect_report("a last-block ticket without __threadfence", [&] {
    last_by_ticket<<<G, 32>>>(out, partials, ticket, order, din, false);
    return cudaGetLastError() == cudaErrorLaunchFailure ? 0 : 3;
  }, {"SIMT ERROR [ticket-fence] in kernel last_by_ticket", "thread (0,0,0)", bug_at("ticket_without_fence"),
      "compared with the last block's ticket (7), but this thread executed no __threadfence()"});
  CHECK(r.exit_code == 0, "ticket-fence: the launch did not fail (exit %d)", r.exit_code);
  cudaFree(din); cudaFree(out); cudaFree(partials); cudaFree(ticket); cudaFree(order);
}

static void test_runtime_api() {
  // memcpy kinds, pinned and managed memory, async variants
  float *d, *pinned, *managed;
  CHECK(cudaMalloc(&d, 1024) == cudaSuccess && ((uintptr_t)d & 255) == 0, "cudaMalloc 256-byte alignment");
  CHECK(cudaMallocHost(&pinned, 1024) == cudaSuccess, "cudaMallocHost");
  CHECK(cudaMallocManaged(&managed, 1024) == cudaSuccess, "cudaMallocManaged");
  for (int i = 0; i < 256; i++) pinned[i] = (float)i;
  cudaStream_t s; cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
  CHECK(cudaMemcpyAsync(d, pinned, 1024, cudaMemcpyHostToDevice, s) == cudaSuccess, "memcpy async H2D");
  cudaStreamSynchronize(s);  // the legacy stream below does not wait for a non-blocking stream (stream-race)
  CHECK(cudaMemcpy(managed, d, 1024, cudaMemcpyDefault) == cudaSuccess, "memcpy default");
  CHECK(cudaMemsetAsync(d, 0, 512, s) == cudaSuccess, "memset async");
  cudaStreamSynchronize(s);
  CHECK(cudaMemcpy(pinned, d, 1024, cudaMemcpyDeviceToHost) == cudaSuccess, "memcpy D2H");
  CHECK(pinned[0] == 0.f && pinned[200] == 200.f && managed[77] == 77.f, "copied values");
  // a kernel may take pinned and managed pointers (unified addressing)
  ns::axpy<<<1, 256, 0, s>>>(managed, pinned, 1.f, 256);
  CHECK(cudaStreamSynchronize(s) == cudaSuccess && managed[200] == 400.f, "kernel on pinned/managed memory");
  // events measure host time around synchronous work
  cudaEvent_t e0, e1, enotime; float ms = -1;
  cudaEventCreate(&e0); cudaEventCreate(&e1); cudaEventCreateWithFlags(&enotime, cudaEventDisableTiming);
  cudaEventRecord(e0, s); usleep(20000); cudaEventRecord(e1, s); cudaEventSynchronize(e1);
  CHECK(cudaEventElapsedTime(&ms, e0, e1) == cudaSuccess && ms >= 19.f && ms < 2000.f, "event elapsed %g ms for a 20 ms sleep", ms);
  cudaEventRecord(enotime, s);
  CHECK(cudaEventElapsedTime(&ms, e0, enotime) == cudaErrorInvalidResourceHandle, "DisableTiming event must not time");
  CHECK(cudaGetLastError() == cudaErrorInvalidResourceHandle && cudaGetLastError() == cudaSuccess, "cudaGetLastError clears");
  CHECK(cudaStreamWaitEvent(s, e1, 0) == cudaSuccess && cudaStreamQuery(s) == cudaSuccess, "stream wait/query");
  cudaEventDestroy(e0); cudaEventDestroy(e1); cudaEventDestroy(enotime); cudaStreamDestroy(s);
  // device properties and attributes (H100 limits)
  cudaDeviceProp p; int v = 0, count = 0;
  CHECK(cudaGetDeviceProperties(&p, 0) == cudaSuccess && p.major == 9 && p.maxThreadsPerBlock == 1024 && p.warpSize == 32, "props");
  CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, 0) == cudaSuccess && v == 132, "SM count %d", v);
  CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0) == cudaSuccess && v == 163 * 1024, "optin smem (sm_80's, the smallest target)");
  CHECK(cudaGetDeviceCount(&count) == cudaSuccess && count == 1 && cudaSetDevice(0) == cudaSuccess, "one device");
  CHECK(cudaSetDevice(1) == cudaErrorInvalidDevice, "device 1 does not exist");
  (void)cudaGetLastError();
  CHECK(!strcmp(cudaGetErrorString(cudaSuccess), "no error") && !strcmp(cudaGetErrorName(cudaErrorInvalidValue), "cudaErrorInvalidValue"), "error strings");
  size_t fr = 0, tot = 0;
  CHECK(cudaMemGetInfo(&fr, &tot) == cudaSuccess && fr < tot, "memgetinfo");
  cudaFree(d); cudaFreeHost(pinned); cudaFree(managed);
}

// ---------------------------------------------------------------- wmma (simt_wmma.h)
// Two warps, each D = A B + C on its own 16x16x16 matrices; C is read column-major, D written row-major.
template <class T, class LA, class LB>
__global__ void wmma_mm(float* d, const T* a, const T* b, const float* c) {
  namespace wmma = nvcuda::wmma;
  int w = threadIdx.x / 32;
  wmma::fragment<wmma::matrix_a, 16, 16, 16, T, LA> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, T, LB> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> fc;
  wmma::load_matrix_sync(fa, a + w * 256, 16);
  wmma::load_matrix_sync(fb, b + w * 256, 16);
  wmma::load_matrix_sync(fc, c + w * 256, 16, wmma::mem_col_major);
  wmma::mma_sync(fc, fa, fb, fc);
  wmma::store_matrix_sync(d + w * 256, fc, 16, wmma::mem_row_major);
}
// which lane holds each element of an accumulator
__global__ void wmma_owner(float* d) {
  nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> f;
  nvcuda::wmma::fill_fragment(f, (float)(threadIdx.x % 32));
  nvcuda::wmma::store_matrix_sync(d, f, 16, nvcuda::wmma::mem_row_major);
}
__global__ void wmma_misaligned(float* d) {
  nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> f;
  nvcuda::wmma::fill_fragment(f, 0.f);
  nvcuda::wmma::store_matrix_sync(d + 4, f, 16, nvcuda::wmma::mem_row_major);  // BUG:wmma_misaligned
}
__global__ void wmma_partial(float* d, const __half* a) {
  namespace wmma = nvcuda::wmma;
  if (threadIdx.x == 7) return;
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> fc;
  wmma::load_matrix_sync(fa, a, 16);
  wmma::load_matrix_sync(fb, a, 16);
  wmma::fill_fragment(fc, 0.f);
  wmma::mma_sync(fc, fa, fb, fc);  // BUG:wmma_partial
  wmma::store_matrix_sync(d, fc, 16, wmma::mem_row_major);
}

template <class T, class LA, class LB>
static int wmma_case(const std::vector<float>& a, const std::vector<float>& b, const std::vector<float>& c) {
  bool acol = std::is_same<LA, nvcuda::wmma::col_major>::value, bcol = std::is_same<LB, nvcuda::wmma::col_major>::value;
  std::vector<T> ta(a.size()), tb(b.size());
  for (size_t i = 0; i < a.size(); i++) { ta[i] = T(a[i]); tb[i] = T(b[i]); }
  T *da = to_device(ta), *db = to_device(tb);
  float *dc = to_device(c), *dd; cudaMalloc(&dd, 512 * 4);
  wmma_mm<T, LA, LB><<<1, 64>>>(dd, da, db, dc);
  int bad = cudaGetLastError() != cudaSuccess;
  auto d = from_device(dd, 512);
  for (int w = 0; w < 2; w++) for (int m = 0; m < 16; m++) for (int n = 0; n < 16; n++) {
    float s = c[w * 256 + n * 16 + m];  // small integers: every sum is exact
    for (int k = 0; k < 16; k++)
      s += a[w * 256 + (acol ? k * 16 + m : m * 16 + k)] * b[w * 256 + (bcol ? n * 16 + k : k * 16 + n)];
    bad += d[w * 256 + m * 16 + n] != s;
  }
  cudaFree(da); cudaFree(db); cudaFree(dc); cudaFree(dd);
  return bad;
}

static void test_wmma() {
  namespace wmma = nvcuda::wmma;
  std::mt19937 rng(7);
  std::vector<float> a(512), b(512), c(512);
  for (int i = 0; i < 512; i++) { a[i] = (float)((int)(rng() % 7) - 3); b[i] = (float)((int)(rng() % 7) - 3); c[i] = (float)((int)(rng() % 41) - 20); }
  int saved = simt::wmma_mapping();
  std::vector<float> owner[2];
  float* dd; cudaMalloc(&dd, 256 * 4);
  for (int m = 0; m < 2; m++) {
    simt::wmma_set_mapping(m);
    int bad = wmma_case<__half, wmma::row_major, wmma::row_major>(a, b, c) +
              wmma_case<__half, wmma::col_major, wmma::col_major>(a, b, c) +
              wmma_case<__nv_bfloat16, wmma::row_major, wmma::col_major>(a, b, c) +
              wmma_case<__nv_bfloat16, wmma::col_major, wmma::row_major>(a, b, c);
    CHECK(bad == 0, "wmma mapping %d: mma_sync of half/bf16, row/col-major operands: %d wrong elements", m, bad);
    wmma_owner<<<1, 32>>>(dd);
    owner[m] = from_device(dd, 256);
    int count[32] = {};
    for (float o : owner[m]) count[(int)o & 31]++;
    bool eight = true;
    for (int l = 0; l < 32; l++) eight &= count[l] == 8;
    CHECK(eight, "wmma mapping %d: every lane holds 8 accumulator elements", m);
  }
  simt::wmma_set_mapping(saved);
  CHECK(owner[0] != owner[1], "wmma mappings 0 and 1 give elements to different lanes");
  cudaFree(dd);

  const std::string blk = "block (0,0,0) thread (";
  float* d; cudaMalloc(&d, 512 * 4);
  __half* dh; cudaMalloc(&dh, 256 * 2); cudaMemset(dh, 0, 256 * 2);
  expect_report("wmma pointer not 32-byte aligned", [&] { wmma_misaligned<<<1, 32>>>(d); return 0; },
                {"SIMT ERROR [trap] in kernel wmma_misaligned", blk, "32-byte aligned", bug_at("wmma_misaligned")});
  expect_report("mma_sync with a lane missing", [&] { wmma_partial<<<1, 32>>>(d, dh); return 0; },
                {"SIMT ERROR [warp-exited-lane] in kernel wmma_partial", blk, bug_at("wmma_partial")});
  cudaFree(d); cudaFree(dh);
}

// ---------------------------------------------------------------- broken kernels, in children
static void test_bug_reports() {
  float* d; cudaMalloc(&d, 4096 * 4);
  std::vector<float> in(256, 1.f); float* din = to_device(in);
  int* di; cudaMalloc(&di, 4096 * 4);
  const std::string blk = "block (0,0,0) thread (";

  expect_report("exited lanes in a shuffle", [&] {
    bad_shuffle<<<1, 32>>>(d, din);  // LAUNCH:bad_shuffle
    return cudaGetLastError() == cudaErrorLaunchFailure ? 0 : 3;
  }, {"SIMT ERROR [warp-exited-lane] in kernel bad_shuffle", "(launched at " + at_line(kFile, line_of_marker(kFile, "LAUNCH:bad_shuffle")) + ")", blk, bug_at("bad_shuffle")});

  expect_report("__syncthreads in a branch", [&] {
    barrier_in_branch<<<1, 32>>>(d);
    return 0;
  }, {"SIMT ERROR [barrier-", "in kernel barrier_in_branch", blk, bug_at("barrier_in_branch")});

  expect_report("two different barriers", [&] {
    two_barriers<<<1, 32>>>(d);
    return 0;
  }, {"SIMT ERROR [barrier-divergence] in kernel two_barriers", blk, bug_at("two_barriers_a"), bug_at("two_barriers_b")});

  expect_report("deadlock", [&] {
    deadlock_kernel<<<1, 64>>>(d);
    return cudaGetLastError() == cudaErrorLaunchFailure ? 0 : 3;
  }, {"SIMT ERROR [deadlock] in kernel deadlock_kernel", blk, "wait at __syncthreads at " + bug_at("deadlock_bar"),
      "wait in __shfl_xor_sync (mask 0xffffffff) at " + bug_at("deadlock_shfl")});

  expect_report("different intrinsics, same mask", [&] { divergent_intrinsics<<<1, 32>>>(di); return 0; },
                {"SIMT ERROR [warp-divergence] in kernel divergent_intrinsics", blk, "__shfl_sync", "__ballot_sync"});
  expect_report("lane outside its mask", [&] { not_in_mask<<<1, 32>>>(di); return 0; },
                {"SIMT ERROR [warp-mask] in kernel not_in_mask", blk, bug_at("not_in_mask")});
  expect_report("shuffle width", [&] { bad_width<<<1, 32>>>(di); return 0; },
                {"SIMT ERROR [shfl-width] in kernel bad_width", blk, bug_at("bad_width")});
  expect_report("__trap", [&] { trap_kernel<<<1, 32>>>(di); return 0; },
                {"SIMT ERROR [trap] in kernel trap_kernel", "block (0,0,0) thread (5,0,0)", bug_at("trap")});

  std::vector<float> host(64);
  expect_report("host pointer argument", [&] {
    bad_shuffle<<<1, 32>>>(host.data(), din);  // LAUNCH:host_ptr
    return cudaGetLastError() == cudaErrorInvalidValue ? 0 : 3;
  }, {"SIMT ERROR [host-pointer] in kernel bad_shuffle", at_line(kFile, line_of_marker(kFile, "LAUNCH:host_ptr")), "argument 0"});

  auto r = expect_report("launch limits", [&] {
    bool ok = true;
    rowsum_dyn<<<1, 1025>>>(d, din, 1);  // LAUNCH:limits
    ok &= cudaGetLastError() == cudaErrorInvalidConfiguration;
    rowsum_dyn<<<1, dim3(1, 1, 65)>>>(d, din, 1);
    ok &= cudaGetLastError() == cudaErrorInvalidConfiguration;
    rowsum_dyn<<<dim3(1, 65536), 32>>>(d, din, 1);
    ok &= cudaGetLastError() == cudaErrorInvalidConfiguration;
    rowsum_dyn<<<1, 32, 64 * 1024>>>(d, din, 1);  // 64 KiB, never opted in
    ok &= cudaGetLastError() == cudaErrorInvalidValue;
    return ok ? 0 : 3;
  }, {"SIMT ERROR [launch-config] in kernel rowsum_dyn", at_line(kFile, line_of_marker(kFile, "LAUNCH:limits")),
      "block (1025,1,1)", "block (1,1,65)", "grid (1,65536,1)", "SIMT ERROR [smem-limit] in kernel rowsum_dyn"});
  CHECK(r.exit_code == 0, "launch limits: wrong error codes (exit %d)", r.exit_code);

  r = expect_report("fiber stack overflow", [&] { stack_hog<<<1, 4>>>(di); return 0; },
                    {"SIMT ERROR [stack-overflow] in kernel stack_hog", blk, "SIMT_STACK_KB", bug_at("deep")}, 60);
  CHECK(r.signal != 0 || r.exit_code != 0, "stack overflow: child neither killed nor failed");  // ASan exits 1

  r = expect_report("wild pointer in a kernel", [&] { wild_read<<<1, 4>>>(di); return 0; },
                    {"SIMT ERROR [crash] in kernel wild_read", blk, bug_at("wild_read")}, 60);
  CHECK(r.signal != 0 || r.exit_code != 0, "crash: child neither killed nor failed");  // ASan exits 1 instead

  int* flag; cudaMalloc(&flag, 8); cudaMemset(flag, 0, 8);
  r = expect_report("spin-wait on another block (watchdog)", [&] {
    simt::set_watchdog_seconds(1);
    spin_on_other_block<<<2, 1>>>(flag, flag + 1);
    return 0;
  }, {"SIMT ERROR [watchdog] in kernel spin_on_other_block", "thread (0,0,0)", bug_at("spin")}, 30);
  CHECK(r.exit_code == 124, "watchdog exit code %d", r.exit_code);

  expect_report("memcpy past an allocation", [&] {
    std::vector<float> big(2000);
    return cudaMemcpy(d, big.data(), 8000 * sizeof(float), cudaMemcpyHostToDevice) == cudaErrorInvalidValue ? 0 : 3;
  }, {"SIMT ERROR [memcpy-range]", "destination"});
  expect_report("double free", [&] { float* p; cudaMalloc(&p, 16); cudaFree(p); return cudaFree(p) == cudaErrorInvalidValue ? 0 : 3; },
                {"SIMT ERROR [invalid-free]"});
  // An error the program ignores still fails the process (exit status 1 at exit).
  r = expect_report("ignored error fails the run", [&] { bad_shuffle<<<1, 32>>>(d, din); return 0; },
                    {"error(s) were reported"}, 20, /*use_exit=*/true);
  CHECK(r.exit_code == 1, "ignored kernel error: exit status %d, expected 1", r.exit_code);

#if defined(SELFTEST_ASAN)
  expect_report("out-of-bounds read (ASan)", [&] {
    float *a, *b; cudaMalloc(&a, 100 * 4); cudaMalloc(&b, 100 * 4);
    copy_shift<<<1, 128>>>(b, a, 100);
    return 0;
  }, {"heap-buffer-overflow", bug_at("oob"), "SIMT ERROR [sanitizer] in kernel copy_shift", "block (0,0,0) thread (99,0,0)"}, 60);
  expect_report("misaligned 16-byte load (UBSan)", [&] { misaligned_load<<<1, 1>>>(d, din); return 0; },
                {bug_at("misaligned"), "misaligned address", "in kernel misaligned_load", "block (0,0,0) thread (0,0,0)"}, 60);
  expect_report("static shared overrun (UBSan bounds)", [&] { smem_overrun<<<1, 64>>>(d); return 0; },
                {bug_at("smem_overrun"), "out of bounds", "in kernel smem_overrun", "thread (32,0,0)"}, 60);
#else
  printf("(out-of-bounds, misaligned and static-smem overrun checks need the ASan+UBSan build: skipped here)\n");
#endif
  cudaFree(d); cudaFree(din); cudaFree(di); cudaFree(flag);
}

int main() {
  double t0 = now_s();
  test_layernorm();
  test_softmax();
  test_histogram();
  test_dynamic_smem();
  test_warp_ops();
  test_shuffle_types();
  test_atomics();
  test_coords();
  test_math();
  test_templates_and_syntax();
  test_race_detection();
  test_block_order();
  test_runtime_api();
  test_wmma();
  test_bug_reports();
  printf("selftest (%s): %.2f s\n", sched_name(), now_s() - t0);
  return test_summary();
}
