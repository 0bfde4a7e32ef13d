// matmul.cuh -- the linear layers through cuBLASLt (fp32 accumulation), and the bias gradient.
// Needs cublas_init() (cublas_common.h) on the calling host thread before the first call.
//
// void matmul_forward(floatX* out, const floatX* inp, const floatX* weight, const floatX* bias,
//                     int N, int C, int OC, floatX* pre_gelu, cudaStream_t stream);
//     out (N,OC) = inp (N,C) @ weight (OC,C)^T + bias (OC)          bias may be NULL
//     pre_gelu != NULL: pre_gelu (N,OC) = inp @ weight^T + bias and out = gelu(pre_gelu) (tanh GELU), fused
//     into the GEMM (CUBLASLT_EPILOGUE_GELU_AUX[_BIAS]); OC must then be a multiple of 8 (cuBLASLt's rule
//     for the aux leading dimension). Each output is rounded once to floatX; with pre_gelu the GELU is applied
//     by cuBLASLt to the fp32 accumulator (not to the rounded pre_gelu). out must not alias the inputs.
//
// void matmul_backward(floatX* dinp, float* dweight, float* dbias, float* scratch, const floatX* dout,
//                      const floatX* inp, const floatX* weight, int N, int C, int OC,
//                      const floatX* pre_gelu, cudaStream_t stream);
//     dinp (N,C) = dout (N,OC) @ weight (OC,C)                        (overwritten; NULL: skipped)
//         pre_gelu != NULL: dinp = (dout @ weight) * gelu'(pre_gelu), pre_gelu (N,C) being the pre-activation
//         that produced this layer's input (CUBLASLT_EPILOGUE_DGELU). So the MLP's fc-proj backward, given
//         pre_gelu = fch, yields d(fch) directly and gelu_backward is not needed; or pass NULL and call
//         gelu_backward (gelu.cuh) afterwards. C must then be a multiple of 8.
//     dweight (OC,C) += dout^T @ inp                                  (fp32, beta = 1; NULL: skipped)
//     dbias (OC) += column sums of dout                               (fp32; NULL: skipped)
//     scratch: fp32, at least MATMUL_BACKWARD_SCRATCH_FLOATS(OC) = 32*OC floats when dbias != NULL (else unused,
//     may be NULL). dinp must not alias dout, inp, weight or pre_gelu.
//     The bias gradient is our own kernel (deterministic, no atomics): the N rows are cut into
//     S = min(32, ceil(N/256)) slices; block (32-column tile, slice) sums its rows (8 row groups in row order,
//     then the groups in order) into scratch[slice], and a second kernel adds the S partials in slice order
//     into dbias.
//
// void matmul_cublaslt(void* d, cudaDataType d_type, const floatX* a, const floatX* b, const floatX* bias,
//                      int m, int n, int k, bool transA, bool transB, int batch, long long strideA,
//                      long long strideB, long long strideD, float alpha, float beta,
//                      cublasLtEpilogue_t epilogue, const floatX* aux, cudaStream_t stream);
//     The general entry point, in cuBLAS's COLUMN-MAJOR terms: D (m,n) = alpha * op(A) op(B) + beta * D, with
//     A stored (transA ? k x m : m x k), B stored (transB ? n x k : k x n), packed (lda = rows as stored),
//     D (m,n) of type d_type (CUBLAS_LOWP or CUDA_R_32F), ldd = m. batch > 1: strided batched with the given
//     element strides. epilogue: CUBLASLT_EPILOGUE_DEFAULT/_BIAS (bias of length m, floatX), _GELU_AUX[_BIAS]
//     (aux (m,n) floatX receives the pre-GELU values) or _DGELU (aux holds them). Pointer alignments are
//     passed to the heuristic, so any element offset of A, B and D works; the bias and aux pointers are not
//     described to it, so keep them 16-byte aligned (true for offsets that are multiples of 8 elements from
//     a cudaMalloc'd base, e.g. per-layer slices when C is a multiple of 8).
//     Plans (cublas_common.h's CublasLtPlan: descriptor, layouts, algorithm) are cached per host thread, keyed
//     by the shape, transposes, types, epilogue, bias/aux presence, batch strides and the alignment of A, B
//     and D (which the heuristic's choice, and so the summation order, depends on): the first call of a key
//     builds its plan, later ones only set the bias and aux pointers. cublaslt_plans_built counts the builds.
#pragma once
#include "cuda_common.h"
#include "cuda_utils.cuh"
#include "cublas_common.h"

#define MATMUL_BIAS_MAX_SLICES 32
#define MATMUL_BIAS_ROWS_PER_SLICE 256
#define MATMUL_BIAS_ROW_GROUPS 8
#define MATMUL_BACKWARD_SCRATCH_FLOATS(OC) ((size_t)MATMUL_BIAS_MAX_SLICES * (OC))

// ----------------------------------------------------------------------------
// bias gradient kernels

// grid (ceil(OC/32), slices), block 256 = 32 columns x 8 row groups; scratch[slice * OC + col]
__global__ void matmul_backward_bias_kernel(float* scratch, const floatX* dout, int N, int OC) {
    __shared__ float s_sum[MATMUL_BIAS_ROW_GROUPS][WARP_SIZE];
    int lane = threadIdx.x % WARP_SIZE, group = threadIdx.x / WARP_SIZE;
    int col = blockIdx.x * WARP_SIZE + lane;
    int slice = blockIdx.y, slices = gridDim.y;
    int rows = CEIL_DIV(N, slices);
    int r0 = slice * rows;
    int r1 = r0 + rows < N ? r0 + rows : N;
    float sum = 0.0f;
    if (col < OC) {
        for (int r = r0 + group; r < r1; r += MATMUL_BIAS_ROW_GROUPS) { sum += to_f32(dout[(size_t)r * OC + col]); }
    }
    s_sum[group][lane] = sum;
    __syncthreads();
    if (group == 0 && col < OC) {
        for (int g = 1; g < MATMUL_BIAS_ROW_GROUPS; g++) { sum += s_sum[g][lane]; }
        scratch[(size_t)slice * OC + col] = sum;
    }
}

__global__ void matmul_backward_bias_finish_kernel(float* dbias, const float* scratch, int slices, int OC) {
    int col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= OC) { return; }
    float sum = 0.0f;
    for (int s = 0; s < slices; s++) { sum += scratch[(size_t)s * OC + col]; }
    dbias[col] += sum;
}

inline int matmul_bias_slices(int N) {
    int s = CEIL_DIV(N, MATMUL_BIAS_ROWS_PER_SLICE);
    if (s > MATMUL_BIAS_MAX_SLICES) { s = MATMUL_BIAS_MAX_SLICES; }
    return s < 1 ? 1 : s;
}

// dbias (OC) += sum over the N rows of dout (N,OC)
inline void matmul_backward_bias(float* dbias, float* scratch, const floatX* dout, int N, int OC,
                                 cudaStream_t stream) {
    if (N == 0 || OC == 0) { return; }
    int slices = matmul_bias_slices(N);
    dim3 grid(CEIL_DIV(OC, WARP_SIZE), slices);
    matmul_backward_bias_kernel<<<grid, WARP_SIZE * MATMUL_BIAS_ROW_GROUPS, 0, stream>>>(scratch, dout, N, OC);
    cudaKernelCheck();
    matmul_backward_bias_finish_kernel<<<CEIL_DIV(OC, 256), 256, 0, stream>>>(dbias, scratch, slices, OC);
    cudaKernelCheck();
}

// ----------------------------------------------------------------------------
// cuBLASLt

// the largest power of two (at most 256) that divides the address
inline uint32_t pointer_alignment(const void* p) {
    uintptr_t a = (uintptr_t)p;
    uint32_t align = 256;
    while (align > 1 && (a % align) != 0) { align /= 2; }
    return align;
}

// everything a plan depends on (CublasLtPlanKey); the bias and aux pointers are set per call
inline CublasLtPlanKey matmul_plan_key(const void* d, cudaDataType d_type, const floatX* a, const floatX* b,
                                       bool has_bias, bool has_aux, int m, int n, int k, bool transA, bool transB,
                                       int batch, long long strideA, long long strideB, long long strideD,
                                       cublasLtEpilogue_t epilogue) {
    CublasLtPlanKey key;
    memset(&key, 0, sizeof(key));
    key.m = m; key.n = n; key.k = k; key.batch = batch;
    if (batch > 1) { key.strideA = strideA; key.strideB = strideB; key.strideD = strideD; }
    key.transA = transA; key.transB = transB; key.d_type = d_type; key.epilogue = epilogue;
    key.compute = cublas_compute; key.has_bias = has_bias; key.has_aux = has_aux;
    key.align_a = pointer_alignment(a); key.align_b = pointer_alignment(b); key.align_d = pointer_alignment(d);
    return key;
}

// the descriptor, packed column-major layouts and the heuristic's algorithm for `key`
inline void matmul_plan_build(CublasLtPlan* p, const CublasLtPlanKey* key) {
    p->key = *key;
    int m = (int)key->m, n = (int)key->n, k = (int)key->k, batch = (int)key->batch;
    bool transA = key->transA, transB = key->transB;
    cudaDataType d_type = (cudaDataType)key->d_type;
    cublasLtEpilogue_t epilogue = (cublasLtEpilogue_t)key->epilogue;
    cublasCheck(cublasLtMatmulDescCreate(&p->desc, (cublasComputeType_t)key->compute, CUDA_R_32F));
    cublasOperation_t opA = transA ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t opB = transB ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opA, sizeof(opA)));
    cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opB, sizeof(opB)));
    cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)));
    if (key->has_bias) {
        cudaDataType bias_type = CUBLAS_LOWP;
        cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type,
                                                   sizeof(bias_type)));
    }
    if (key->has_aux) {
        int64_t aux_ld = m;
        cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &aux_ld,
                                                   sizeof(aux_ld)));
    }
    cublasLtMatrixLayout_t* l = p->layout;  // A, B, C, D
    cublasCheck(cublasLtMatrixLayoutCreate(&l[0], CUBLAS_LOWP, transA ? k : m, transA ? m : k, transA ? k : m));
    cublasCheck(cublasLtMatrixLayoutCreate(&l[1], CUBLAS_LOWP, transB ? n : k, transB ? k : n, transB ? n : k));
    cublasCheck(cublasLtMatrixLayoutCreate(&l[2], d_type, m, n, m));
    cublasCheck(cublasLtMatrixLayoutCreate(&l[3], d_type, m, n, m));
    if (batch > 1) {
        int64_t strides[4] = {key->strideA, key->strideB, key->strideD, key->strideD};
        for (int i = 0; i < 4; i++) {
            cublasCheck(cublasLtMatrixLayoutSetAttribute(l[i], CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch,
                                                         sizeof(batch)));
            cublasCheck(cublasLtMatrixLayoutSetAttribute(l[i], CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                                         &strides[i], sizeof(strides[i])));
        }
    }
    cublasLtMatmulPreference_t pref;
    cublasCheck(cublasLtMatmulPreferenceCreate(&pref));
    size_t ws = CUBLASLT_WORKSPACE_SIZE;
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
    // the heuristic assumes 256-byte aligned buffers unless told otherwise
    uint32_t al_a = (uint32_t)key->align_a, al_b = (uint32_t)key->align_b, al_d = (uint32_t)key->align_d;
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof(al_a)));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof(al_b)));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_d, sizeof(al_d)));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_d, sizeof(al_d)));
    cublasLtMatmulHeuristicResult_t heuristic;
    int found = 0;
    cublasCheck(cublasLtMatmulAlgoGetHeuristic(cublaslt_handle, p->desc, l[0], l[1], l[2], l[3], pref, 1, &heuristic,
                                               &found));
    cublasCheck(cublasLtMatmulPreferenceDestroy(pref));
    if (found == 0) {
        fatal("matmul_cublaslt: no algorithm for m=%d n=%d k=%d transA=%d transB=%d batch=%d epilogue=%d",
              m, n, k, (int)transA, (int)transB, batch, (int)epilogue);
    }
    p->algo = heuristic.algo;
    cublaslt_plans_built++;
}

inline void matmul_cublaslt(void* d, cudaDataType d_type, const floatX* a, const floatX* b, const floatX* bias,
                            int m, int n, int k, bool transA, bool transB, int batch, long long strideA,
                            long long strideB, long long strideD, float alpha, float beta,
                            cublasLtEpilogue_t epilogue, const floatX* aux, cudaStream_t stream) {
    if (m == 0 || n == 0 || batch == 0) { return; }
    if (!cublaslt_handle) { fatal("matmul_cublaslt: call cublas_init() first on this host thread"); }
    CublasLtPlanKey key = matmul_plan_key(d, d_type, a, b, bias != NULL, aux != NULL, m, n, k, transA, transB, batch,
                                          strideA, strideB, strideD, epilogue);
    CublasLtPlan* plan = NULL;
    for (int i = 0; i < cublaslt_num_plans && !plan; i++) {
        if (memcmp(&cublaslt_plans[i].key, &key, sizeof(key)) == 0) { plan = &cublaslt_plans[i]; }
    }
    CublasLtPlan transient;
    if (!plan) {
        plan = cublaslt_num_plans < CUBLASLT_PLAN_CACHE ? &cublaslt_plans[cublaslt_num_plans++] : &transient;
        matmul_plan_build(plan, &key);
    }
    if (bias) {
        cublasCheck(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
    }
    if (aux) {
        cublasCheck(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux,
                                                   sizeof(aux)));
    }
    const cublasLtMatrixLayout_t* l = plan->layout;
    cublasCheck(cublasLtMatmul(cublaslt_handle, plan->desc, &alpha, a, l[0], b, l[1], &beta, d, l[2], d, l[3],
                               &plan->algo, cublaslt_workspace, CUBLASLT_WORKSPACE_SIZE, stream));
    if (plan == &transient) { cublaslt_plan_destroy(&transient); }
}

// ----------------------------------------------------------------------------
// the linear layer

inline void matmul_forward(floatX* out, const floatX* inp, const floatX* weight, const floatX* bias,
                           int N, int C, int OC, floatX* pre_gelu, cudaStream_t stream) {
    // row-major out (N,OC) is column-major out^T (OC x N) = weight (OC x C) @ inp^T (C x N):
    // A = weight, stored C x OC column-major, transposed; B = inp, stored C x N
    cublasLtEpilogue_t epi;
    if (pre_gelu) { epi = bias ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX; }
    else { epi = bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT; }
    matmul_cublaslt(out, CUBLAS_LOWP, weight, inp, bias, OC, N, C, true, false, 1, 0, 0, 0, 1.0f, 0.0f, epi,
                    pre_gelu, stream);
}

inline void matmul_backward(floatX* dinp, float* dweight, float* dbias, float* scratch, const floatX* dout,
                            const floatX* inp, const floatX* weight, int N, int C, int OC,
                            const floatX* pre_gelu, cudaStream_t stream) {
    if (dbias) { matmul_backward_bias(dbias, scratch, dout, N, OC, stream); }
    if (dweight) {
        // dweight^T (C x OC, column-major) += inp^T (C x N) @ dout (N x OC): A = inp stored C x N, B = dout stored OC x N
        matmul_cublaslt(dweight, CUDA_R_32F, inp, dout, NULL, C, OC, N, false, true, 1, 0, 0, 0, 1.0f, 1.0f,
                        CUBLASLT_EPILOGUE_DEFAULT, NULL, stream);
    }
    if (dinp) {
        // dinp^T (C x N) = weight^T (C x OC) @ dout^T (OC x N): A = weight stored C x OC, B = dout stored OC x N
        matmul_cublaslt(dinp, CUBLAS_LOWP, weight, dout, NULL, C, N, OC, false, false, 1, 0, 0, 0, 1.0f, 0.0f,
                        pre_gelu ? CUBLASLT_EPILOGUE_DGELU : CUBLASLT_EPILOGUE_DEFAULT, pre_gelu, stream);
    }
}
