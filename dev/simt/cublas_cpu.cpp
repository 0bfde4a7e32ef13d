// cublas_cpu.cpp -- the cuBLAS / cuBLASLt subset a GPT-2 trainer uses, on the CPU, for sim mode.
// Compiled against the REAL cublas_v2.h / cublasLt.h (so the compiler checks every signature)
// and linked instead of -lcublas -lcublasLt. Inputs fp32, bf16 or fp16 are widened to fp32 and
// multiplied by OpenBLAS sgemm (fp32 accumulation, like CUBLAS_COMPUTE_32F; the summation order
// differs, so compare with tolerances). Epilogues: DEFAULT, BIAS, GELU, GELU_BIAS, GELU_AUX,
// GELU_AUX_BIAS, DGELU, DGELU_BGRAD, BGRADA, BGRADB; GELU is the tanh approximation.
// Anything else returns CUBLAS_STATUS_NOT_SUPPORTED with a report, never a silent wrong answer.
// Every matrix must lie inside one cudaMalloc'd allocation (on a GPU: an illegal address).
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

void sgemm(bool ta, bool tb, long m, long n, long k, float alpha, const float* A, long lda, const float* B, long ldb,
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

enum Epi { E_BIAS = 1, E_GELU = 2, E_AUX = 4, E_DGELU = 8, E_BGRADA = 16, E_BGRADB = 32, E_BGRAD_D = 64 };
struct Epilogue {
  int flags = 0;
  const void* bias = nullptr; cudaDataType bias_t = CUDA_R_32F; long long bias_stride = 0;  // BIAS input or BGRAD output
  void* aux = nullptr; cudaDataType aux_t = CUDA_R_32F; long aux_ld = 0; long long aux_stride = 0;
};

// D = epilogue(alpha * op(A) op(B) + beta * C), column-major, for each batch.
cublasStatus_t gemm(const char* api, bool ta, bool tb, long m, long n, long k, float alpha, const Mat& A, const Mat& B,
                    float beta, const Mat& C, const Mat& D, int batch, const Epilogue& e) {
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
    sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, direct ? beta : 0.f, out, ldo);
    if (direct) continue;
    for (long j = 0; j < n; j++)
      for (long i = 0; i < m; i++) {
        float v = acc[(size_t)j * m + i];
        if (beta != 0.f) v += beta * ld(C.p, C.t, bi * C.stride + (size_t)j * C.ld + i);  // beta == 0: C is not read
        if (e.flags & E_BIAS) v += ld(e.bias, e.bias_t, bi * e.bias_stride + i);
        if (e.flags & E_AUX) st(e.aux, e.aux_t, bi * e.aux_stride + (size_t)j * e.aux_ld + i, v);  // pre-GELU input
        if (e.flags & E_GELU) v = gelu(v);
        if (e.flags & E_DGELU) v *= dgelu(ld(e.aux, e.aux_t, bi * e.aux_stride + (size_t)j * e.aux_ld + i));
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

struct Handle { uint32_t magic; cudaStream_t stream; cublasPointerMode_t pmode; };
const uint32_t kHandleMagic = 0x424c4153;
bool handle_ok(const void* h, const char* api) {
  if (h && ((const Handle*)h)->magic == kHandleMagic) return true;
  simt::report_error("cublas-handle", "%s: handle %p was not created by cublasCreate/cublasLtCreate (or was destroyed)", api, h);
  return false;
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
cublasStatus_t cublasCreate_v2(cublasHandle_t* h) { *h = (cublasHandle_t) new Handle{kHandleMagic, 0, CUBLAS_POINTER_MODE_HOST}; return CUBLAS_STATUS_SUCCESS; }
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
  if (ta == CUBLAS_OP_C || tb == CUBLAS_OP_C || ta == CUBLAS_OP_CONJG || tb == CUBLAS_OP_CONJG) {
    ta = ta == CUBLAS_OP_N ? CUBLAS_OP_N : CUBLAS_OP_T;  // real types: conjugate transpose = transpose
    tb = tb == CUBLAS_OP_N ? CUBLAS_OP_N : CUBLAS_OP_T;
  }
  bool a_t = ta != CUBLAS_OP_N, b_t = tb != CUBLAS_OP_N;
  Mat MA{A, at, a_t ? k : m, a_t ? m : k, lda, sA}, MB{B, bt, b_t ? n : k, b_t ? k : n, ldb, sB};
  Mat MC{C, ct, m, n, ldc, sC};
  return gemm(api, a_t, b_t, m, n, k, *alpha, MA, MB, *beta, MC, MC, batch, Epilogue{});
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

cublasStatus_t cublasLtCreate(cublasLtHandle_t* h) { *h = (cublasLtHandle_t) new Handle{kHandleMagic, 0, CUBLAS_POINTER_MODE_HOST}; return CUBLAS_STATUS_SUCCESS; }
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
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* p) { *p = new cublasLtMatmulPreferenceOpaque_t(); return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) { delete p; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t, cublasLtMatmulPreferenceAttributes_t, const void*, size_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t, cublasLtMatrixLayout_t,
                                              cublasLtMatrixLayout_t, cublasLtMatrixLayout_t, cublasLtMatrixLayout_t,
                                              cublasLtMatmulPreference_t, int req, cublasLtMatmulHeuristicResult_t* r, int* n) {
  if (!handle_ok(h, "cublasLtMatmulAlgoGetHeuristic")) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (req < 1) return CUBLAS_STATUS_INVALID_VALUE;
  memset(r, 0, sizeof *r); r->state = CUBLAS_STATUS_SUCCESS; r->wavesCount = 1.f; *n = 1;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t cd, const void* alpha, const void* A,
                              cublasLtMatrixLayout_t Ad, const void* B, cublasLtMatrixLayout_t Bd, const void* beta,
                              const void* C, cublasLtMatrixLayout_t Cd, void* D, cublasLtMatrixLayout_t Dd,
                              const cublasLtMatmulAlgo_t*, void*, size_t, cudaStream_t) {
  const char* api = "cublasLtMatmul";
  if (!handle_ok(h, api)) return CUBLAS_STATUS_NOT_INITIALIZED;
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
  return gemm(api, ta, tb, m, n, k, *(const float*)alpha, MA, MB, *(const float*)beta, MC, MD, batch, e);
}
}  // extern "C"
