// cublas_common.h -- the cuBLASLt handle and workspace of the calling host thread, and the cuBLAS type of floatX.
//
//   void cublas_init(void);      create this thread's cublaslt_handle and a CUBLASLT_WORKSPACE_SIZE (32 MiB)
//                                workspace on its current device. Call it on every host thread that runs
//                                matmuls, after cudaSetDevice and before the first matmul/attention call.
//   void cublas_destroy(void);   free both (safe to call twice)
//   Both are thread_local: a handle and a workspace belong to one device, and a workspace to one stream at a
//   time, so each rank thread (one GPU each, or one stream each on a shared GPU) has its own.
//   CUBLAS_LOWP                  cudaDataType of floatX: CUDA_R_32F / CUDA_R_16BF / CUDA_R_16F
//   cublas_compute               CUBLAS_COMPUTE_32F in every precision: fp32 accumulation, and in the FP32
//                                build no TF32 (set it to CUBLAS_COMPUTE_32F_FAST_TF32 before the first
//                                matmul to trade accuracy for speed there)
//   const char* cublas_status_name(int status)
//   CublasLtPlan, cublaslt_plans       what matmul.cuh caches per distinct cuBLASLt call (its descriptor, layouts
//                                and algorithm), per host thread; cublas_destroy destroys them
//
// Determinism: cuBLASLt returns bitwise-identical results run to run for the same problem, algorithm and
// GPU (its split-K reductions are ordered: "counters that guarantee determinism"). The algorithm is chosen
// by cublasLtMatmulAlgoGetHeuristic, which may differ between GPU models or library versions, so results are
// reproducible on one machine type, not across them.
#pragma once
#include <cublas_v2.h>
#include <cublasLt.h>
#include "cuda_common.h"

#if defined(ENABLE_FP32)
#define CUBLAS_LOWP CUDA_R_32F
#elif defined(ENABLE_FP16)
#define CUBLAS_LOWP CUDA_R_16F
#else
#define CUBLAS_LOWP CUDA_R_16BF
#endif

#define CUBLASLT_WORKSPACE_SIZE ((size_t)32 * 1024 * 1024)

inline thread_local cublasLtHandle_t cublaslt_handle = NULL;
inline thread_local void* cublaslt_workspace = NULL;
inline cublasComputeType_t cublas_compute = CUBLAS_COMPUTE_32F;

inline const char* cublas_status_name(int status) {
    switch (status) {
        case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
        case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
        case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
        case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
        case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
        case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
        case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
        case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
        case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
        case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
        default: return "unknown cuBLAS status";
    }
}

// like cublasCheck, but with the status's name
inline void cublas_check_named_(int status, const char* file, int line) {
    if (status != CUBLAS_STATUS_SUCCESS) {
        fatal("cuBLAS error at %s:%d: %s (%d)", file, line, cublas_status_name(status), status);
    }
}
#undef cublasCheck
#define cublasCheck(status) (cublas_check_named_((int)(status), __FILE__, __LINE__))

// A cuBLASLt call's plan: the descriptor, the four layouts and the heuristic's algorithm, built once for every
// distinct key (matmul.cuh's matmul_plan_key: everything the descriptor, the layouts and the heuristic's choice
// depend on) and reused, so that a training step creates no descriptor and asks no heuristic. A fixed table per
// host thread (a handle's plans belong to its thread); a call whose key finds the table full builds a plan for
// itself and destroys it after (sampling's growing sequence lengths, not the training step's shapes, which come
// first). All fields are long long so that keys compare with memcmp (no padding).
#define CUBLASLT_PLAN_CACHE 64
typedef struct {
    long long m, n, k, batch, strideA, strideB, strideD;
    long long transA, transB, d_type, epilogue, compute, has_bias, has_aux;
    long long align_a, align_b, align_d;  // what the heuristic is told (matmul.cuh's pointer_alignment)
} CublasLtPlanKey;

typedef struct {
    CublasLtPlanKey key;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t layout[4];  // A, B, C, D
    cublasLtMatmulAlgo_t algo;
} CublasLtPlan;

inline thread_local CublasLtPlan cublaslt_plans[CUBLASLT_PLAN_CACHE];
inline thread_local int cublaslt_num_plans = 0;
inline thread_local long long cublaslt_plans_built = 0;  // every plan built on this thread (cached or not)

inline void cublaslt_plan_destroy(CublasLtPlan* p) {
    for (int i = 0; i < 4; i++) { cublasCheck(cublasLtMatrixLayoutDestroy(p->layout[i])); }
    cublasCheck(cublasLtMatmulDescDestroy(p->desc));
}

inline void cublas_init(void) {
    if (cublaslt_handle) { return; }
    cublasCheck(cublasLtCreate(&cublaslt_handle));
    cudaCheck(cudaMalloc(&cublaslt_workspace, CUBLASLT_WORKSPACE_SIZE));
}

inline void cublas_destroy(void) {
    for (int i = 0; i < cublaslt_num_plans; i++) { cublaslt_plan_destroy(&cublaslt_plans[i]); }
    cublaslt_num_plans = 0;
    if (cublaslt_workspace) { cudaCheck(cudaFree(cublaslt_workspace)); }
    if (cublaslt_handle) { cublasCheck(cublasLtDestroy(cublaslt_handle)); }
    cublaslt_workspace = NULL;
    cublaslt_handle = NULL;
}
