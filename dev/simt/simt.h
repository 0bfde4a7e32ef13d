// simt.h -- run this project's CUDA kernels on the CPU ("sim mode").
//
// Every CUDA thread is a fiber (its own small stack); __syncthreads, __syncwarp and the
// warp intrinsics are the only points where fibers switch. A .cu file is compiled as C++
// with this header force-included and its <<<>>> launches rewritten by simt_pp.py:
//   python3 dev/simt/simt_pp.py foo.cu build/simt/pp/foo.cu.cpp
//   clang++ -std=c++17 -DSIMT_CPU -I/usr/local/cuda/include -include dev/simt/simt.h -c ...
// (dev/simt/simt.mk has the make rules). The REAL CUDA headers are included below, so every
// runtime call is checked against NVIDIA's declarations; simt_runtime.cpp defines them.
// See dev/simt/README.md for what this catches and what it cannot.
#pragma once
#ifndef SIMT_CPU
#define SIMT_CPU 1
#endif

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <tuple>
#include <type_traits>
#include <utility>

// ---- 1. CUDA keywords. Defined BEFORE the real headers: crt/host_defines.h keeps a keyword
// that is already defined when __CUDACC__ is not.
#define __global__
#define __device__
#define __host__
#define __constant__
#define __managed__
#define __grid_constant__
#define __launch_bounds__(...)
// Static shared memory: one copy per process (blocks run one at a time, under a lock), in
// its own ELF section so the runtime can poison all of it (0xFF.. = NaN) before each block.
// clang honours the section for statics in templates and inline functions; gcc does not.
#define __shared__ static __attribute__((section("simt_shared"), aligned(16)))

#include <cuda_runtime.h>   // types, enums, API declarations (defined by simt_runtime.cpp)
#include <cuda_fp16.h>      // __half, __half2 host conversions and operators
#include <cuda_bf16.h>      // __nv_bfloat16, __nv_bfloat162 host conversions and operators
#include "simt_host.h"      // host-side extras: error count, device-range checks

// ---- 2. built-in variables. Plain globals: the scheduler stores the running fiber's values
// before every switch, and every switch point is an opaque call, so kernels always see their own.
extern "C" {
extern uint3 threadIdx;
extern uint3 blockIdx;
extern dim3 blockDim;
extern dim3 gridDim;
}
static constexpr int warpSize = 32;

// Every intrinsic takes its caller's location through default arguments, so diagnostics name
// the .cu line (the rewriter keeps line numbers and emits #line).
#define SIMT_LOC_DECL const char* simt_file_ = __builtin_FILE(), int simt_line_ = __builtin_LINE()
#define SIMT_LOC simt_file_, simt_line_

namespace simt {
enum Op : int { OP_SHFL, OP_SHFL_UP, OP_SHFL_DOWN, OP_SHFL_XOR, OP_SYNCWARP, OP_BALLOT, OP_ANY, OP_ALL };
// Warp rendezvous. For shuffles, `arg`/`width` are the intrinsic's lane argument and width;
// returns the received bytes (valid until this fiber's next warp op). Votes land in *vote.
const void* warp_op(int op, unsigned mask, const void* val, int bytes, int arg, int width, int pred,
                    unsigned* vote, const char* file, int line);
int block_barrier(int pred, int mode, const char* file, int line);  // mode 0 plain, 1 count, 2 and, 3 or
[[noreturn]] void trap(const char* file, int line);
unsigned activemask();

struct Cfg {
  dim3 grid, block; size_t smem; cudaStream_t stream;
  Cfg(dim3 g, dim3 b, size_t s = 0, cudaStream_t st = 0) : grid(g), block(b), smem(s), stream(st) {}
};
struct LaunchInfo { const char* name; const char* file; int line; };
void* dynamic_smem();
bool is_device_ptr(const void* p);  // inside (or one past) a cudaMalloc/Host/Managed allocation
enum { ARG_OK, ARG_HOST, ARG_OTHER_DEVICE };
int arg_status(const void* p);      // may a kernel on the current device dereference p?
// `acc`: the pointer arguments, for the stream-race rule (a const pointee is read, anything else written)
cudaError_t launch_erased(const Cfg& cfg, const LaunchInfo& info, void (*call)(void*), void* closure, const MemAccess* acc,
                          int nacc);
cudaError_t report_bad_arg(const LaunchInfo& info, int idx, const void* p, int status);
cudaError_t func_set_attribute(const char* name, const void* f, cudaFuncAttribute a, int v);

// The bytes a kernel's pointer argument is taken to access: its first element (void*: one byte).
template <class P> constexpr size_t pointee_size() {
  if constexpr (std::is_object<P>::value) return sizeof(P); else return 1;
}
// A launch: each fiber calls `body(args...)`, so the kernel's by-value parameters are copied
// per thread, and template arguments are deduced exactly as nvcc deduces them.
template <class F, class... A>
cudaError_t launch(const LaunchInfo& info, const Cfg& cfg, F&& body, A&&... args) {
  std::tuple<std::decay_t<A>...> tup(std::forward<A>(args)...);
  int bad = -1, status = ARG_OK, nacc = 0; const void* badp = nullptr;
  MemAccess acc[sizeof...(A) + 1];
  std::apply([&](const auto&... a) {
    int i = 0;
    auto chk = [&](const auto& v) {  // pointer arguments must point to memory of this device
      using T = std::decay_t<decltype(v)>;
      if constexpr (std::is_pointer<T>::value) {
        using P = std::remove_pointer_t<T>;
        if (bad < 0 && v != nullptr && (status = arg_status((const void*)v)) != ARG_OK) { bad = i; badp = (const void*)v; }
        if (v != nullptr) acc[nacc++] = MemAccess{(const void*)v, pointee_size<P>(), !std::is_const<P>::value};
      }
      i++;
    };
    (chk(a), ...);
  }, tup);
  if (bad >= 0) return report_bad_arg(info, bad, badp, status);
  auto call = [&]() { std::apply(body, tup); };
  using C = decltype(call);
  return launch_erased(cfg, info, [](void* c) { (*(C*)c)(); }, &call, acc, nacc);
}
// Used by SIMT_LAUNCH (simt_compat.h): SIMT_LAUNCH(grid, block, smem, stream, kernel)(args...)
template <class F> struct Launcher {
  Cfg cfg; LaunchInfo info; F body;
  template <class... A> cudaError_t operator()(A&&... a) { return launch(info, cfg, body, std::forward<A>(a)...); }
};
template <class F> Launcher<F> make_launcher(const Cfg& c, const LaunchInfo& i, F f) { return {c, i, f}; }
// cudaFuncSetAttribute(kernel, ...) is rewritten to this so that the opt-in is recorded under the
// kernel's name too: a launch through a deduced template has no address to look up.
template <class K> cudaError_t func_set_attribute_named(const char* name, K* k, cudaFuncAttribute a, int v) {
  return func_set_attribute(name, (const void*)k, a, v);
}
}  // namespace simt

// ---- 3. synchronisation
inline void __syncthreads(SIMT_LOC_DECL) { simt::block_barrier(0, 0, SIMT_LOC); }
inline int __syncthreads_count(int p, SIMT_LOC_DECL) { return simt::block_barrier(p, 1, SIMT_LOC); }
inline int __syncthreads_and(int p, SIMT_LOC_DECL) { return simt::block_barrier(p, 2, SIMT_LOC); }
inline int __syncthreads_or(int p, SIMT_LOC_DECL) { return simt::block_barrier(p, 3, SIMT_LOC); }
inline void __syncwarp(unsigned mask = 0xffffffffu, SIMT_LOC_DECL) {
  simt::warp_op(simt::OP_SYNCWARP, mask, nullptr, 0, 0, 32, 0, nullptr, SIMT_LOC);
}

namespace simt {
template <class T> inline T shfl(int op, unsigned mask, const T& var, int arg, int width, const char* f, int l) {
  // Not is_trivially_copyable: CUDA 13's __nv_bfloat162/__half2 have a user-provided copy
  // assignment on the host, but they are plain bits, and a byte copy is what the GPU does.
  static_assert(std::is_standard_layout<T>::value && sizeof(T) <= 16, "shuffle type must be a <=16-byte value type");
  T out;
  std::memcpy((void*)&out, warp_op(op, mask, (const void*)&var, (int)sizeof(T), arg, width, 0, nullptr, f, l), sizeof(T));
  return out;
}
}  // namespace simt
template <class T> inline T __shfl_sync(unsigned mask, T var, int srcLane, int width = warpSize, SIMT_LOC_DECL) {
  return simt::shfl(simt::OP_SHFL, mask, var, srcLane, width, SIMT_LOC);
}
template <class T> inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize, SIMT_LOC_DECL) {
  return simt::shfl(simt::OP_SHFL_UP, mask, var, (int)delta, width, SIMT_LOC);
}
template <class T> inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize, SIMT_LOC_DECL) {
  return simt::shfl(simt::OP_SHFL_DOWN, mask, var, (int)delta, width, SIMT_LOC);
}
template <class T> inline T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = warpSize, SIMT_LOC_DECL) {
  return simt::shfl(simt::OP_SHFL_XOR, mask, var, laneMask, width, SIMT_LOC);
}
inline unsigned __ballot_sync(unsigned mask, int pred, SIMT_LOC_DECL) {
  unsigned v; simt::warp_op(simt::OP_BALLOT, mask, nullptr, 0, 0, 32, pred != 0, &v, SIMT_LOC); return v;
}
inline int __any_sync(unsigned mask, int pred, SIMT_LOC_DECL) {
  unsigned v; simt::warp_op(simt::OP_ANY, mask, nullptr, 0, 0, 32, pred != 0, &v, SIMT_LOC); return (int)v;
}
inline int __all_sync(unsigned mask, int pred, SIMT_LOC_DECL) {
  unsigned v; simt::warp_op(simt::OP_ALL, mask, nullptr, 0, 0, 32, pred != 0, &v, SIMT_LOC); return (int)v;
}
// All lanes of the warp that have not exited (fibers have no notion of convergence).
inline unsigned __activemask() { return simt::activemask(); }
[[noreturn]] inline void __trap(SIMT_LOC_DECL) { simt::trap(SIMT_LOC); }
namespace simt { [[noreturn]] void misaligned(const void* p, int align, const char* what, const char* file, int line); }
// A vector access that a GPU requires to be `align`-byte aligned, or it traps ("misaligned address"); x86
// does not care, so sim mode checks it where the code says so (llmc/packed128.cuh's 128-bit helpers).
inline void simt_check_aligned(const void* p, int align, const char* what, SIMT_LOC_DECL) {
  if ((uintptr_t)p & (uintptr_t)(align - 1)) simt::misaligned(p, align, what, SIMT_LOC);
}
namespace simt { void note_fence(); }  // the running CUDA thread executed a device-wide fence
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); simt::note_fence(); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_system() { __atomic_thread_fence(__ATOMIC_SEQ_CST); simt::note_fence(); }
inline void __nanosleep(unsigned) {}
long long clock64();

// ---- 4. atomics. Fibers never switch inside them; the __atomic builtins keep them correct
// if host threads (NCCL ranks) touch the same memory.
namespace simt {
template <class T> inline T atomic_rmw(T* a, T v, int op) {  // float/double/half via CAS on the bits
  using U = std::conditional_t<sizeof(T) == 2, unsigned short, std::conditional_t<sizeof(T) == 4, unsigned, unsigned long long>>;
  static_assert(sizeof(T) == sizeof(U), "atomic size");
  U* u = (U*)a; U old = __atomic_load_n(u, __ATOMIC_RELAXED), nv;
  T r;
  do {
    T cur; std::memcpy((void*)&cur, &old, sizeof(T));
    T n = op == 0 ? T(cur + v) : op == 1 ? (v < cur ? v : cur) : op == 2 ? (cur < v ? v : cur) : v;
    std::memcpy(&nv, (const void*)&n, sizeof(T)); r = cur;
  } while (!__atomic_compare_exchange_n(u, &old, nv, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
  return r;
}
}  // namespace simt
// The old value of an unsigned atomicAdd/atomicInc: compared with the number of blocks minus one, it is the
// ticket by which the last block of a kernel takes over the other blocks' results (llmc/layernorm.cuh). On a
// GPU their writes are visible to it only if each block executed __threadfence() before taking its ticket;
// blocks run one after another here, so that comparison checks that the calling thread did (ticket-fence).
// Anything else converts it to unsigned. Not trivially copyable, so that passing it to printf is an error.
namespace simt {
void check_ticket_fence(const char* file, int line);
struct Ticket {
  unsigned v; const char* file; int line;
  Ticket(unsigned v_, const char* f, int l) : v(v_), file(f), line(l) {}
  Ticket(const Ticket& o) : v(o.v), file(o.file), line(o.line) {}
  operator unsigned() const { return v; }
  bool last(unsigned x) const {
    if (x == gridDim.x * gridDim.y * gridDim.z - 1) check_ticket_fence(file, line);
    return v == x;
  }
};
}  // namespace simt
inline bool operator==(const simt::Ticket& t, unsigned x) { return t.last(x); }
inline bool operator==(unsigned x, const simt::Ticket& t) { return t.last(x); }
inline bool operator!=(const simt::Ticket& t, unsigned x) { return !t.last(x); }
inline bool operator!=(unsigned x, const simt::Ticket& t) { return !t.last(x); }
inline bool operator==(const simt::Ticket& t, int x) { return t.last((unsigned)x); }  // `t == 0`: not ambiguous
inline bool operator==(int x, const simt::Ticket& t) { return t.last((unsigned)x); }
inline bool operator!=(const simt::Ticket& t, int x) { return !t.last((unsigned)x); }
inline bool operator!=(int x, const simt::Ticket& t) { return !t.last((unsigned)x); }
inline simt::Ticket atomicAdd(unsigned* a, unsigned v, SIMT_LOC_DECL) {
  return simt::Ticket(__atomic_fetch_add(a, v, __ATOMIC_RELAXED), SIMT_LOC);
}
#define SIMT_ATOMIC_ADD(T) inline T atomicAdd(T* a, T v) { return __atomic_fetch_add(a, v, __ATOMIC_RELAXED); }
SIMT_ATOMIC_ADD(int)
SIMT_ATOMIC_ADD(unsigned long long)
SIMT_ATOMIC_ADD(long long)
#undef SIMT_ATOMIC_ADD
#define SIMT_ATOMIC_INT(T)                                                                              \
  inline T atomicSub(T* a, T v) { return __atomic_fetch_sub(a, v, __ATOMIC_RELAXED); }                 \
  inline T atomicMin(T* a, T v) { return simt::atomic_rmw(a, v, 1); }                                   \
  inline T atomicMax(T* a, T v) { return simt::atomic_rmw(a, v, 2); }                                   \
  inline T atomicExch(T* a, T v) { return __atomic_exchange_n(a, v, __ATOMIC_RELAXED); }               \
  inline T atomicAnd(T* a, T v) { return __atomic_fetch_and(a, v, __ATOMIC_RELAXED); }                 \
  inline T atomicOr(T* a, T v) { return __atomic_fetch_or(a, v, __ATOMIC_RELAXED); }                   \
  inline T atomicXor(T* a, T v) { return __atomic_fetch_xor(a, v, __ATOMIC_RELAXED); }                 \
  inline T atomicCAS(T* a, T cmp, T v) {                                                                \
    __atomic_compare_exchange_n(a, &cmp, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED); return cmp;     \
  }
SIMT_ATOMIC_INT(int)
SIMT_ATOMIC_INT(unsigned)
SIMT_ATOMIC_INT(unsigned long long)
SIMT_ATOMIC_INT(long long)
#undef SIMT_ATOMIC_INT

inline unsigned short atomicCAS(unsigned short* a, unsigned short cmp, unsigned short v) {
  __atomic_compare_exchange_n(a, &cmp, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED); return cmp;
}
// CUDA's atomicInc/atomicDec wrap at `limit`.
inline simt::Ticket atomicInc(unsigned* a, unsigned limit, SIMT_LOC_DECL) {
  unsigned old = __atomic_load_n(a, __ATOMIC_RELAXED), nv;
  do { nv = old >= limit ? 0 : old + 1; } while (!__atomic_compare_exchange_n(a, &old, nv, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
  return simt::Ticket(old, SIMT_LOC);
}
inline unsigned atomicDec(unsigned* a, unsigned limit) {
  unsigned old = __atomic_load_n(a, __ATOMIC_RELAXED), nv;
  do { nv = (old == 0 || old > limit) ? limit : old - 1; } while (!__atomic_compare_exchange_n(a, &old, nv, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
  return old;
}
inline float atomicAdd(float* a, float v) { return simt::atomic_rmw(a, v, 0); }
inline double atomicAdd(double* a, double v) { return simt::atomic_rmw(a, v, 0); }
inline float atomicMin(float* a, float v) { return simt::atomic_rmw(a, v, 1); }  // sm_90+ has these
inline float atomicMax(float* a, float v) { return simt::atomic_rmw(a, v, 2); }
inline float atomicExch(float* a, float v) { return simt::atomic_rmw(a, v, 3); }
inline __half atomicAdd(__half* a, __half v) { return simt::atomic_rmw(a, v, 0); }
inline __nv_bfloat16 atomicAdd(__nv_bfloat16* a, __nv_bfloat16 v) { return simt::atomic_rmw(a, v, 0); }
// Vector atomics are atomic per element on the GPU too (sm_60+ for half2, sm_80+ bf162, sm_90 float2/4).
inline __half2 atomicAdd(__half2* a, __half2 v) {
  __half2 r; r.x = atomicAdd(&a->x, v.x); r.y = atomicAdd(&a->y, v.y); return r;
}
inline __nv_bfloat162 atomicAdd(__nv_bfloat162* a, __nv_bfloat162 v) {
  __nv_bfloat162 r; r.x = atomicAdd(&a->x, v.x); r.y = atomicAdd(&a->y, v.y); return r;
}
inline float2 atomicAdd(float2* a, float2 v) { return make_float2(atomicAdd(&a->x, v.x), atomicAdd(&a->y, v.y)); }
inline float4 atomicAdd(float4* a, float4 v) {
  return make_float4(atomicAdd(&a->x, v.x), atomicAdd(&a->y, v.y), atomicAdd(&a->z, v.z), atomicAdd(&a->w, v.w));
}

// ---- 5. device math and memory intrinsics (host versions; the fast-math ones are NOT
// bit-identical to the GPU's approximations, compare with tolerances)
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __expf(float x) { return expf(x); }
inline float __exp10f(float x) { return powf(10.f, x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __log10f(float x) { return log10f(x); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanf(float x) { return tanf(x); }
inline float __powf(float a, float b) { return powf(a, b); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __frsqrt_rn(float x) { return 1.0f / sqrtf(x); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline float __saturatef(float x) { return x < 0.f ? 0.f : (x > 1.f ? 1.f : x); }
inline int __float2int_rn(float x) { return (int)nearbyintf(x); }
inline int __float2int_rz(float x) { return (int)x; }
inline unsigned __float2uint_rn(float x) { return (unsigned)nearbyintf(x); }
inline float __int2float_rn(int x) { return (float)x; }
inline float __uint2float_rn(unsigned x) { return (float)x; }
inline int __float_as_int(float f) { int i; std::memcpy(&i, &f, 4); return i; }
inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned i; std::memcpy(&i, &f, 4); return i; }
inline float __uint_as_float(unsigned i) { float f; std::memcpy(&f, &i, 4); return f; }
inline long long __double_as_longlong(double d) { long long i; std::memcpy(&i, &d, 8); return i; }
inline double __longlong_as_double(long long i) { double d; std::memcpy(&d, &i, 8); return d; }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll((unsigned long long)x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned __brev(unsigned x) {
  x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1); x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
  x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4); return __builtin_bswap32(x);
}
inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((unsigned long long)a * b) >> 32); }
inline int __mulhi(int a, int b) { return (int)(((long long)a * b) >> 32); }
inline int __mul24(int a, int b) { return (int)(((long long)(a << 8 >> 8)) * (b << 8 >> 8)); }
// Cache hints: plain loads and stores on the CPU.
template <class T> inline T __ldg(const T* p) { return *p; }
template <class T> inline T __ldcs(const T* p) { return *p; }
template <class T> inline T __ldcg(const T* p) { return *p; }
template <class T> inline T __ldca(const T* p) { return *p; }
template <class T> inline T __ldlu(const T* p) { return *p; }
template <class T> inline T __ldcv(const T* p) { return *p; }
template <class T> inline void __stcs(T* p, T v) { *p = v; }
template <class T> inline void __stcg(T* p, T v) { *p = v; }
template <class T> inline void __stwb(T* p, T v) { *p = v; }
template <class T> inline void __stwt(T* p, T v) { *p = v; }

// ---- 6. nvcuda::wmma (tensor-core fragments), with an element-to-lane mapping of the runtime's choosing
#include "simt_wmma.h"
