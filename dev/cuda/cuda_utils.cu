// Test of the utility kernels of llmc/cuda_utils.cuh: cast_to_floatX, cast_to_float, fill, add_inplace,
// scale_inplace, and block_reduce_sum / warp_reduce_max.
// Build and run: make -f dev/cuda/cuda.mk test_cuda_kernels, or on a GPU
//   nvcc -std=c++17 -O3 -DENABLE_BF16 dev/cuda/cuda_utils.cu -o cuda_utils -lcublas -lcublasLt
//
// Tolerance: zero everywhere. Casts are single roundings (to nearest even, the host's __float2bfloat16 /
// __float2half give the same), the adds and multiplies are single fp32 operations, and the block reduction
// is compared with its own fixed order (the 32-lane xor butterfly, then the per-warp sums the same way),
// replayed on the host.
#include "common.h"
#include "../../llmc/cuda_utils.cuh"

__global__ void block_sum_kernel(float* out, const float* in) {
    __shared__ float smem[32];
    float s = block_reduce_sum(in[blockIdx.x * blockDim.x + threadIdx.x], smem);
    float m = warp_reduce_max(in[blockIdx.x * blockDim.x + threadIdx.x]);
    if (threadIdx.x == 0) { out[2 * blockIdx.x] = s; }
    if (threadIdx.x == 5) { out[2 * blockIdx.x + 1] = m; }  // lane 5 of warp 0: every lane holds the max
}

// the xor butterfly, as the warp computes it (lane 0's result; all lanes get the same bits)
static float butterfly(const float* v) {
    float x[32];
    for (int i = 0; i < 32; i++) { x[i] = v[i]; }
    for (int off = 16; off > 0; off /= 2) {
        float y[32];
        for (int i = 0; i < 32; i++) { y[i] = x[i] + x[i ^ off]; }
        for (int i = 0; i < 32; i++) { x[i] = y[i]; }
    }
    return x[0];
}

int main(void) {
    print_header("cuda_utils");
    size_t n = 3001;
    Rng rng(1);
    std::vector<float> a = rng.vec(n, -3.0f, 3.0f), b = rng.vec(n, -3.0f, 3.0f);
    float* d_a = to_device(a);
    float* d_b = to_device(b);
    floatX* d_x = dmalloc<floatX>(n);
    float* d_f = dmalloc<float>(n);
    cast_to_floatX(d_x, d_a, n, 0);
    std::vector<floatX> xref(n);
    for (size_t i = 0; i < n; i++) { xref[i] = to_fX(a[i]); }
    bitwise_equal("cast_to_floatX", xref, from_device(d_x, n));
    cast_to_float(d_f, d_x, n, 0);
    std::vector<float> fref(n);
    for (size_t i = 0; i < n; i++) { fref[i] = to_f32(xref[i]); }
    bitwise_equal("cast_to_float", fref, from_device(d_f, n));
    fill(d_f, 0.1f, n, 0);
    bitwise_equal("fill(float)", std::vector<float>(n, 0.1f), from_device(d_f, n));
    fill(d_x, 0.1f, n, 0);
    bitwise_equal("fill(floatX)", std::vector<floatX>(n, to_fX(0.1f)), from_device(d_x, n));
    add_inplace(d_a, d_b, n, 0);
    std::vector<float> sum(n);
    for (size_t i = 0; i < n; i++) { sum[i] = a[i] + b[i]; }
    bitwise_equal("add_inplace", sum, from_device(d_a, n));
    scale_inplace(d_a, 0.37f, n, 0);
    for (size_t i = 0; i < n; i++) { sum[i] = sum[i] * 0.37f; }
    bitwise_equal("scale_inplace", sum, from_device(d_a, n));

    int blocks = 3, threads = 256;
    std::vector<float> in = rng.vec((size_t)blocks * threads, -1.0f, 1.0f);
    float* d_in = to_device(in);
    float* d_out = dmalloc<float>(2 * blocks);
    block_sum_kernel<<<blocks, threads>>>(d_out, d_in);
    cudaCheck(cudaGetLastError());
    std::vector<float> ref(2 * blocks);
    for (int bl = 0; bl < blocks; bl++) {
        float warp_sums[32] = {0};
        for (int w = 0; w < threads / 32; w++) { warp_sums[w] = butterfly(&in[(size_t)bl * threads + w * 32]); }
        ref[2 * bl] = butterfly(warp_sums);
        float mx = -INFINITY;
        for (int i = 0; i < 32; i++) { mx = fmaxf(mx, in[(size_t)bl * threads + i]); }
        ref[2 * bl + 1] = mx;
    }
    bitwise_equal("block_reduce_sum, warp_reduce_max", ref, from_device(d_out, 2 * blocks));
    cudaCheck(cudaFree(d_a)); cudaCheck(cudaFree(d_b)); cudaCheck(cudaFree(d_x)); cudaCheck(cudaFree(d_f));
    cudaCheck(cudaFree(d_in)); cudaCheck(cudaFree(d_out));
    return test_summary();
}
