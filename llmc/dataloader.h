/*
Reads llm.c token shards: a 256 x int32 header ([0] = 20240520, [1] = 1, [2] = number of tokens) followed by
that many uint16 GPT-2 token ids. A loader walks one or more shards (a glob pattern) in order and hands out
micro-batches of B x T inputs with their B x T next-token targets. Its whole state is (shard, position), so a
checkpoint can save it and a resumed run reads exactly the tokens the uninterrupted run would have read.
*/
#ifndef LLMC_DATALOADER_H
#define LLMC_DATALOADER_H

#include <glob.h>
#include <stdint.h>
#include "utils.h"

#define SHARD_MAGIC 20240520
#define SHARD_VERSION 1
#define SHARD_HEADER_INTS 256

typedef struct {
    glob_t files;
    int B, T;
    int vocab_size;           // every token must be < vocab_size
    size_t shard;             // index of the shard being read
    int64_t position;         // token offset of the next micro-batch in that shard
    int64_t shard_tokens;     // tokens in the current shard
    int64_t num_batches;      // micro-batches in one pass over all shards
    uint16_t* tokens;         // the current shard, whole (shards are small next to a model)
    int* inputs;              // (B, T)
    int* targets;             // (B, T)
} DataLoader;

// validates a shard's header and size; returns its token count
static int64_t shard_check(const char* path, FILE* f, int64_t min_tokens) {
    int32_t header[SHARD_HEADER_INTS];
    long size = file_size(f, path);
    if (size < (long)sizeof(header)) {
        fatal("%s is truncated: %ld bytes, smaller than the 1024-byte header of an llm.c token shard", path, size);
    }
    fread_check(header, sizeof(int32_t), SHARD_HEADER_INTS, f, path);
    if (header[0] != SHARD_MAGIC) {
        fatal("%s: bad magic %d, expected %d (an llm.c uint16 token shard)", path, header[0], SHARD_MAGIC);
    }
    if (header[1] != SHARD_VERSION) {
        fatal("%s: unsupported token shard version %d, expected %d (uint16 GPT-2 tokens)", path, header[1],
              SHARD_VERSION);
    }
    int64_t ntok = header[2];
    if (ntok <= 0 || size != (long)sizeof(header) + 2 * ntok) {
        fatal("%s: header says %lld tokens, so %lld bytes, but the file has %ld bytes (truncated or corrupt)",
              path, (long long)ntok, (long long)(sizeof(header) + 2 * ntok), size);
    }
    if (ntok < min_tokens) {
        fatal("%s has %lld tokens, fewer than the %lld one micro-batch needs (B*T+1)", path, (long long)ntok,
              (long long)min_tokens);
    }
    return ntok;
}

// reads shard `shard` whole into dl->tokens, checking every token against the vocabulary
static void dataloader_load_shard(DataLoader* dl, size_t shard) {
    const char* path = dl->files.gl_pathv[shard];
    FILE* f = fopen_check(path, "rb");
    int64_t ntok = shard_check(path, f, (int64_t)dl->B * dl->T + 1);
    free(dl->tokens);
    dl->tokens = (uint16_t*)malloc_check(ntok * sizeof(uint16_t));
    fread_check(dl->tokens, sizeof(uint16_t), ntok, f, path);
    fclose(f);
    for (int64_t i = 0; i < ntok; i++) {
        if (dl->tokens[i] >= dl->vocab_size) {
            fatal("%s: token %d at index %lld is outside the vocabulary (size %d)", path, dl->tokens[i],
                  (long long)i, dl->vocab_size);
        }
    }
    dl->shard = shard;
    dl->shard_tokens = ntok;
}

static void dataloader_init(DataLoader* dl, const char* pattern, int B, int T, int vocab_size) {
    memset(dl, 0, sizeof(*dl));
    if (glob(pattern, 0, NULL, &dl->files) != 0 || dl->files.gl_pathc == 0) {
        fatal("no data file matches %s (expected llm.c token shards; see dev/data/README.md)", pattern);
    }
    dl->B = B;
    dl->T = T;
    dl->vocab_size = vocab_size;
    dl->inputs = (int*)malloc_check((size_t)B * T * sizeof(int));
    dl->targets = (int*)malloc_check((size_t)B * T * sizeof(int));
    // every shard, headers and tokens, is checked up front: a bad shard fails at start-up, not hours into
    // a run; backwards, so the walk ends with shard 0 loaded
    dl->num_batches = 0;
    for (size_t i = dl->files.gl_pathc; i-- > 0;) {
        dataloader_load_shard(dl, i);
        dl->num_batches += (dl->shard_tokens - 1) / ((int64_t)B * T);
    }
    dl->position = 0;
}

static void dataloader_reset(DataLoader* dl) {
    if (dl->shard != 0) { dataloader_load_shard(dl, 0); }
    dl->position = 0;
}

// restores a saved (shard, position); both are validated against the files at hand
static void dataloader_seek(DataLoader* dl, size_t shard, int64_t position) {
    if (shard >= dl->files.gl_pathc) {
        fatal("checkpoint's data position names shard %zu but only %zu shards match the data pattern", shard,
              dl->files.gl_pathc);
    }
    if (shard != dl->shard) { dataloader_load_shard(dl, shard); }
    if (position < 0 || position + (int64_t)dl->B * dl->T + 1 > dl->shard_tokens) {
        fatal("checkpoint's data position %lld is past the end of %s", (long long)position,
              dl->files.gl_pathv[shard]);
    }
    dl->position = position;
}

// fills inputs/targets with the next B*T tokens (targets shifted by one) and advances
static void dataloader_next_batch(DataLoader* dl) {
    int64_t n = (int64_t)dl->B * dl->T;
    if (dl->position + n + 1 > dl->shard_tokens) {
        dataloader_load_shard(dl, (dl->shard + 1) % dl->files.gl_pathc);
        dl->position = 0;
    }
    const uint16_t* p = dl->tokens + dl->position;
    for (int64_t i = 0; i < n; i++) {
        dl->inputs[i] = p[i];
        dl->targets[i] = p[i + 1];
    }
    dl->position += n;
}

// Where a trainer's micro-batches come from: a loader when training, fixed tokens in the tests.
typedef void (*NextBatchFn)(void* ctx, int* inputs, int* targets, int n);

// a NextBatchFn over a DataLoader (ctx)
static void next_batch_from_loader(void* ctx, int* inputs, int* targets, int n) {
    DataLoader* dl = (DataLoader*)ctx;
    dataloader_next_batch(dl);
    memcpy(inputs, dl->inputs, n * sizeof(int));
    memcpy(targets, dl->targets, n * sizeof(int));
}

// number of micro-batches in one pass over all shards (what "the whole val set" means)
static int64_t dataloader_num_batches(DataLoader* dl) { return dl->num_batches; }

static void dataloader_free(DataLoader* dl) {
    globfree(&dl->files);
    free(dl->tokens);
    free(dl->inputs);
    free(dl->targets);
}

#endif
