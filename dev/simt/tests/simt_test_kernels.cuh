// Kernels shared by the self-test and the benchmark. A quoted header with kernels AND launches,
// as llm.c's llmc/*.cuh are: simt_pp.py rewrites it into build/simt/pp/inc/.
#pragma once
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cstring>

// ---- layernorm forward: one warp per row, 128-bit loads, shuffle reductions (llm.c style)
template <class T> struct alignas(16) Packed128 {
  static constexpr int N = 16 / sizeof(T);
  T v[N];
  __device__ T& operator[](int i) { return v[i]; }
};
template <class T> __device__ Packed128<T> load128(const T* p) {
  int4 raw = __ldcs(reinterpret_cast<const int4*>(p));
  Packed128<T> r; memcpy((void*)&r, &raw, 16); return r;
}
template <class T> __device__ void store128(T* p, Packed128<T> r) {
  int4 raw; memcpy(&raw, (const void*)&r, 16); __stcs(reinterpret_cast<int4*>(p), raw);
}
__device__ float to_f(float x) { return x; }
__device__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
template <class T> __device__ T from_f(float x) { return (T)x; }
template <> __device__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) { return __float2bfloat16(x); }
__device__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
template <class T>
__global__ void layernorm_fwd(T* __restrict__ out, float* __restrict__ mean, float* __restrict__ rstd,
                              const T* __restrict__ inp, const T* __restrict__ w, const T* __restrict__ b, int N, int C) {
  int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= N) return;  // whole warps leave together, and there is no __syncthreads below
  const T* x = inp + (size_t)row * C;
  constexpr int V = Packed128<T>::N;
  float s = 0.f;
  for (int c = lane * V; c < C; c += 32 * V) { Packed128<T> p = load128(x + c); for (int k = 0; k < V; k++) s += to_f(p[k]); }
  float m = warp_sum(s) / C, ss = 0.f;
  for (int c = lane * V; c < C; c += 32 * V) {
    Packed128<T> p = load128(x + c);
    for (int k = 0; k < V; k++) { float d = to_f(p[k]) - m; ss += d * d; }
  }
  float r = rsqrtf(warp_sum(ss) / C + 1e-5f);
  for (int c = lane * V; c < C; c += 32 * V) {
    Packed128<T> p = load128(x + c), pw = load128(w + c), pb = load128(b + c), o;
    for (int k = 0; k < V; k++) o[k] = from_f<T>((to_f(p[k]) - m) * r * to_f(pw[k]) + to_f(pb[k]));
    store128(out + (size_t)row * C + c, o);
  }
  if (lane == 0) { __stcs(mean + row, m); __stcs(rstd + row, r); }
}

// host launcher: 32 threads per row
template <class T>
cudaError_t layernorm_forward(T* out, float* mean, float* rstd, const T* inp, const T* w, const T* b, int N, int C,
                              int block, cudaStream_t st = 0) {
  int rows_per_block = block / 32;
  layernorm_fwd<<<(N + rows_per_block - 1) / rows_per_block, block, 0, st>>>(out, mean, rstd, inp, w, b, N, C);
  return cudaGetLastError();
}
