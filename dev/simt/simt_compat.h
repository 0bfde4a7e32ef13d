// simt_compat.h -- the escape hatch for code that cannot go through simt_pp.py: two macros that
// expand to real CUDA syntax under nvcc and to the SIMT runtime's calls in sim mode.
//   SIMT_LAUNCH(grid, block, smem, stream, kernel<T>)(args...);
//   SIMT_DYNAMIC_SHARED(float, buf);   // extern __shared__ float buf[];  (inside the kernel)
#pragma once
#if defined(SIMT_CPU)
#define SIMT_LAUNCH(grid, block, smem, stream, ...)                                              \
  ::simt::make_launcher(::simt::Cfg((grid), (block), (smem), (stream)),                         \
                        ::simt::LaunchInfo{#__VA_ARGS__, __FILE__, __LINE__},                    \
                        [&](auto&... simt_a) { __VA_ARGS__(simt_a...); })
#define SIMT_DYNAMIC_SHARED(T, name) T* name = reinterpret_cast<T*>(::simt::dynamic_smem())
#else
#define SIMT_LAUNCH(grid, block, smem, stream, ...) __VA_ARGS__<<<(grid), (block), (smem), (stream)>>>
#define SIMT_DYNAMIC_SHARED(T, name) extern __shared__ T name[]
#endif
