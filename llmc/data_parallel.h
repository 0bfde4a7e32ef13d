/*
Data parallelism around the pipeline (-dp D): D replicas of the P-stage pipeline, each running the schedule on
its own micro-batches, their gradients summed before the optimizer. This header holds what both trainers share:
the grid of ranks, which micro-batches a replica takes, and the shards a stage's parameters are cut into for
the gradient reduction and ZeRO-1 (-z 1).

The grid is replica-major: job rank = d * P + p for replica d and pipeline rank p, so each pipeline sits on
consecutive ranks (one node, where messages are cheapest) and D = 1 numbers ranks as before. The pipeline
group of a rank is {d*P .. d*P+P-1}; its data-parallel group is {p, P+p, 2P+p, ...}.
*/
#ifndef LLMC_DATA_PARALLEL_H
#define LLMC_DATA_PARALLEL_H

#include <stdio.h>
// defines: GPT2Config, StageLayout, tensor_is_per_layer, tensor_unit_size, NUM_PARAMETER_TENSORS
#include "model.h"
// defines: NextBatchFn
#include "dataloader.h"

typedef struct {
    int D, P;  // replicas, pipeline ranks
    int d, p;  // this rank's replica and pipeline rank
} Grid;

static inline Grid grid_of(int job_rank, int D, int P) { return (Grid){D, P, job_rank / P, job_rank % P}; }

static inline void grid_print(const Grid* g, FILE* out) {
    if (g->D == 1) { return; }
    fprintf(out, "grid: D=%d replicas x P=%d pipeline ranks = %d ranks; rank = d*P + p (replica-major)\n", g->D, g->P,
            g->D * g->P);
    for (int d = 0; d < g->D; d++) {
        fprintf(out, "  replica %d: ranks %d..%d\n", d, d * g->P, d * g->P + g->P - 1);
    }
    for (int p = 0; p < g->P; p++) {
        fprintf(out, "  data-parallel group of pipeline rank %d: ranks", p);
        for (int d = 0; d < g->D; d++) { fprintf(out, " %d", d * g->P + p); }
        fprintf(out, "\n");
    }
}

// A step reads D*M micro-batches in the loader's order; replica d trains on [d*M, (d+1)*M). Every rank reads
// them all and keeps its own, so every loader stands at the same place after a step, the same place as one
// replica with D*M micro-batches: a checkpoint's data position means the same at any D.
static inline void load_replica_tokens(int* tokens, int first, int count, int total, int B, int T, NextBatchFn next,
                                       void* ctx) {
    int n = B * T;
    int* skipped = (int*)malloc_check((size_t)2 * n * sizeof(int));
    for (int m = 0; m < total; m++) {
        int* dst = m >= first && m < first + count ? tokens + (size_t)(m - first) * 2 * n : skipped;
        next(ctx, dst, dst + n, n);
    }
    free(skipped);
}

// One unit of parameters (one tensor of one layer, or a whole non-layer tensor) is cut into D pieces, piece k
// for data-parallel rank k. Cutting each unit, not the stage's flat buffer, keeps every piece, and so every
// sum over it, the same however the layers are split into stages: for a fixed D the bits do not depend on P.
typedef struct {
    size_t offset, count;  // floats in the stage's parameter and gradient buffers
    size_t packed;         // offset within the shard: the pieces of a shard packed one after another
    int tensor;            // the parameter tensor (weight decay)
    int slot;              // grad-norm slot (llmc/pipeline.h), -1 for the LM head's copy of the tied wte
} ShardPiece;

// how many pieces one shard of a stage has at most
static inline int max_shard_pieces(const GPT2Config* c) { return 4 + 12 * c->num_layers + 1; }

// Shard k of D of a stage (out: room for max_shard_pieces); returns the number of pieces, and in *floats their
// total. The norm slots are numbered in checkpoint order as in llmc/pipeline.h. With D = 1 the one shard is
// the whole stage in buffer order (packed == offset).
static inline int stage_shard_pieces(const GPT2Config* c, const StageLayout* s, int D, int k, ShardPiece* out,
                                     size_t* floats) {
    int n = 0, slot = 0;
    size_t off = 0, mine = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        int per_layer = tensor_is_per_layer(i);
        int units = per_layer ? c->num_layers : 1;
        size_t unit = tensor_unit_size(c, i);
        for (int u = 0; u < units; u++, slot++) {
            int here = per_layer ? stage_holds(s, i, u) : s->sizes[i] > 0;
            if (!here) { continue; }
            size_t at = off + (per_layer ? (size_t)(u - stage_tensor_layer_begin(s, i)) * unit : 0);
            size_t lo = unit * k / D, hi = unit * (k + 1) / D;
            int counted = per_layer || i != WTE || s->has_embed;  // the tied wte counts once, on stage 0
            out[n++] = (ShardPiece){at + lo, hi - lo, mine, i, counted ? slot : -1};
            mine += hi - lo;
        }
        off += s->sizes[i];
    }
    *floats = mine;
    return n;
}

#endif
