/*
Reads llm.c token shards: a 256 x int32 header ([0] = 20240520, [1] = 1, [2] = number of tokens) followed by
that many uint16 GPT-2 token ids. A loader walks one or more shards (a glob pattern) in order and hands out
micro-batches of B x T inputs with their B x T next-token targets. Its whole state is (shard, position), so a
checkpoint can save it and a resumed run reads exactly the tokens the uninterrupted run would have read.

Shuffled (-sh 1), it reads as llm.c's loader does: each epoch a random permutation of the shards, and for each
shard as it is opened a permutation of its micro-batches, both from one mt19937 stream seeded with 42. Its
state is then (shards opened so far, micro-batches read of the current one): the permutations are drawn
again from the seed on resume, which costs only random numbers.
*/
#ifndef LLMC_DATALOADER_H
#define LLMC_DATALOADER_H

#include <glob.h>
#include <stdint.h>
#include "utils.h"
#include "rand.h"

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
    int shuffle;              // llm.c's shuffled order (see the top); then:
    mt19937_state rng;
    int64_t* shard_batches;   // (shards) micro-batches in each shard
    int* shard_order;         // (shards) this epoch's order
    int* batch_order;         // (micro-batches of the current shard)
    int64_t opened;           // shards opened since the start
    int64_t batch;            // micro-batches read of the current shard
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
    dl->shard_batches = (int64_t*)malloc_check(dl->files.gl_pathc * sizeof(int64_t));
    for (size_t i = dl->files.gl_pathc; i-- > 0;) {
        dataloader_load_shard(dl, i);
        dl->shard_batches[i] = (dl->shard_tokens - 1) / ((int64_t)B * T);
        dl->num_batches += dl->shard_batches[i];
    }
    dl->position = 0;
}

// llm.c's random_permutation: Fisher-Yates from the end, j = randint32 % (i + 1)
static void random_permutation(int* data, int64_t n, mt19937_state* rng) {
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = randint32(rng) % (uint32_t)(i + 1);
        int tmp = data[i];
        data[i] = data[j];
        data[j] = tmp;
    }
}

// Opens the next shard of the shuffled order (a new epoch's order first, when one begins) and draws its
// micro-batch order. With load = 0 only the random numbers are drawn: how a resume catches up.
static void dataloader_open_shuffled(DataLoader* dl, int load) {
    int64_t shards = (int64_t)dl->files.gl_pathc, k = dl->opened % shards;
    if (k == 0) { random_permutation(dl->shard_order, shards, &dl->rng); }  // of the last epoch's order, as llm.c
    size_t shard = (size_t)dl->shard_order[k];
    int64_t n = dl->shard_batches[shard];
    free(dl->batch_order);
    dl->batch_order = (int*)malloc_check((size_t)n * sizeof(int));
    for (int64_t i = 0; i < n; i++) { dl->batch_order[i] = (int)i; }
    random_permutation(dl->batch_order, n, &dl->rng);
    if (load && shard != dl->shard) { dataloader_load_shard(dl, shard); }
    dl->opened++;
    dl->batch = 0;
}

// the shuffled order from its start: seed 42, shards in glob order before the first permutation
static void dataloader_shuffle_restart(DataLoader* dl) {
    manual_seed(&dl->rng, 42);
    for (size_t i = 0; i < dl->files.gl_pathc; i++) { dl->shard_order[i] = (int)i; }
    dl->opened = 0;
}

// -sh 1: from here on, read in llm.c's shuffled order (call once, right after dataloader_init)
static void dataloader_shuffle(DataLoader* dl) {
    dl->shuffle = 1;
    dl->shard_order = (int*)malloc_check(dl->files.gl_pathc * sizeof(int));
    dataloader_shuffle_restart(dl);
    dataloader_open_shuffled(dl, 1);
}

// the state a checkpoint saves: (shard, token offset), or shuffled (shards opened, micro-batches read)
static void dataloader_state(const DataLoader* dl, int64_t* a, int64_t* b) {
    *a = dl->shuffle ? dl->opened : (int64_t)dl->shard;
    *b = dl->shuffle ? dl->batch : dl->position;
}

static void dataloader_reset(DataLoader* dl) {
    if (dl->shard != 0) { dataloader_load_shard(dl, 0); }
    dl->position = 0;
}

// restores a saved shuffled state (shards opened, micro-batches read): the permutations are drawn again
static void dataloader_seek_shuffled(DataLoader* dl, int64_t opened, int64_t batch) {
    if (opened < 1 || opened > (int64_t)1 << 40) { fatal("checkpoint's shuffled data position %lld is invalid", (long long)opened); }
    dataloader_shuffle_restart(dl);
    while (dl->opened < opened) { dataloader_open_shuffled(dl, dl->opened + 1 == opened); }
    if (batch < 0 || batch > dl->shard_batches[dl->shard]) {
        fatal("checkpoint's data position %lld is past the end of %s", (long long)batch, dl->files.gl_pathv[dl->shard]);
    }
    dl->batch = batch;
}

// restores a saved (shard, position); both are validated against the files at hand
static void dataloader_seek(DataLoader* dl, size_t shard, int64_t position) {
    if (dl->shuffle) {
        dataloader_seek_shuffled(dl, (int64_t)shard, position);
        return;
    }
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
    if (dl->shuffle) {
        if (dl->batch == dl->shard_batches[dl->shard]) { dataloader_open_shuffled(dl, 1); }
        dl->position = (int64_t)dl->batch_order[dl->batch++] * n;
    } else if (dl->position + n + 1 > dl->shard_tokens) {
        dataloader_load_shard(dl, (dl->shard + 1) % dl->files.gl_pathc);
        dl->position = 0;
    }
    const uint16_t* p = dl->tokens + dl->position;
    for (int64_t i = 0; i < n; i++) {
        dl->inputs[i] = p[i];
        dl->targets[i] = p[i + 1];
    }
    if (!dl->shuffle) { dl->position += n; }
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
    free(dl->shard_batches);
    free(dl->shard_order);
    free(dl->batch_order);
    free(dl->tokens);
    free(dl->inputs);
    free(dl->targets);
}

#endif
