// cuda_common.h -- what every CUDA file of the trainer and of dev/cuda includes first.
//
// defines:
//   floatX             the parameter/activation type: float (-DENABLE_FP32), __nv_bfloat16 (-DENABLE_BF16,
//                      the default when none is given) or __half (-DENABLE_FP16)
//   PRECISION_NAME     "FP32" / "BF16" / "FP16"; PRECISION_FP32 / PRECISION_BF16 / PRECISION_FP16 is 1 for the build
//   to_f32(x)          floatX (or float) -> float, exact
//   to_fX(f)           float -> floatX, round to nearest even (never stochastic rounding)
//   cudaCheck(err)     fatal() (llmc/utils.h) with file:line and the CUDA error string unless err == cudaSuccess
//   cublasCheck(st)    fatal() with file:line unless st == 0 (CUBLAS_STATUS_SUCCESS); cublas_common.h adds the
//                      statuses' names. Through fatal(), every error takes the one exit path, whose
//                      fatal_hook lets the trainer abort its NCCL communicator so that peer ranks exit too
//   cudaKernelCheck()  cudaCheck(cudaGetLastError()) after a launch
//   CEIL_DIV(a, b)     rounds up
//   WARP_SIZE          32
//
// Conventions of every llmc/*.cuh kernel header (each documents its own functions at the top):
//   * host functions are `static` or `inline`, take `cudaStream_t stream` last and only enqueue work
//     (no synchronisation, no allocation);
//   * PARAMETER GRADIENTS ARE fp32 (float*) and are accumulated (+=); activation gradients are floatX and
//     overwritten (=) unless the comment says +=; all arithmetic and every accumulation is fp32 (or double);
//   * no float atomics anywhere; every grid size is a function of the problem shape only (never of the
//     device's SM count), and every reduction has a fixed order, so results are bitwise identical run to run;
//   * inline PTX, tensor-core or vector-load tricks, if any, sit behind `#ifndef SIMT_CPU` with a plain
//     fallback: under the SIMT CPU runtime (dev/simt) kernels are compiled as C++ with simt.h.
#pragma once

#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <math.h>
#include "utils.h"

// ----------------------------------------------------------------------------
// precision

#if defined(ENABLE_FP32) + defined(ENABLE_BF16) + defined(ENABLE_FP16) > 1
#error "define at most one of ENABLE_FP32, ENABLE_BF16, ENABLE_FP16"
#endif

#if defined(ENABLE_FP32)
typedef float floatX;
#define PRECISION_NAME "FP32"
#define PRECISION_FP32 1
#define PRECISION_BF16 0
#define PRECISION_FP16 0
#elif defined(ENABLE_FP16)
typedef __half floatX;
#define PRECISION_NAME "FP16"
#define PRECISION_FP32 0
#define PRECISION_BF16 0
#define PRECISION_FP16 1
#else  // BF16 is the default
#ifndef ENABLE_BF16
#define ENABLE_BF16
#endif
typedef __nv_bfloat16 floatX;
#define PRECISION_NAME "BF16"
#define PRECISION_FP32 0
#define PRECISION_BF16 1
#define PRECISION_FP16 0
#endif

// Conversions. Overloaded on the argument so that code works for float and floatX alike
// (in the FP32 build floatX is float and only the float overloads exist).
__host__ __device__ inline float to_f32(float x) { return x; }
__host__ __device__ inline float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }
__host__ __device__ inline float to_f32(__half x) { return __half2float(x); }

__host__ __device__ inline floatX to_fX(float f) {
#if defined(ENABLE_FP32)
    return f;
#elif defined(ENABLE_FP16)
    return __float2half_rn(f);
#else
    return __float2bfloat16_rn(f);
#endif
}

// ----------------------------------------------------------------------------
// error checking

#define WARP_SIZE 32
#define CEIL_DIV(a, b) (((a) + (b) - 1) / (b))

inline void cuda_check_(cudaError_t err, const char* file, int line) {
    if (err != cudaSuccess) { fatal("CUDA error at %s:%d: %s", file, line, cudaGetErrorString(err)); }
}
#define cudaCheck(err) (cuda_check_((err), __FILE__, __LINE__))
#define cudaKernelCheck() (cuda_check_(cudaGetLastError(), __FILE__, __LINE__))

// cuBLAS statuses are plain enums (0 = success); taking an int keeps this header free of cuBLAS.
inline void cublas_check_(int status, const char* file, int line) {
    if (status != 0) { fatal("cuBLAS error at %s:%d: status %d", file, line, status); }
}
#define cublasCheck(status) (cublas_check_((int)(status), __FILE__, __LINE__))
