/* simt_api.h -- per-host-thread (per-rank) counts of the CUDA runtime calls that stall a training
 * step, kept by the SIMT runtime: a test resets them when a step starts and asserts zero mallocs,
 * frees and device syncs when it ends. Include it from .cu code ("dev/simt/simt_api.h"); under nvcc
 * (SIMT_CPU undefined) simt_api_counts() returns 0 with all counts zero and the calls compile away:
 *     simt_api_counts_reset();  ...step...  SimtApiCounts c; if (simt_api_counts(&c)) { print, assert }
 */
#pragma once
#include <string.h>

typedef struct {
    long long malloc_calls;     /* cudaMalloc, cudaMallocAsync, cudaMallocManaged, cudaMallocHost, cudaHostAlloc */
    long long free_calls;       /* cudaFree, cudaFreeAsync, cudaFreeHost */
    long long device_syncs;     /* cudaDeviceSynchronize */
    long long stream_syncs;     /* cudaStreamSynchronize */
    long long pageable_copies;  /* cudaMemcpy/cudaMemcpyAsync whose host side is not from cudaMallocHost/cudaHostAlloc */
} SimtApiCounts;

#if defined(SIMT_CPU)
#ifdef __cplusplus
extern "C" {
#endif
int simt_api_counts(SimtApiCounts* c);  /* this host thread's counts since its last reset; returns 1 */
void simt_api_counts_reset(void);
#ifdef __cplusplus
}
#endif
#else
static inline int simt_api_counts(SimtApiCounts* c) { memset(c, 0, sizeof(*c)); return 0; }
static inline void simt_api_counts_reset(void) {}
#endif
