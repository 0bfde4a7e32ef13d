/* simt_api.h -- per-host-thread (per-rank) counts of the CUDA runtime calls that stall a training
 * step, kept by the SIMT runtime: a test resets them when a step starts and asserts zero mallocs,
 * frees and device syncs when it ends, and where the NCCL work went (per stream) and how it was
 * ordered (event records and waits, host synchronisations). Include it from .cu code ("dev/simt/simt_api.h"); under nvcc
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
    long long host_syncs;       /* every wait of the host for device work: cudaDeviceSynchronize, cudaStreamSynchronize,
                                   cudaEventSynchronize, a cudaStreamQuery/cudaEventQuery that reports completion, and
                                   cudaMemcpy that blocks (to host memory, from pinned memory, or a pageable upload's
                                   wait for the legacy stream) */
    long long event_syncs;      /* cudaEventSynchronize */
    long long event_records;    /* cudaEventRecord */
    long long stream_waits;     /* cudaStreamWaitEvent */
    long long nccl_ops;         /* NCCL operations issued (send, recv, collectives; each one inside a group) */
} SimtApiCounts;

/* Per stream, per host thread: where the work went (the handle as given: 0 is the legacy default stream). */
typedef struct {
    long long launches;         /* kernels and cuBLAS/cuBLASLt calls */
    long long copies;           /* cudaMemcpy[Async], cudaMemset[Async] */
    long long nccl_ops;         /* NCCL operations */
    long long event_records;    /* cudaEventRecord on this stream */
    long long event_waits;      /* cudaStreamWaitEvent by this stream */
} SimtStreamCounts;

#if defined(SIMT_CPU)
#ifdef __cplusplus
extern "C" {
#endif
int simt_api_counts(SimtApiCounts* c);  /* this host thread's counts since its last reset; returns 1 */
/* this host thread's counts on `stream` (a cudaStream_t) since its last reset; returns 1 */
int simt_api_stream_counts(const void* stream, SimtStreamCounts* c);
void simt_api_counts_reset(void);       /* both kinds of count */
#ifdef __cplusplus
}
#endif
#else
static inline int simt_api_counts(SimtApiCounts* c) { memset(c, 0, sizeof(*c)); return 0; }
static inline int simt_api_stream_counts(const void* stream, SimtStreamCounts* c) { (void)stream; memset(c, 0, sizeof(*c)); return 0; }
static inline void simt_api_counts_reset(void) {}
#endif
