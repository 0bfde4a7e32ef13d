// global_norm.cuh -- squared L2 norms of fp32 gradients, per slot, for many tensors in two launches,
// deterministic, with the loss scaler's overflow check folded in.
//
// A GlobalNorm is a table of pieces (pointer, count, slot) laid out once (global_norm_init, at start-up: it
// allocates); then every step
//     void global_norm_squared(double* out, const GlobalNorm* gn, float scale, cudaStream_t stream);
//     out[s] = sum over the pieces of slot s, in table order, of sum_i (piece[i] * scale)^2   (double, device,
//     gn->num_slots values, overwritten; 0 for a slot without pieces)
// allocates nothing and synchronizes nothing. scale: 1, or 1/loss_scale to get the norm of the unscaled
// gradients (FP16 loss scaling). The product and the sums are in double, so no finite input overflows and
// the result does not depend on how large the loss scale is.
// Overflow check: any inf or NaN gradient makes its slot inf or NaN (squares are >= 0, so inf never meets -inf),
// so one finiteness test on the norm (is_finite_norm) is the loss scaler's found_inf.
//
// Order (fixed, and a function of each piece alone): a piece is cut into chunks of GLOBAL_NORM_CHUNK floats from
// its first element; one block of 256 threads per chunk, thread j visits the groups of four elements 4 (j + 256 k)
// + e (e = 0..3, one 128-bit load when the piece is 16-byte aligned) in k order, element e into double
// accumulator e; the four are summed as (a0 + a1) + (a2 + a3) (the same bits at any alignment), and the block
// sums its threads by a fixed tree into the chunk's partial. The second kernel, one block per slot, sums the
// slot's partials (its pieces' chunks, in table order): thread j takes partials j, j + 256, ... in order, then the
// same tree. So a slot's value depends on its pieces' contents and counts only, not on what else is in the table:
// a stage's slots come out with the same bits however the layers are split into stages.
//
// bool is_finite_norm(float norm_or_squared_norm);   host: isfinite; false means "skip the step, lower the
//     loss scale".
#pragma once
#include "cuda_common.h"
#include "cuda_utils.cuh"

#define GLOBAL_NORM_BLOCK 256
#define GLOBAL_NORM_CHUNK (GLOBAL_NORM_BLOCK * 4 * 16)  // floats per block: 16 128-bit loads per thread

typedef struct { const float* grads; size_t count; int slot; } NormPiece;  // host, for global_norm_init

typedef struct {
    const float* p;  // the chunk's first element
    int count;       // its floats, <= GLOBAL_NORM_CHUNK
    int pad;
} NormChunk;

typedef struct {
    int num_chunks, num_slots;
    NormChunk* chunks;   // device (num_chunks): every piece's chunks, grouped by slot, slots in increasing order
    int* slot_first;     // device (num_slots + 1): slot s owns chunks [slot_first[s], slot_first[s + 1])
    double* partial;     // device (num_chunks)
} GlobalNorm;

__global__ void global_norm_chunks_kernel(double* partial, const NormChunk* chunks, float scale) {
    __shared__ double smem[32];
    NormChunk c = chunks[blockIdx.x];
    bool vec = is_aligned16(c.p);
    // one 128-bit load of four gradients per iteration, each into its own accumulator
    double a[4] = {0.0, 0.0, 0.0, 0.0};
    for (int i = threadIdx.x * 4; i < c.count; i += GLOBAL_NORM_BLOCK * 4) {
        float g[4];
        // through __ldcg: a pointer read from memory is generic to nvcc, and a plain load of it would be LD, not
        // LDG (each gradient is read once, so bypassing L1 costs nothing)
        load_f32<4, true>(g, c.p + i, c.count - i < 4 ? c.count - i : 4, vec);
        for (int k = 0; k < 4; k++) {
            double x = (double)g[k] * scale;
            a[k] += x * x;
        }
    }
    double acc = block_reduce_sum_d((a[0] + a[1]) + (a[2] + a[3]), smem);
    if (threadIdx.x == 0) { partial[blockIdx.x] = acc; }
}

__global__ void global_norm_slots_kernel(double* out, const double* partial, const int* slot_first) {
    __shared__ double smem[32];
    int first = slot_first[blockIdx.x], last = slot_first[blockIdx.x + 1];
    double acc = 0.0;
    for (int i = first + threadIdx.x; i < last; i += GLOBAL_NORM_BLOCK) { acc += partial[i]; }
    acc = block_reduce_sum_d(acc, smem);
    if (threadIdx.x == 0) { out[blockIdx.x] = acc; }
}

// Lays out the table of `n` pieces over `num_slots` slots (each piece's slot in [0, num_slots)) and waits for
// the copies: start-up only. The pointers must stay valid while gn is used.
inline void global_norm_init(GlobalNorm* gn, const NormPiece* pieces, int n, int num_slots, cudaStream_t stream) {
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (pieces[i].slot < 0 || pieces[i].slot >= num_slots) {
            fatal("global_norm_init: piece %d has slot %d, outside [0, %d)", i, pieces[i].slot, num_slots);
        }
        total += CEIL_DIV(pieces[i].count, (size_t)GLOBAL_NORM_CHUNK);
    }
    if (total > 0x7fffffff) { fatal("global_norm_init: %zu chunks, more than a grid holds", total); }
    NormChunk* chunks = (NormChunk*)malloc(total * sizeof(NormChunk) + 1);
    int* first = (int*)malloc((num_slots + 1) * sizeof(int));
    if (!chunks || !first) { fatal("global_norm_init: out of host memory"); }
    int c = 0;
    for (int s = 0; s < num_slots; s++) {
        first[s] = c;
        for (int i = 0; i < n; i++) {
            if (pieces[i].slot != s) { continue; }
            for (size_t at = 0; at < pieces[i].count; at += GLOBAL_NORM_CHUNK) {
                size_t left = pieces[i].count - at;
                chunks[c++] = (NormChunk){pieces[i].grads + at, (int)(left < GLOBAL_NORM_CHUNK ? left : GLOBAL_NORM_CHUNK), 0};
            }
        }
    }
    first[num_slots] = c;
    gn->num_chunks = c;
    gn->num_slots = num_slots;
    cudaCheck(cudaMalloc(&gn->chunks, (c > 0 ? c : 1) * sizeof(NormChunk)));
    cudaCheck(cudaMalloc(&gn->slot_first, (num_slots + 1) * sizeof(int)));
    cudaCheck(cudaMalloc(&gn->partial, (c > 0 ? c : 1) * sizeof(double)));
    cudaCheck(cudaMemcpyAsync(gn->chunks, chunks, c * sizeof(NormChunk), cudaMemcpyHostToDevice, stream));
    cudaCheck(cudaMemcpyAsync(gn->slot_first, first, (num_slots + 1) * sizeof(int), cudaMemcpyHostToDevice, stream));
    cudaCheck(cudaStreamSynchronize(stream));
    free(chunks);
    free(first);
}

inline void global_norm_free(GlobalNorm* gn) {
    cudaCheck(cudaFree(gn->chunks));
    cudaCheck(cudaFree(gn->slot_first));
    cudaCheck(cudaFree(gn->partial));
}

inline void global_norm_squared(double* out, const GlobalNorm* gn, float scale, cudaStream_t stream) {
    if (gn->num_slots == 0) { return; }
    if (gn->num_chunks > 0) {
        global_norm_chunks_kernel<<<gn->num_chunks, GLOBAL_NORM_BLOCK, 0, stream>>>(gn->partial, gn->chunks, scale);
        cudaKernelCheck();
    }
    global_norm_slots_kernel<<<gn->num_slots, GLOBAL_NORM_BLOCK, 0, stream>>>(out, gn->partial, gn->slot_first);
    cudaKernelCheck();
}

inline bool is_finite_norm(float x) { return isfinite(x); }
