// What scripts/gpu_check.sh's preflight reports, through the libraries' own APIs: the driver's and the
// runtime's CUDA versions, cuBLASLt's and NCCL's, and every visible GPU. Exits 1 without a GPU.
// Built by dev/gpu_bundle.sh: nvcc dev/gpu_preflight.cu -lcublasLt -lnccl
#include <stdio.h>
#include <cuda_runtime.h>
#include <cublasLt.h>
#include <nccl.h>

int main(void) {
    int driver = 0, runtime = 0, nccl = 0, n = 0;
    cudaDriverGetVersion(&driver);
    cudaRuntimeGetVersion(&runtime);
    ncclGetVersion(&nccl);
    printf("CUDA driver %d.%d, runtime %d.%d, cuBLASLt %zu, NCCL %d.%d.%d\n", driver / 1000, driver % 1000 / 10,
           runtime / 1000, runtime % 1000 / 10, cublasLtGetVersion(), nccl / 10000, nccl / 100 % 100, nccl % 100);
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess || n == 0) {
        printf("error: no CUDA device: %s\n", err != cudaSuccess ? cudaGetErrorString(err) : "0 devices");
        return 1;
    }
    for (int d = 0; d < n; d++) {
        cudaDeviceProp p;
        cudaGetDeviceProperties(&p, d);
        printf("GPU %d: %s, sm_%d%d, %.1f GiB, %d SMs\n", d, p.name, p.major, p.minor, p.totalGlobalMem / 1073741824.0,
               p.multiProcessorCount);
    }
    return 0;
}
