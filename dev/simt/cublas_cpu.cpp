// cublas_cpu.cpp -- the cuBLAS / cuBLASLt subset a GPT-2 trainer uses, on the CPU, for sim mode.
// Compiled against the REAL cublas_v2.h / cublasLt.h (so the compiler checks every signature)
// and linked instead of -lcublas -lcublasLt. Inputs fp32, bf16 or fp16 are widened to fp32 and
// multiplied by OpenBLAS sgemm (fp32 accumulation, like CUBLAS_COMPUTE_32F; the summation order
// differs, so compare with tolerances). Epilogues: DEFAULT, BIAS, GELU, GELU_BIAS, GELU_AUX,
// GELU_AUX_BIAS, DGELU, DGELU_BGRAD, BGRADA, BGRADB; GELU is the tanh approximation. DGELU rounds the GEMM
// result to the output type before multiplying by gelu' and rounds again, as cuBLASLt 13.1 did on an H200 (BF16
// errors up to 0.88 ulp, which one rounding cannot give): no test here may assume one rounding.
// Anything else returns CUBLAS_STATUS_NOT_SUPPORTED with a report, never a silent wrong answer.
// Every matrix must lie inside one cudaMalloc'd allocation (on a GPU: an illegal address).
// A handle belongs to the device current at its creation: using it, its stream or a workspace with
// another device, or operands another device cannot reach, is reported ("wrong-device").
//
// Reduction order. The real cuBLASLt heuristic may pick a different kernel (split-K or not, another
// k blocking) when pointers or leading dimensions are less aligned, so results can depend on
// alignment in the last bits. This shim does so deliberately, by a fixed rule, so that tests see it:
//   aligned := A, B, C and D are 256-byte aligned and every ld * element size is a multiple of 16 B
//              (for cublasLtMatmulAlgoGetHeuristic: the CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*_BYTES it
//              was given, 256 by default as in cuBLASLt; for a NULL algo: the actual pointers)
//   aligned, or k < 3  -> one pass over k (ORDER_PLAIN)
//   otherwise, if the workspace allowed holds 3*m*n floats -> split-K: three k slices computed into
//              the workspace and summed as (s2 + s1) + s0 (ORDER_SPLITK; the workspace must then be
//              on the handle's device and that big)
//   otherwise          -> the three k slices accumulated into the output last slice first (ORDER_REVERSE)
// The three orders round differently, so the same GEMM at 256-B and at 128-B aligned addresses
// gives different bits, as it can on a GPU. A returned algo promises the alignments it was chosen
// for; running it on less aligned pointers is reported ("cublas-alignment").
#include <cublas_v2.h>
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <vector>
#if !defined(SIMT_NO_OPENBLAS)
#include <cblas.h>
#endif
#include "simt_host.h"

namespace {
std::mutex g_blas_mu;  // rank threads may call at once; one GEMM at a time keeps OpenBLAS simple

size_t type_size(cudaDataType t) {
  switch (t) { case CUDA_R_32F: return 4; case CUDA_R_16BF: case CUDA_R_16F: return 2; default: return 0; }
}
const char* type_name(cudaDataType t) {
  switch (t) { case CUDA_R_32F: return "CUDA_R_32F"; case CUDA_R_16BF: return "CUDA_R_16BF"; case CUDA_R_16F: return "CUDA_R_16F"; default: return "unsupported type"; }
}
inline float ld(const void* p, cudaDataType t, size_t i) {
  if (t == CUDA_R_32F) return ((const float*)p)[i];
  if (t == CUDA_R_16BF) { unsigned u = (unsigned)((const uint16_t*)p)[i] << 16; float f; memcpy(&f, &u, 4); return f; }
  return __half2float(((const __half*)p)[i]);
}
inline void st(void* p, cudaDataType t, size_t i, float v) {
  if (t == CUDA_R_32F) ((float*)p)[i] = v;
  else if (t == CUDA_R_16BF) ((__nv_bfloat16*)p)[i] = __float2bfloat16(v);  // round to nearest even, as cuBLAS
  else ((__half*)p)[i] = __float2half(v);
}
inline float rounded_to(cudaDataType t, float v) {
  if (t == CUDA_R_16BF) return __bfloat162float(__float2bfloat16(v));
  if (t == CUDA_R_16F) return __half2float(__float2half(v));
  return v;
}
inline float gelu(float x) { return 0.5f * x * (1.f + tanhf(0.7978845608f * (x + 0.044715f * x * x * x))); }
inline float dgelu(float x) {  // derivative of the tanh approximation
  float u = 0.7978845608f * (x + 0.044715f * x * x * x), t = tanhf(u);
  return 0.5f * (1.f + t) + 0.5f * x * (1.f - t * t) * 0.7978845608f * (1.f + 3.f * 0.044715f * x * x);
}

// One operand as stored: a rows x cols column-major matrix with leading dimension ld, `batch`
// copies `stride` elements apart.
struct Mat { const void* p; cudaDataType t; long rows, cols, ld; long long stride; };

bool check_mat(const char* api, const char* which, const Mat& m, int batch) {
  if (!type_size(m.t)) { simt::report_error("cublas-type", "%s: matrix %s has %s; supported: fp32, bf16, fp16", api, which, type_name(m.t)); return false; }
  if (m.ld < (m.rows > 1 ? m.rows : 1)) { simt::report_error("cublas-ld", "%s: matrix %s: ld %ld < rows %ld", api, which, m.ld, m.rows); return false; }
  if (m.rows == 0 || m.cols == 0) return true;
  size_t elems = (size_t)((batch - 1) * m.stride + (m.cols - 1) * m.ld + m.rows);
  if (!m.p || !simt::device_range_ok(m.p, elems * type_size(m.t))) {
    simt::report_error("cublas-range", "%s: matrix %s (%ld x %ld, ld %ld, batch %d, stride %lld, %s) at %p is not inside one device allocation",
                       api, which, m.rows, m.cols, m.ld, batch, m.stride, type_name(m.t), m.p);
    return false;
  }
  int dev = simt::current_device(), owner = simt::device_of(m.p);
  if (!simt::can_access(dev, owner)) {
    simt::report_at_caller("wrong-device", "%s: matrix %s at %p is memory of device %d, but the GEMM runs on device %d "
                           "(an illegal address on a GPU, unless peer access was enabled)", api, which, m.p, owner, dev);
    return false;
  }
  return true;
}
// The stored matrix as contiguous fp32 (ld = rows); fp32 input is used in place.
const float* widen(const Mat& m, long long off, std::vector<float>& buf, long* ld_out) {
  if (m.t == CUDA_R_32F) { *ld_out = m.ld; return (const float*)m.p + off; }
  buf.resize((size_t)m.rows * m.cols);
  for (long j = 0; j < m.cols; j++)
    for (long i = 0; i < m.rows; i++) buf[(size_t)j * m.rows + i] = ld(m.p, m.t, off + (size_t)j * m.ld + i);
  *ld_out = m.rows;
  return buf.data();
}

void sgemm_plain(bool ta, bool tb, long m, long n, long k, float alpha, const float* A, long lda, const float* B, long ldb,
                 float beta, float* C, long ldc) {
#if !defined(SIMT_NO_OPENBLAS)
  cblas_sgemm(CblasColMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k, alpha,
              A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
#else  // plain loops (about 6x slower than OpenBLAS), for machines without it
  for (long j = 0; j < n; j++)
    for (long i = 0; i < m; i++) {
      float s = 0.f;
      for (long p = 0; p < k; p++) s += (ta ? A[i * lda + p] : A[p * lda + i]) * (tb ? B[p * ldb + j] : B[j * ldb + p]);
      C[j * ldc + i] = alpha * s + (beta != 0.f ? beta * C[j * ldc + i] : 0.f);
    }
#endif
}

enum Order { ORDER_PLAIN, ORDER_SPLITK, ORDER_REVERSE };
const int kSlices = 3;
size_t splitk_bytes(long m, long n) { return (size_t)kSlices * m * n * sizeof(float); }
// C = alpha op(A) op(B) + beta C with the summation order `order` (see the top of this file); ws holds
// the split-K partial sums.
void sgemm(int order, float* ws, bool ta, bool tb, long m, long n, long k, float alpha, const float* A, long lda,
           const float* B, long ldb, float beta, float* C, long ldc) {
  if (order == ORDER_PLAIN || k < kSlices) { sgemm_plain(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc); return; }
  auto slice = [&](int i, float b, float* out, long ldo) {  // k range [k*i/3, k*(i+1)/3)
    long k0 = k * i / kSlices, k1 = k * (i + 1) / kSlices;
    sgemm_plain(ta, tb, m, n, k1 - k0, alpha, ta ? A + k0 : A + k0 * lda, lda, tb ? B + k0 * ldb : B + k0, ldb, b, out, ldo);
  };
  if (order == ORDER_REVERSE) {
    for (int i = kSlices - 1; i >= 0; i--) slice(i, i == kSlices - 1 ? beta : 1.f, C, ldc);
    return;
  }
  for (int i = 0; i < kSlices; i++) slice(i, 0.f, ws + (size_t)i * m * n, m);
  for (long j = 0; j < n; j++)
    for (long i = 0; i < m; i++) {
      size_t x = (size_t)j * m + i, mn = (size_t)m * n;
      float v = (ws[x + 2 * mn] + ws[x + mn]) + ws[x];
      C[j * ldc + i] = beta != 0.f ? v + beta * C[j * ldc + i] : v;  // beta == 0: C is not read
    }
}

enum Epi { E_BIAS = 1, E_GELU = 2, E_AUX = 4, E_DGELU = 8, E_BGRADA = 16, E_BGRADB = 32, E_BGRAD_D = 64 };
struct Epilogue {
  int flags = 0;
  const void* bias = nullptr; cudaDataType bias_t = CUDA_R_32F; long long bias_stride = 0;  // BIAS input or BGRAD output
  void* aux = nullptr; cudaDataType aux_t = CUDA_R_32F; long aux_ld = 0; long long aux_stride = 0;
};

// D = epilogue(alpha * op(A) op(B) + beta * C), column-major, for each batch.
// The bytes a stored operand spans (gaps between strided batches included).
size_t mat_bytes(const Mat& m, int batch) {
  if (m.rows == 0 || m.cols == 0) return 0;
  return (size_t)((batch - 1) * m.stride + (m.cols - 1) * m.ld + m.rows) * type_size(m.t);
}
cublasStatus_t gemm(const char* api, cudaStream_t stream, bool ta, bool tb, long m, long n, long k, float alpha, const Mat& A,
                    const Mat& B, float beta, const Mat& C, const Mat& D, int batch, const Epilogue& e,
                    int order = ORDER_PLAIN, float* ws = nullptr) {
  if (m < 0 || n < 0 || k < 0 || batch < 0) { simt::report_error("cublas-shape", "%s: negative size", api); return CUBLAS_STATUS_INVALID_VALUE; }
  if (m == 0 || n == 0 || batch == 0) return CUBLAS_STATUS_SUCCESS;
  if (!check_mat(api, "A", A, batch) || !check_mat(api, "B", B, batch) || !check_mat(api, "D", D, batch) ||
      (beta != 0.f && !check_mat(api, "C", C, batch)))
    return CUBLAS_STATUS_INVALID_VALUE;
  if (e.flags & (E_BIAS | E_BGRADA | E_BGRADB | E_BGRAD_D)) {
    long len = (e.flags & E_BGRADB) ? n : m;
    Mat bm{e.bias, e.bias_t, len, 1, len, e.bias_stride};
    if (!check_mat(api, "bias", bm, (e.flags & E_BIAS) ? batch : 1)) return CUBLAS_STATUS_INVALID_VALUE;
  }
  if (e.flags & (E_AUX | E_DGELU)) {
    Mat am{e.aux, e.aux_t, m, n, e.aux_ld, e.aux_stride};
    if (!check_mat(api, "epilogue aux", am, batch)) return CUBLAS_STATUS_INVALID_VALUE;
  }
  {  // the operands, for the stream-race rule: C is read only with beta != 0
    simt::MemAccess acc[7];
    int na = 0;
    acc[na++] = {A.p, mat_bytes(A, batch), false};
    acc[na++] = {B.p, mat_bytes(B, batch), false};
    if (beta != 0.f) acc[na++] = {C.p, mat_bytes(C, batch), false};
    acc[na++] = {D.p, mat_bytes(D, batch), true};
    if (e.flags & (E_BIAS | E_BGRADA | E_BGRADB | E_BGRAD_D)) {
      long len = (e.flags & E_BGRADB) ? n : m;
      bool out = !(e.flags & E_BIAS);
      acc[na++] = {e.bias, mat_bytes(Mat{e.bias, e.bias_t, len, 1, len, e.bias_stride}, out ? 1 : batch), out};
    }
    if (e.flags & (E_AUX | E_DGELU))
      acc[na++] = {e.aux, mat_bytes(Mat{e.aux, e.aux_t, m, n, e.aux_ld, e.aux_stride}, batch), (e.flags & E_AUX) != 0};
    if (order == ORDER_SPLITK) acc[na++] = {ws, splitk_bytes(m, n), true};
    simt::stream_op((const void*)stream, simt::SO_BLAS, api, acc, na);
  }
  std::lock_guard<std::mutex> lk(g_blas_mu);
  std::vector<float> abuf, bbuf, acc;
  for (int bi = 0; bi < batch; bi++) {
    long lda, ldb;
    const float* a = widen(A, bi * A.stride, abuf, &lda);
    const float* b = widen(B, bi * B.stride, bbuf, &ldb);
    float* out; long ldo;
    bool direct = D.t == CUDA_R_32F && e.flags == 0 && (beta == 0.f || (C.p == D.p && C.ld == D.ld && C.t == D.t));
    if (direct) { out = (float*)D.p + bi * D.stride; ldo = D.ld; }  // fast path: straight into D
    else { acc.assign((size_t)m * n, 0.f); out = acc.data(); ldo = m; }
    sgemm(order, ws, ta, tb, m, n, k, alpha, a, lda, b, ldb, direct ? beta : 0.f, out, ldo);
    if (direct) continue;
    for (long j = 0; j < n; j++)
      for (long i = 0; i < m; i++) {
        float v = acc[(size_t)j * m + i];
        if (beta != 0.f) v += beta * ld(C.p, C.t, bi * C.stride + (size_t)j * C.ld + i);  // beta == 0: C is not read
        if (e.flags & E_BIAS) v += ld(e.bias, e.bias_t, bi * e.bias_stride + i);
        if (e.flags & E_AUX) st(e.aux, e.aux_t, bi * e.aux_stride + (size_t)j * e.aux_ld + i, v);  // pre-GELU input
        if (e.flags & E_GELU) v = gelu(v);
        if (e.flags & E_DGELU) v = rounded_to(D.t, v) * dgelu(ld(e.aux, e.aux_t, bi * e.aux_stride + (size_t)j * e.aux_ld + i));
        st((void*)D.p, D.t, bi * D.stride + (size_t)j * D.ld + i, v);
        acc[(size_t)j * m + i] = v;
      }
    // Bias gradients are sums in fp32 (then rounded once); batch 0 only, as cuBLASLt supports.
    if (bi == 0 && (e.flags & (E_BGRADA | E_BGRADB | E_BGRAD_D))) {
      long len = (e.flags & E_BGRADB) ? n : m;
      for (long x = 0; x < len; x++) {
        float s = 0.f;
        if (e.flags & E_BGRAD_D) for (long j = 0; j < n; j++) s += acc[(size_t)j * m + x];  // rows of D
        else if (e.flags & E_BGRADA) for (long p = 0; p < k; p++) s += ta ? a[x * lda + p] : a[p * lda + x];  // op(A) row x
        else for (long p = 0; p < k; p++) s += tb ? b[p * ldb + x] : b[x * ldb + p];  // op(B) column x
        st((void*)e.bias, e.bias_t, x, s);
      }
    }
  }
  return CUBLAS_STATUS_SUCCESS;
}

struct Handle { uint32_t magic; cudaStream_t stream; cublasPointerMode_t pmode; int dev; simt::Site created; };
const uint32_t kHandleMagic = 0x424c4153;
Handle* new_handle() { return new Handle{kHandleMagic, 0, CUBLAS_POINTER_MODE_HOST, simt::current_device(), simt::capture_site()}; }
bool handle_ok(const void* h, const char* api) {
  if (h && ((const Handle*)h)->magic == kHandleMagic) return true;
  simt::report_error("cublas-handle", "%s: handle %p was not created by cublasCreate/cublasLtCreate (or was destroyed)", api, h);
  return false;
}
// A handle works on the device that was current when it was created, with a stream of that device.
bool handle_device_ok(const void* hp, cudaStream_t stream, const char* api) {
  const Handle* h = (const Handle*)hp;
  int dev = simt::current_device(), sdev = simt::stream_device(stream);
  if (h->dev != dev) {
    simt::report_at_caller("wrong-device", "%s: handle created on device %d (at %s) is used while device %d is current; a "
                           "cuBLAS/cuBLASLt handle and its workspace belong to the device current at their creation: create "
                           "them per device, after cudaSetDevice", api, h->dev, simt::site_str(h->created).c_str(), dev);
    return false;
  }
  if (sdev != h->dev) {
    simt::report_at_caller("wrong-device", "%s: stream %p belongs to device %d, the handle to device %d", api, (void*)stream, sdev, h->dev);
    return false;
  }
  return true;
}
// alpha/beta for a fp32-scaled GEMM (host or device pointer: both are readable here).
bool scale_ok(const char* api, cublasComputeType_t ct) {
  switch (ct) {
    case CUBLAS_COMPUTE_32F: case CUBLAS_COMPUTE_32F_PEDANTIC: case CUBLAS_COMPUTE_32F_FAST_16F:
    case CUBLAS_COMPUTE_32F_FAST_16BF: case CUBLAS_COMPUTE_32F_FAST_TF32: return true;
    default: simt::report_error("cublas-compute", "%s: compute type %d not supported (fp32 compute only)", api, (int)ct); return false;
  }
}
}  // namespace

extern "C" {
cublasStatus_t cublasCreate_v2(cublasHandle_t* h) { *h = (cublasHandle_t)new_handle(); return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasDestroy_v2(cublasHandle_t h) {
  if (!handle_ok(h, "cublasDestroy")) return CUBLAS_STATUS_NOT_INITIALIZED;
  ((Handle*)h)->magic = 0; delete (Handle*)h; return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream_v2(cublasHandle_t h, cudaStream_t s) {
  if (!handle_ok(h, "cublasSetStream")) return CUBLAS_STATUS_NOT_INITIALIZED;
  ((Handle*)h)->stream = s; return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGetStream_v2(cublasHandle_t h, cudaStream_t* s) {
  if (!handle_ok(h, "cublasGetStream")) return CUBLAS_STATUS_NOT_INITIALIZED;
  *s = ((Handle*)h)->stream; return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t) { return handle_ok(h, "cublasSetMathMode") ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED; }
cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t h, void*, size_t) { return handle_ok(h, "cublasSetWorkspace") ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED; }
cublasStatus_t cublasSetPointerMode_v2(cublasHandle_t h, cublasPointerMode_t m) {
  if (!handle_ok(h, "cublasSetPointerMode")) return CUBLAS_STATUS_NOT_INITIALIZED;
  ((Handle*)h)->pmode = m; return CUBLAS_STATUS_SUCCESS;
}
const char* cublasGetStatusString(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
    case CUBLAS_STATUS_INVALID_VALUE: return "an invalid value was used as an argument";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported (SIMT cuBLAS subset)";
    default: return "cuBLAS error (SIMT cuBLAS subset)";
  }
}
const char* cublasGetStatusName(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "CUBLAS_STATUS_UNKNOWN";
  }
}

static cublasStatus_t gemm_api(const char* api, cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                               int n, int k, const float* alpha, const void* A, cudaDataType at, int lda, long long sA,
                               const void* B, cudaDataType bt, int ldb, long long sB, const float* beta, void* C,
                               cudaDataType ct, int ldc, long long sC, int batch) {
  if (!handle_ok(h, api)) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!handle_device_ok(h, ((Handle*)h)->stream, api)) return CUBLAS_STATUS_EXECUTION_FAILED;
  if (ta == CUBLAS_OP_C || tb == CUBLAS_OP_C || ta == CUBLAS_OP_CONJG || tb == CUBLAS_OP_CONJG) {
    ta = ta == CUBLAS_OP_N ? CUBLAS_OP_N : CUBLAS_OP_T;  // real types: conjugate transpose = transpose
    tb = tb == CUBLAS_OP_N ? CUBLAS_OP_N : CUBLAS_OP_T;
  }
  bool a_t = ta != CUBLAS_OP_N, b_t = tb != CUBLAS_OP_N;
  Mat MA{A, at, a_t ? k : m, a_t ? m : k, lda, sA}, MB{B, bt, b_t ? n : k, b_t ? k : n, ldb, sB};
  Mat MC{C, ct, m, n, ldc, sC};
  return gemm(api, ((Handle*)h)->stream, a_t, b_t, m, n, k, *alpha, MA, MB, *beta, MC, MC, batch, Epilogue{});
}
cublasStatus_t cublasSgemm_v2(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                              const float* alpha, const float* A, int lda, const float* B, int ldb, const float* beta,
                              float* C, int ldc) {
  return gemm_api("cublasSgemm", h, ta, tb, m, n, k, alpha, A, CUDA_R_32F, lda, 0, B, CUDA_R_32F, ldb, 0, beta, C,
                  CUDA_R_32F, ldc, 0, 1);
}
cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                         int k, const float* alpha, const float* A, int lda, long long sA,
                                         const float* B, int ldb, long long sB, const float* beta, float* C, int ldc,
                                         long long sC, int batch) {
  return gemm_api("cublasSgemmStridedBatched", h, ta, tb, m, n, k, alpha, A, CUDA_R_32F, lda, sA, B, CUDA_R_32F, ldb,
                  sB, beta, C, CUDA_R_32F, ldc, sC, batch);
}
cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                          int k, const void* alpha, const void* A, cudaDataType at, int lda,
                                          long long sA, const void* B, cudaDataType bt, int ldb, long long sB,
                                          const void* beta, void* C, cudaDataType ct, int ldc, long long sC, int batch,
                                          cublasComputeType_t cp, cublasGemmAlgo_t) {
  if (!scale_ok("cublasGemmStridedBatchedEx", cp)) return CUBLAS_STATUS_NOT_SUPPORTED;
  return gemm_api("cublasGemmStridedBatchedEx", h, ta, tb, m, n, k, (const float*)alpha, A, at, lda, sA, B, bt, ldb, sB,
                  (const float*)beta, C, ct, ldc, sC, batch);
}
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void* alpha, const void* A, cudaDataType at, int lda, const void* B, cudaDataType bt,
                            int ldb, const void* beta, void* C, cudaDataType ct, int ldc, cublasComputeType_t cp,
                            cublasGemmAlgo_t) {
  if (!scale_ok("cublasGemmEx", cp)) return CUBLAS_STATUS_NOT_SUPPORTED;
  return gemm_api("cublasGemmEx", h, ta, tb, m, n, k, (const float*)alpha, A, at, lda, 0, B, bt, ldb, 0,
                  (const float*)beta, C, ct, ldc, 0, 1);
}

// ---- cuBLASLt. Our state lives inside the header's fixed-size opaque structs.
struct LtDesc {
  uint32_t magic; int32_t ta, tb, epilogue, compute, scale_t, bias_t, aux_t, aux_t_set, bias_t_set;
  const void* bias; void* aux; int64_t aux_ld, aux_stride, bias_stride;
};
struct LtLayout { uint32_t magic; int32_t type; uint64_t rows, cols; int64_t ld; int32_t batch; int64_t stride; };
static_assert(sizeof(LtDesc) <= sizeof(cublasLtMatmulDescOpaque_t), "LtDesc too big");
static_assert(sizeof(LtLayout) <= sizeof(cublasLtMatrixLayoutOpaque_t), "LtLayout too big");
static const uint32_t kDescMagic = 0x4c54444d, kLayoutMagic = 0x4c544c59;

cublasStatus_t cublasLtCreate(cublasLtHandle_t* h) { *h = (cublasLtHandle_t)new_handle(); return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) {
  if (!handle_ok(h, "cublasLtDestroy")) return CUBLAS_STATUS_NOT_INITIALIZED;
  ((Handle*)h)->magic = 0; delete (Handle*)h; return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* d, cublasComputeType_t ct, cudaDataType_t scale) {
  *d = new cublasLtMatmulDescOpaque_t();
  LtDesc* x = (LtDesc*)*d;
  x->magic = kDescMagic; x->ta = x->tb = CUBLAS_OP_N; x->epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  x->compute = ct; x->scale_t = scale;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) { delete d; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a, const void* buf, size_t n) {
  LtDesc* x = (LtDesc*)d;
  if (!x || x->magic != kDescMagic) { simt::report_error("cublas-handle", "cublasLtMatmulDescSetAttribute: bad descriptor"); return CUBLAS_STATUS_INVALID_VALUE; }
  auto get = [&](void* dst, size_t want) { if (n != want) return false; memcpy(dst, buf, want); return true; };
  bool ok = true;
  switch (a) {
    case CUBLASLT_MATMUL_DESC_TRANSA: ok = get(&x->ta, 4); break;
    case CUBLASLT_MATMUL_DESC_TRANSB: ok = get(&x->tb, 4); break;
    case CUBLASLT_MATMUL_DESC_EPILOGUE: ok = get(&x->epilogue, 4); break;
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: ok = get(&x->bias, sizeof(void*)); break;
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: ok = get(&x->bias_t, 4); x->bias_t_set = 1; break;
    case CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE: ok = get(&x->bias_stride, 8); break;
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER: ok = get(&x->aux, sizeof(void*)); break;
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD: ok = get(&x->aux_ld, 8); break;
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_BATCH_STRIDE: ok = get(&x->aux_stride, 8); break;
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_DATA_TYPE: ok = get(&x->aux_t, 4); x->aux_t_set = 1; break;
    case CUBLASLT_MATMUL_DESC_COMPUTE_TYPE: ok = get(&x->compute, 4); break;
    case CUBLASLT_MATMUL_DESC_SCALE_TYPE: ok = get(&x->scale_t, 4); break;
    case CUBLASLT_MATMUL_DESC_POINTER_MODE: { int32_t m; ok = get(&m, 4); if (ok && m != CUBLASLT_POINTER_MODE_HOST && m != CUBLASLT_POINTER_MODE_DEVICE) goto unsupported; break; }
    case CUBLASLT_MATMUL_DESC_FAST_ACCUM: case CUBLASLT_MATMUL_DESC_SM_COUNT_TARGET: break;  // performance hints
    default:
    unsupported:
      simt::report_error("cublas-unsupported", "cublasLtMatmulDescSetAttribute: attribute %d is not supported by the SIMT subset", (int)a);
      return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  if (!ok) { simt::report_error("cublas-attr", "cublasLtMatmulDescSetAttribute: attribute %d with wrong size %zu", (int)a, n); return CUBLAS_STATUS_INVALID_VALUE; }
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* l, cudaDataType t, uint64_t rows, uint64_t cols, int64_t ld) {
  *l = new cublasLtMatrixLayoutOpaque_t();
  *(LtLayout*)*l = LtLayout{kLayoutMagic, (int32_t)t, rows, cols, ld, 1, 0};
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(const cublasLtMatrixLayout_t l) { delete l; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t a, const void* buf, size_t) {
  LtLayout* x = (LtLayout*)l;
  switch (a) {
    case CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT: memcpy(&x->batch, buf, 4); break;
    case CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET: memcpy(&x->stride, buf, 8); break;
    case CUBLASLT_MATRIX_LAYOUT_TYPE: memcpy(&x->type, buf, 4); break;
    case CUBLASLT_MATRIX_LAYOUT_ROWS: memcpy(&x->rows, buf, 8); break;
    case CUBLASLT_MATRIX_LAYOUT_COLS: memcpy(&x->cols, buf, 8); break;
    case CUBLASLT_MATRIX_LAYOUT_LD: memcpy(&x->ld, buf, 8); break;
    case CUBLASLT_MATRIX_LAYOUT_ORDER: {
      int32_t o; memcpy(&o, buf, 4);
      if (o == CUBLASLT_ORDER_COL) break;
      simt::report_error("cublas-unsupported", "cublasLtMatrixLayoutSetAttribute: only CUBLASLT_ORDER_COL is supported");
      return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    default:
      simt::report_error("cublas-unsupported", "cublasLtMatrixLayoutSetAttribute: attribute %d is not supported", (int)a);
      return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  return CUBLAS_STATUS_SUCCESS;
}
// Preferences and algorithms carry what the reduction order depends on (see the top of this file).
struct LtPref { uint32_t magic; uint32_t align[4]; uint64_t max_ws; };  // align: A, B, C, D
struct LtAlgo { uint32_t magic; int32_t order; uint32_t align[4]; };
static_assert(sizeof(LtPref) <= sizeof(cublasLtMatmulPreferenceOpaque_t), "LtPref too big");
static_assert(sizeof(LtAlgo) <= sizeof(cublasLtMatmulAlgo_t), "LtAlgo too big");
static const uint32_t kPrefMagic = 0x4c545046, kAlgoMagic = 0x4c54414c;
static uint32_t alignment_of(const void* p) {  // the largest power of two <= 256 that divides the address
  uint32_t al = 256;
  while (al > 1 && (uintptr_t)p % al) al /= 2;
  return al;
}
static int choose_order(const uint32_t align[4], const LtLayout* const l[4], long m, long n, long k, uint64_t max_ws) {
  bool aligned = true;
  for (int i = 0; i < 4; i++) aligned &= align[i] >= 256 && (l[i]->ld * (int64_t)type_size((cudaDataType)l[i]->type)) % 16 == 0;
  if (aligned || k < kSlices) return ORDER_PLAIN;
  return max_ws >= splitk_bytes(m, n) ? ORDER_SPLITK : ORDER_REVERSE;
}
static void lt_mnk(const LtDesc& x, const LtLayout* la, const LtLayout* lD, long* m, long* n, long* k) {
  *m = (long)lD->rows; *n = (long)lD->cols; *k = (long)(x.ta != CUBLAS_OP_N ? la->rows : la->cols);
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* p) {
  *p = new cublasLtMatmulPreferenceOpaque_t();
  *(LtPref*)*p = LtPref{kPrefMagic, {256, 256, 256, 256}, 0};  // cuBLASLt assumes 256-byte alignment unless told
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) { delete p; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p, cublasLtMatmulPreferenceAttributes_t a,
                                                    const void* buf, size_t n) {
  LtPref* x = (LtPref*)p;
  switch (a) {
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES: if (n != 8) break; memcpy(&x->max_ws, buf, 8); return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES: case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES: case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES:
      if (n != 4) break;
      memcpy(&x->align[a - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES], buf, 4);
      return CUBLAS_STATUS_SUCCESS;
    default: return CUBLAS_STATUS_SUCCESS;  // search mode and other hints do not change the result here
  }
  simt::report_error("cublas-attr", "cublasLtMatmulPreferenceSetAttribute: attribute %d with wrong size %zu", (int)a, n);
  return CUBLAS_STATUS_INVALID_VALUE;
}
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t cd, cublasLtMatrixLayout_t Ad,
                                              cublasLtMatrixLayout_t Bd, cublasLtMatrixLayout_t Cd, cublasLtMatrixLayout_t Dd,
                                              cublasLtMatmulPreference_t p, int req, cublasLtMatmulHeuristicResult_t* r, int* n) {
  const char* api = "cublasLtMatmulAlgoGetHeuristic";
  if (!handle_ok(h, api)) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (req < 1) return CUBLAS_STATUS_INVALID_VALUE;
  const LtPref* pr = (const LtPref*)p;
  const LtLayout* l[4] = {(const LtLayout*)Ad, (const LtLayout*)Bd, (const LtLayout*)Cd, (const LtLayout*)Dd};
  long m, nn, k;
  lt_mnk(*(const LtDesc*)cd, l[0], l[3], &m, &nn, &k);
  LtAlgo algo{kAlgoMagic, choose_order(pr->align, l, m, nn, k, pr->max_ws), {pr->align[0], pr->align[1], pr->align[2], pr->align[3]}};
  memset(r, 0, sizeof *r);
  memcpy(&r->algo, &algo, sizeof algo);
  r->workspaceSize = algo.order == ORDER_SPLITK ? splitk_bytes(m, nn) : 0;
  r->state = CUBLAS_STATUS_SUCCESS; r->wavesCount = 1.f; *n = 1;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t cd, const void* alpha, const void* A,
                              cublasLtMatrixLayout_t Ad, const void* B, cublasLtMatrixLayout_t Bd, const void* beta,
                              const void* C, cublasLtMatrixLayout_t Cd, void* D, cublasLtMatrixLayout_t Dd,
                              const cublasLtMatmulAlgo_t* algo, void* ws, size_t ws_bytes, cudaStream_t stream) {
  const char* api = "cublasLtMatmul";
  if (!handle_ok(h, api)) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!handle_device_ok(h, stream, api)) return CUBLAS_STATUS_EXECUTION_FAILED;
  int hdev = ((const Handle*)h)->dev, wdev = ws ? simt::device_of(ws) : hdev;
  if (wdev != hdev) {
    simt::report_at_caller("wrong-device", "%s: workspace %p is %s%d, the handle belongs to device %d", api, ws,
                           wdev < 0 ? "not device memory (device " : "memory of device ", wdev, hdev);
    return CUBLAS_STATUS_EXECUTION_FAILED;
  }
  const LtDesc& x = *(const LtDesc*)cd;
  const LtLayout *la = (const LtLayout*)Ad, *lb = (const LtLayout*)Bd, *lc = (const LtLayout*)Cd, *lD = (const LtLayout*)Dd;
  if (x.magic != kDescMagic || !la || !lb || !lc || !lD || la->magic != kLayoutMagic || lb->magic != kLayoutMagic ||
      lc->magic != kLayoutMagic || lD->magic != kLayoutMagic) {
    simt::report_error("cublas-handle", "%s: descriptor or layout not created by the cuBLASLt API", api);
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  if (!scale_ok(api, (cublasComputeType_t)x.compute)) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (x.scale_t != CUDA_R_32F) { simt::report_error("cublas-compute", "%s: scale type must be CUDA_R_32F", api); return CUBLAS_STATUS_NOT_SUPPORTED; }
  bool ta = x.ta != CUBLAS_OP_N, tb = x.tb != CUBLAS_OP_N;
  long m = (long)lD->rows, n = (long)lD->cols, k = (long)(ta ? la->rows : la->cols);
  if ((long)(ta ? la->cols : la->rows) != m || (long)(tb ? lb->rows : lb->cols) != n || (long)(tb ? lb->cols : lb->rows) != k ||
      (long)lc->rows != m || (long)lc->cols != n) {
    simt::report_error("cublas-shape", "%s: shapes do not match: op(A) %ldx%ld, op(B) %ldx%ld, C %lux%lu, D %ldx%ld", api,
                       (long)(ta ? la->cols : la->rows), (long)(ta ? la->rows : la->cols), (long)(tb ? lb->cols : lb->rows),
                       (long)(tb ? lb->rows : lb->cols), (unsigned long)lc->rows, (unsigned long)lc->cols, m, n);
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  int batch = lD->batch;
  if (la->batch != batch || lb->batch != batch || lc->batch != batch) {
    simt::report_error("cublas-shape", "%s: batch counts differ (A %d, B %d, C %d, D %d)", api, la->batch, lb->batch, lc->batch, batch);
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  Epilogue e;
  switch (x.epilogue) {
    case CUBLASLT_EPILOGUE_DEFAULT: break;
    case CUBLASLT_EPILOGUE_BIAS: e.flags = E_BIAS; break;
    case CUBLASLT_EPILOGUE_GELU: e.flags = E_GELU; break;
    case CUBLASLT_EPILOGUE_GELU_BIAS: e.flags = E_GELU | E_BIAS; break;
    case CUBLASLT_EPILOGUE_GELU_AUX: e.flags = E_GELU | E_AUX; break;
    case CUBLASLT_EPILOGUE_GELU_AUX_BIAS: e.flags = E_GELU | E_AUX | E_BIAS; break;
    case CUBLASLT_EPILOGUE_DGELU: e.flags = E_DGELU; break;
    case CUBLASLT_EPILOGUE_DGELU_BGRAD: e.flags = E_DGELU | E_BGRAD_D; break;
    case CUBLASLT_EPILOGUE_BGRADA: e.flags = E_BGRADA; break;
    case CUBLASLT_EPILOGUE_BGRADB: e.flags = E_BGRADB; break;
    default:
      simt::report_error("cublas-unsupported", "%s: epilogue %d is not supported by the SIMT subset", api, x.epilogue);
      return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  if ((e.flags & (E_BIAS | E_BGRADA | E_BGRADB | E_BGRAD_D)) && !x.bias) {
    simt::report_error("cublas-epilogue", "%s: epilogue %d needs CUBLASLT_MATMUL_DESC_BIAS_POINTER", api, x.epilogue);
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  if ((e.flags & (E_AUX | E_DGELU)) && (!x.aux || x.aux_ld < m)) {
    simt::report_error("cublas-epilogue", "%s: epilogue %d needs EPILOGUE_AUX_POINTER and EPILOGUE_AUX_LD >= %ld", api, x.epilogue, m);
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  if (batch > 1 && (e.flags & (E_BGRADA | E_BGRADB | E_BGRAD_D))) {
    simt::report_error("cublas-unsupported", "%s: bias-gradient epilogues with batch > 1 are not supported", api);
    return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  e.bias = x.bias; e.bias_stride = x.bias_stride;
  // Defaults as cuBLASLt documents them: bias and aux take D's type unless set.
  e.bias_t = x.bias_t_set ? (cudaDataType)x.bias_t : (cudaDataType)lD->type;
  e.aux = x.aux; e.aux_ld = x.aux_ld; e.aux_stride = x.aux_stride;
  e.aux_t = x.aux_t_set ? (cudaDataType)x.aux_t : (cudaDataType)lD->type;
  Mat MA{A, (cudaDataType)la->type, (long)la->rows, (long)la->cols, la->ld, la->stride};
  Mat MB{B, (cudaDataType)lb->type, (long)lb->rows, (long)lb->cols, lb->ld, lb->stride};
  Mat MC{C, (cudaDataType)lc->type, m, n, lc->ld, lc->stride};
  Mat MD{D, (cudaDataType)lD->type, m, n, lD->ld, lD->stride};
  // The reduction order: the algorithm's, if the heuristic chose one, else from the actual pointers.
  const LtLayout* l[4] = {la, lb, lc, lD};
  const void* ptr[4] = {A, B, C, D};
  uint32_t actual[4];
  for (int i = 0; i < 4; i++) actual[i] = alignment_of(ptr[i]);
  int order;
  LtAlgo al;
  if (algo) memcpy(&al, algo, sizeof al);
  if (algo && al.magic == kAlgoMagic) {
    order = al.order;
    for (int i = 0; i < 4; i++)
      if (actual[i] < al.align[i]) {
        simt::report_at_caller("cublas-alignment", "%s: the algorithm was chosen for %u-byte aligned %c, but %c = %p is only "
                               "%u-byte aligned (pass the real alignment in CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_%c_BYTES)",
                               api, al.align[i], "ABCD"[i], "ABCD"[i], ptr[i], actual[i], "ABCD"[i]);
        return CUBLAS_STATUS_INVALID_VALUE;
      }
  } else {
    order = choose_order(actual, l, m, n, k, ws_bytes);
  }
  if (order == ORDER_SPLITK && (!ws || ws_bytes < splitk_bytes(m, n) || !simt::device_range_ok(ws, splitk_bytes(m, n)))) {
    simt::report_at_caller("cublas-workspace", "%s: the algorithm (split-K) needs %zu bytes of workspace, but got %p with %zu bytes%s",
                           api, splitk_bytes(m, n), ws, ws_bytes, ws && ws_bytes >= splitk_bytes(m, n) ? ", more than its allocation holds" : "");
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  return gemm(api, stream, ta, tb, m, n, k, *(const float*)alpha, MA, MB, *(const float*)beta, MC, MD, batch, e, order,
              (float*)ws);
}
}  // extern "C"
