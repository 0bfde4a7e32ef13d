/*
The training state file written beside every model checkpoint (state_%08d.bin), shared by the CPU and CUDA
trainers so a checkpoint from one resumes on the other. A 256 x int32 header, then the AdamW moments m and v
in the whole-model (checkpoint) layout, fp32 — so the file does not depend on how many pipeline stages wrote it.
  [0] magic 20261125, [1] version 1, [2] step (training steps done), [3] optimizer steps taken (the AdamW t;
  fewer than the steps when an fp16 overflow skipped some), [4..5] number of parameters, [6..7] data shard,
  [8..9] data position, [10..11] sampler RNG, [12] loss scale (float bits, 0 without a scaler),
  [13] clean steps since the last loss-scale change
*/
#ifndef LLMC_TRAIN_STATE_H
#define LLMC_TRAIN_STATE_H

#include <dirent.h>
#include <stdint.h>
#include <string.h>
#include "utils.h"
#include "model.h"

#define STATE_MAGIC 20261125
#define STATE_VERSION 1

typedef struct {
    int step;
    int adam_t;
    int64_t num_parameters;
    int64_t shard;
    int64_t position;
    uint64_t sample_rng;
    float loss_scale;
    int good_steps;
} TrainState;

static void train_state_pack(const TrainState* s, int32_t header[256]) {
    memset(header, 0, 256 * sizeof(int32_t));
    header[0] = STATE_MAGIC;
    header[1] = STATE_VERSION;
    header[2] = s->step;
    header[3] = s->adam_t;
    int64_t fields[4] = {s->num_parameters, s->shard, s->position, (int64_t)s->sample_rng};
    memcpy(header + 4, fields, sizeof(fields));
    memcpy(header + 12, &s->loss_scale, sizeof(float));
    header[13] = s->good_steps;
}

// reads and validates the header; leaves f at the moments
static TrainState train_state_read_header(FILE* f, const char* path, size_t num_parameters) {
    int32_t header[256];
    long size = file_size(f, path);
    if (size < 1024) { fatal("%s is truncated: smaller than its 1024-byte header", path); }
    fread_check(header, sizeof(int32_t), 256, f, path);
    if (header[0] != STATE_MAGIC || header[1] != STATE_VERSION) {
        fatal("%s: bad magic/version %d/%d, expected %d/%d (a train_gpt2_pp training state)", path, header[0],
              header[1], STATE_MAGIC, STATE_VERSION);
    }
    TrainState s;
    int64_t fields[4];
    memcpy(fields, header + 4, sizeof(fields));
    s.step = header[2];
    s.adam_t = header[3];
    s.num_parameters = fields[0];
    s.shard = fields[1];
    s.position = fields[2];
    s.sample_rng = (uint64_t)fields[3];
    memcpy(&s.loss_scale, header + 12, sizeof(float));
    s.good_steps = header[13];
    if (s.num_parameters != (int64_t)num_parameters || size != 1024 + (long)(2 * num_parameters * sizeof(float))) {
        fatal("%s: holds %lld parameters (%ld bytes) but the model has %zu", path, (long long)s.num_parameters, size,
              num_parameters);
    }
    return s;
}

// ----------------------------------------------------------------------------
// A checkpoint is model_%08d.bin (llm.c format) + state_%08d.bin + DONE_%08d, written by one rank from
// whole-model buffers. How those buffers are filled depends on the trainer (host copies, MPI or NCCL from
// the other stages), so it asks: gather(ctx, which, global) puts the parameters (0), m (1) or v (2) into
// `global` on the writing rank. Every rank calls checkpoint_save (the gathers are collective); global is NULL
// on the others.
typedef void (*GatherFn)(void* ctx, int which, float* global);

static void checkpoint_save(const char* out_dir, const GPT2Config* c, const TrainState* ts, int writer,
                            GatherFn gather, void* ctx) {
    size_t N = model_num_parameters(c);
    float* global = writer ? (float*)malloc_check(N * sizeof(float)) : NULL;
    char path[1024];
    gather(ctx, 0, global);
    if (writer) {
        snprintf(path, sizeof(path), "%s/model_%08d.bin", out_dir, ts->step);
        model_write(path, c, global);
    }
    AtomicFile af;
    if (writer) {
        int32_t header[256];
        train_state_pack(ts, header);
        snprintf(path, sizeof(path), "%s/state_%08d.bin", out_dir, ts->step);
        atomic_open(&af, path);
        atomic_write(&af, header, sizeof(int32_t), 256);
    }
    for (int which = 1; which <= 2; which++) {
        gather(ctx, which, global);
        if (writer) { atomic_write(&af, global, sizeof(float), N); }
    }
    if (writer) {
        atomic_commit(&af);
        // the DONE marker comes last: a checkpoint without it is incomplete and never resumed from
        snprintf(path, sizeof(path), "%s/DONE_%08d", out_dir, ts->step);
        AtomicFile done;
        atomic_open(&done, path);
        atomic_commit(&done);
    }
    free(global);
}

// Reads a state file: returns its header fields and hands m (which = 1) and v (2), in whole-model layout, to
// scatter(ctx, which, global), which keeps the slices the caller's stages own.
static TrainState checkpoint_load_state(const char* path, const GPT2Config* c, GatherFn scatter, void* ctx) {
    FILE* f = fopen_check(path, "rb");
    size_t N = model_num_parameters(c);
    TrainState ts = train_state_read_header(f, path, N);
    float* global = (float*)malloc_check(N * sizeof(float));
    for (int which = 1; which <= 2; which++) {
        fread_check(global, sizeof(float), N, f, path);
        scatter(ctx, which, global);
    }
    free(global);
    fclose(f);
    return ts;
}

// the step of the newest complete checkpoint (one with its DONE_ file) in out_dir, or -1
static int checkpoint_find_latest(const char* out_dir) {
    DIR* d = opendir(out_dir);
    if (d == NULL) { return -1; }
    int best = -1;
    struct dirent* e;
    while ((e = readdir(d)) != NULL) {
        int s;
        char extra;
        if (sscanf(e->d_name, "DONE_%8d%c", &s, &extra) == 1 && s > best) { best = s; }
    }
    closedir(d);
    return best;
}

#endif
