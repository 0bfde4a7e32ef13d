// packed128.cuh -- 16-byte vectors for the memory-bound kernels: one 128-bit load or store moves
// 16/sizeof(T) elements (8 BF16/FP16, 4 FP32), four times fewer memory instructions than 32-bit
// accesses and eight times fewer than 16-bit ones.
//
//   Packed128<T>               16-byte aligned array of Packed128<T>::size elements of T
//   load128(p), store128(p, x) one 128-bit access; p must be 16-byte aligned
//   load128cg(p)               the same through L2 only (bypasses L1): for data that other blocks wrote
//                              during this kernel (layernorm_backward's partial sums)
//   is_aligned16(p)            whether p may be used with the above
//   from_f32<T>(f)             float -> T, round to nearest even (identity for float)
//   load_f32<N[, L2_ONLY]>(out, p, count, vec) / store_f32<N>(p, in, count, vec)
//                              N consecutive elements p[0..N) as floats, N*sizeof(T) a multiple of 16: with
//                              `vec` and count == N through N*sizeof(T)/16 128-bit accesses, else element
//                              by element for the first `count` (< N at a row's or an array's end; loads
//                              give 0 past it, stores leave it alone). The kernels compute `vec` once: all
//                              their pointers aligned and every row length a multiple of the width, so odd
//                              shapes and offsets still work, on the scalar path.
// The elements move as raw bytes (memcpy into an int4), so T need not be trivially copyable (on the host
// __nv_bfloat16 is not); nvcc keeps both sides in registers.
#pragma once
#include <string.h>
#include "cuda_common.h"

template <class T>
struct alignas(16) Packed128 {
    static constexpr int size = 16 / sizeof(T);
    T v[size];
};

// A GPU traps on a misaligned 128-bit access; the CPU of sim mode would not, so SIMT checks each one.
#ifdef SIMT_CPU
#define PACKED128_CHECK(p, what) simt_check_aligned(p, 16, what)
#else
#define PACKED128_CHECK(p, what)
#endif

template <class T>
__device__ inline Packed128<T> packed_from_bits(int4 bits) {
    Packed128<T> x;
    memcpy(&x, &bits, sizeof(x));
    return x;
}

template <class T>
__device__ inline Packed128<T> load128(const T* p) {
    PACKED128_CHECK(p, "load128");
    return packed_from_bits<T>(*reinterpret_cast<const int4*>(p));
}

template <class T>
__device__ inline Packed128<T> load128cg(const T* p) {
    PACKED128_CHECK(p, "load128cg");
    return packed_from_bits<T>(__ldcg(reinterpret_cast<const int4*>(p)));
}

template <class T>
__device__ inline void store128(T* p, const Packed128<T>& x) {
    PACKED128_CHECK(p, "store128");
    int4 bits;
    memcpy(&bits, &x, sizeof(bits));
    *reinterpret_cast<int4*>(p) = bits;
}

__host__ __device__ inline bool is_aligned16(const void* p) { return ((size_t)p & 15) == 0; }

template <class T> __device__ inline T from_f32(float f);
template <> __device__ inline float from_f32<float>(float f) { return f; }
template <> __device__ inline __nv_bfloat16 from_f32<__nv_bfloat16>(float f) { return __float2bfloat16_rn(f); }
template <> __device__ inline __half from_f32<__half>(float f) { return __float2half_rn(f); }

template <int N, bool L2_ONLY = false, class T>
__device__ inline void load_f32(float* out, const T* p, int count, bool vec) {
    constexpr int W = Packed128<T>::size;
    static_assert(N % W == 0, "N elements must fill whole 128-bit vectors");
    if (vec && count == N) {
#pragma unroll
        for (int j = 0; j < N; j += W) {
            Packed128<T> x = L2_ONLY ? load128cg(p + j) : load128(p + j);
#pragma unroll
            for (int k = 0; k < W; k++) { out[j + k] = to_f32(x.v[k]); }
        }
    } else {
#pragma unroll
        for (int k = 0; k < N; k++) { out[k] = k < count ? to_f32(L2_ONLY ? __ldcg(p + k) : p[k]) : 0.0f; }
    }
}

template <int N, class T>
__device__ inline void store_f32(T* p, const float* in, int count, bool vec) {
    constexpr int W = Packed128<T>::size;
    static_assert(N % W == 0, "N elements must fill whole 128-bit vectors");
    if (vec && count == N) {
#pragma unroll
        for (int j = 0; j < N; j += W) {
            Packed128<T> x;
#pragma unroll
            for (int k = 0; k < W; k++) { x.v[k] = from_f32<T>(in[j + k]); }
            store128(p + j, x);
        }
    } else {
#pragma unroll
        for (int k = 0; k < N; k++) {
            if (k < count) { p[k] = from_f32<T>(in[k]); }
        }
    }
}
