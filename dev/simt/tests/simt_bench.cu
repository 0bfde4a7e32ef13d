// Micro-benchmarks of the SIMT runtime (make bench_simt): what a CUDA thread, a barrier and a
// shuffle cost on the CPU, and a 768-wide layernorm over 256 rows. Single-threaded: blocks run
// one after another. Also compiles with nvcc (then it times the GPU, without the switch counts).
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <vector>
#include "simt_test_kernels.cuh"

static double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
__global__ void empty_kernel(float* out) { if (threadIdx.x == 1234567) out[0] = 1.f; }  // never true: no work
__global__ void syncthreads_loop(int iters) { for (int i = 0; i < iters; i++) __syncthreads(); }
__global__ void syncwarp_loop(int iters) { for (int i = 0; i < iters; i++) __syncwarp(); }
__global__ void shfl_loop(float* out, int iters) {
  float v = threadIdx.x;
  for (int i = 0; i < iters; i++) v += __shfl_xor_sync(0xffffffffu, v, 1 << (i % 5));
  out[blockIdx.x * blockDim.x + threadIdx.x] = v;
}
__global__ void gelu_kernel(float* out, const float* in, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) { float x = in[i]; out[i] = 0.5f * x * (1.f + tanhf(0.7978845608f * (x + 0.044715f * x * x * x))); }
}

// best of `reps` runs, in seconds
template <class F> static double best(int reps, F f) {
  double b = 1e30;
  for (int r = 0; r < reps; r++) { double t0 = now(); f(); cudaDeviceSynchronize(); b = fmin(b, now() - t0); }
  return b;
}

int main() {
  const int n = 1 << 20;
  float *a, *b;
  cudaMalloc(&a, n * 4); cudaMalloc(&b, n * 4); cudaMemset(a, 0, n * 4);
  empty_kernel<<<1, 1024>>>(b);  // maps the fiber stacks once
  double t = best(3, [&] { empty_kernel<<<n / 256, 256>>>(b); });
  double per_thread = t / n;
  printf("thread (start + exit), 2^20 threads in blocks of 256: %6.1f ns per CUDA thread\n", per_thread * 1e9);
  const int iters = 1000;
  t = best(3, [&] { syncthreads_loop<<<1, 1024>>>(iters); });
  printf("__syncthreads, 1024 threads x %d:                 %6.1f ns per thread per barrier\n", iters, (t / 1024 - per_thread) / iters * 1e9);
  t = best(3, [&] { syncwarp_loop<<<1, 1024>>>(iters); });
  printf("__syncwarp, 1024 threads x %d:                    %6.1f ns per thread per __syncwarp\n", iters, (t / 1024 - per_thread) / iters * 1e9);
  t = best(3, [&] { shfl_loop<<<4, 256>>>(b, iters); });
  printf("__shfl_xor_sync, 1024 threads x %d:               %6.1f ns per thread per shuffle\n", iters, (t / 1024 - per_thread) / iters * 1e9);
  t = best(3, [&] { gelu_kernel<<<n / 256, 256>>>(b, a, n); });
  double tc = 1e30;
  for (int r = 0; r < 3; r++) {
    double t0 = now();
    for (int i = 0; i < n; i++) { float x = a[i]; b[i] = 0.5f * x * (1.f + tanhf(0.7978845608f * (x + 0.044715f * x * x * x))); }
    tc = fmin(tc, now() - t0);
  }
  printf("GELU, one thread per element, 2^20 elements:     %6.1f ns per thread (plain C loop: %.1f ns per element)\n", t / n * 1e9, tc / n * 1e9);
  // layernorm 256 x 768: fp32 with 4 rows per 128-thread block, bf16 with 8 rows per 256
  const int N = 256, C = 768;
  std::vector<float> h((size_t)N * C);
  for (size_t i = 0; i < h.size(); i++) h[i] = sinf((float)i);
  float *x, *w, *bb, *y, *m, *r;
  cudaMalloc(&x, N * C * 4); cudaMalloc(&w, C * 4); cudaMalloc(&bb, C * 4); cudaMalloc(&y, N * C * 4);
  cudaMalloc(&m, N * 4); cudaMalloc(&r, N * 4);
  cudaMemcpy(x, h.data(), N * C * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(w, h.data(), C * 4, cudaMemcpyHostToDevice); cudaMemcpy(bb, h.data(), C * 4, cudaMemcpyHostToDevice);
  t = best(5, [&] { layernorm_forward(y, m, r, x, w, bb, N, C, 128); });
  printf("layernorm fp32 %d x %d (warp per row, 10 shuffles per thread):  %.2f ms\n", N, C, t * 1e3);
  __nv_bfloat16 *xb, *wb, *bbb, *yb;
  cudaMalloc(&xb, N * C * 2); cudaMalloc(&wb, C * 2); cudaMalloc(&bbb, C * 2); cudaMalloc(&yb, N * C * 2);
  std::vector<__nv_bfloat16> hb(h.size());
  for (size_t i = 0; i < h.size(); i++) hb[i] = __float2bfloat16(h[i]);
  cudaMemcpy(xb, hb.data(), N * C * 2, cudaMemcpyHostToDevice);
  cudaMemcpy(wb, hb.data(), C * 2, cudaMemcpyHostToDevice); cudaMemcpy(bbb, hb.data(), C * 2, cudaMemcpyHostToDevice);
  t = best(5, [&] { layernorm_forward(yb, m, r, xb, wb, bbb, N, C, 256); });
  printf("layernorm bf16 %d x %d:                                          %.2f ms\n", N, C, t * 1e3);
  return 0;
}
