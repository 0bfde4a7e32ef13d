// simt_wmma.h -- nvcuda::wmma on the CPU (included by simt.h): fragments, load/store/fill and mma_sync for
// 16x16x16 with __half or __nv_bfloat16 inputs and float accumulators. (Under sim mode CUDA's own <mma.h>
// declares nothing, since __CUDACC__ is not defined, so kernels may keep their #include <mma.h>.)
//
// CUDA leaves unspecified which lane holds which element of a fragment, and code that reads x[i] expecting a
// row or column is wrong on some GPU. So the element-to-lane mapping here is the runtime's own choice, picked
// at run time by SIMT_WMMA_MAPPING (or simt::wmma_set_mapping, for tests):
//   0 (default): lane l holds elements (r, c) with r*16 + c = 8l .. 8l+7 (half a row each, in order)
//   1: the mma.m16n8k16 accumulator pattern: g = l/4, t = l%4, element e at
//      r = g + 8*((e>>1)&1), c = 2t + (e&1) + 8*(e>>2)
// A kernel must pass its tests under both. Every fragment has 8 elements per lane (num_elements), a matrix_b's
// (r, c) is (k, n). mma_sync is warp-collective (two __syncwarp: lanes that diverge or exited are reported);
// it sums the 16 exact products of each output into the accumulator in fp32, k = 0..15 in order. Pointers
// must be 32-byte aligned and ldm a multiple of 16 bytes, as CUDA requires; a violation traps.
#pragma once

namespace simt {
inline int wmma_mapping_value = -1;  // -1: not read from the environment yet
inline int wmma_mapping() {
  if (wmma_mapping_value < 0) {
    const char* s = getenv("SIMT_WMMA_MAPPING");
    wmma_mapping_value = s && *s == '1' ? 1 : 0;
  }
  return wmma_mapping_value;
}
inline void wmma_set_mapping(int m) { wmma_mapping_value = m != 0; }
inline int wmma_lane_linear() { return (int)(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)); }
// position r*16 + c of element e held by `lane`
inline int wmma_pos(int lane, int e) {
  if (wmma_mapping() == 0) return lane * 8 + e;
  int g = lane >> 2, t = lane & 3;
  return (g + 8 * ((e >> 1) & 1)) * 16 + 2 * t + (e & 1) + 8 * (e >> 2);
}
inline void wmma_check(const char* api, const void* p, unsigned ldm, size_t esize, const char* file, int line) {
  if (((uintptr_t)p & 31) || (ldm * esize) % 16 || ldm < 16) {
    fprintf(stderr, "SIMT: %s:%d: wmma::%s: pointer %p must be 32-byte aligned and ldm (%u) a multiple of %zu "
            "elements, at least 16\n", file, line, api, p, ldm, 16 / esize);
    trap(file, line);
  }
}
// Per warp of the running block: the A and B operands of the mma_sync in progress, widened to float.
// Fibers of one launch run on one host thread; thread_local keeps launches on other threads apart.
inline thread_local float wmma_stage[32][2][256];
}  // namespace simt

namespace nvcuda {
namespace wmma {
struct row_major {};
struct col_major {};
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  static_assert(M == 16 && N == 16 && K == 16, "SIMT emulates the 16x16x16 wmma shape only");
  static_assert(std::is_same<Use, accumulator>::value ? std::is_same<T, float>::value
                    : std::is_same<T, __half>::value || std::is_same<T, __nv_bfloat16>::value,
                "SIMT emulates half/bfloat16 matrix_a/matrix_b and float accumulators");
  enum { num_elements = 8 };
  typedef T element_type;
  T x[num_elements];
};

template <class Use, class T, class L>
inline void load_matrix_sync(fragment<Use, 16, 16, 16, T, L>& f, const T* p, unsigned ldm, SIMT_LOC_DECL) {
  static_assert(!std::is_same<L, void>::value, "an accumulator load takes a layout_t");
  simt::wmma_check("load_matrix_sync", p, ldm, sizeof(T), SIMT_LOC);
  int lane = simt::wmma_lane_linear() & 31;
  for (int e = 0; e < 8; e++) {
    int pos = simt::wmma_pos(lane, e), r = pos >> 4, c = pos & 15;
    f.x[e] = std::is_same<L, row_major>::value ? p[(size_t)r * ldm + c] : p[(size_t)c * ldm + r];
  }
}
inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float>& f, const float* p, unsigned ldm, layout_t l,
                             SIMT_LOC_DECL) {
  simt::wmma_check("load_matrix_sync", p, ldm, sizeof(float), SIMT_LOC);
  int lane = simt::wmma_lane_linear() & 31;
  for (int e = 0; e < 8; e++) {
    int pos = simt::wmma_pos(lane, e), r = pos >> 4, c = pos & 15;
    f.x[e] = l == mem_row_major ? p[(size_t)r * ldm + c] : p[(size_t)c * ldm + r];
  }
}
inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 16, float>& f, unsigned ldm, layout_t l,
                              SIMT_LOC_DECL) {
  simt::wmma_check("store_matrix_sync", p, ldm, sizeof(float), SIMT_LOC);
  int lane = simt::wmma_lane_linear() & 31;
  for (int e = 0; e < 8; e++) {
    int pos = simt::wmma_pos(lane, e), r = pos >> 4, c = pos & 15;
    (l == mem_row_major ? p[(size_t)r * ldm + c] : p[(size_t)c * ldm + r]) = f.x[e];
  }
}
template <class Use, class T, class L, class V>
inline void fill_fragment(fragment<Use, 16, 16, 16, T, L>& f, const V& v) {
  for (int e = 0; e < 8; e++) f.x[e] = T(v);
}
template <class TA, class LA, class TB, class LB>
inline void mma_sync(fragment<accumulator, 16, 16, 16, float>& d, const fragment<matrix_a, 16, 16, 16, TA, LA>& a,
                     const fragment<matrix_b, 16, 16, 16, TB, LB>& b, const fragment<accumulator, 16, 16, 16, float>& c,
                     SIMT_LOC_DECL) {
  static_assert(std::is_same<TA, TB>::value, "matrix_a and matrix_b must have the same element type");
  int lin = simt::wmma_lane_linear(), lane = lin & 31;
  float(*st)[256] = simt::wmma_stage[lin >> 5];
  for (int e = 0; e < 8; e++) {
    int pos = simt::wmma_pos(lane, e);
    st[0][pos] = (float)a.x[e];
    st[1][pos] = (float)b.x[e];
  }
  __syncwarp(0xffffffffu, SIMT_LOC);  // every lane has published its part of A and B
  float out[8];
  for (int e = 0; e < 8; e++) {
    int pos = simt::wmma_pos(lane, e), r = pos >> 4, col = pos & 15;
    float acc = c.x[e];
    for (int k = 0; k < 16; k++) acc += st[0][r * 16 + k] * st[1][k * 16 + col];
    out[e] = acc;
  }
  __syncwarp(0xffffffffu, SIMT_LOC);  // every lane has read them before any lane's next mma_sync overwrites them
  for (int e = 0; e < 8; e++) d.x[e] = out[e];
}
}  // namespace wmma
}  // namespace nvcuda
