/*
The training state file written beside every model checkpoint (state_%08d.bin), shared by the CPU and CUDA
trainers so a checkpoint from one resumes on the other. A 256 x int32 header, then the AdamW moments m and v
in the whole-model (checkpoint) layout, fp32 — so the file does not depend on how many pipeline stages wrote it.
  [0] magic 20261125, [1] version 2, [2] step (training steps done), [3] optimizer steps taken (the AdamW t;
  fewer than the steps when an fp16 overflow skipped some), [4..5] number of parameters, [6..7] data shard,
  [8..9] data position, [10..11] sampler RNG, [12] loss scale (float bits, 0 without a scaler),
  [13] clean steps since the last loss-scale change,
  [14..23] the settings a bit-exact resume needs unchanged (B, T, M, -u; -l -q -c -cl as float bits; hashes
  of -k and -i), all 0 when the writer did not record them
A checkpoint is complete when its DONE_%08d marker exists; the marker is a few lines of text with the step,
the model's shape, and the size and checksum of the model and state files, all verified before a resume.
*/
#ifndef LLMC_TRAIN_STATE_H
#define LLMC_TRAIN_STATE_H

#include <dirent.h>
#include <inttypes.h>
#include <stdint.h>
#include <string.h>
#include "utils.h"
#include "model.h"
#include "train_args.h"

#define STATE_MAGIC 20261125
#define STATE_VERSION 3

typedef struct {
    int step;
    int adam_t;
    int64_t num_parameters;
    int64_t shard;
    int64_t position;
    uint64_t sample_rng;
    float loss_scale;
    int good_steps;
    // what the run was started with (train_state_set_args); B = 0: not recorded
    int B, T, M, warmup;
    float lr, final_frac, weight_decay, grad_clip;
    uint32_t lr_schedule_hash, train_data_hash;
    int shuffle;     // the data position is (shards opened, micro-batches read) of llm.c's shuffled order
    float beta2;
} TrainState;

static uint32_t str_hash(const char* s) {
    uint32_t h = 2166136261u;
    for (; *s; s++) { h = (h ^ (unsigned char)*s) * 16777619u; }
    return h;
}

// records the settings that a resume compares against (train_state_resume_check)
static void train_state_set_args(TrainState* s, const TrainArgs* a) {
    s->B = a->B; s->T = a->T; s->M = a->M * a->D; s->warmup = a->warmup;  // M: micro-batches per step, all replicas
    s->lr = a->lr; s->final_frac = a->final_frac; s->weight_decay = a->weight_decay; s->grad_clip = a->grad_clip;
    s->lr_schedule_hash = str_hash(a->lr_schedule_name);
    s->train_data_hash = str_hash(a->train_pattern);
    s->shuffle = a->shuffle;
    s->beta2 = a->beta2;
}

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
    int32_t ints[4] = {s->B, s->T, s->M, s->warmup};
    float floats[4] = {s->lr, s->final_frac, s->weight_decay, s->grad_clip};
    uint32_t hashes[2] = {s->lr_schedule_hash, s->train_data_hash};
    memcpy(header + 14, ints, sizeof(ints));
    memcpy(header + 18, floats, sizeof(floats));
    memcpy(header + 22, hashes, sizeof(hashes));
    header[24] = s->shuffle;
    memcpy(header + 25, &s->beta2, sizeof(float));
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
    int32_t ints[4];
    float floats[4];
    uint32_t hashes[2];
    memcpy(ints, header + 14, sizeof(ints));
    memcpy(floats, header + 18, sizeof(floats));
    memcpy(hashes, header + 22, sizeof(hashes));
    s.B = ints[0]; s.T = ints[1]; s.M = ints[2]; s.warmup = ints[3];
    s.lr = floats[0]; s.final_frac = floats[1]; s.weight_decay = floats[2]; s.grad_clip = floats[3];
    s.lr_schedule_hash = hashes[0]; s.train_data_hash = hashes[1];
    s.shuffle = header[24];
    memcpy(&s.beta2, header + 25, sizeof(float));
    if (s.num_parameters != (int64_t)num_parameters || size != 1024 + (long)(2 * num_parameters * sizeof(float))) {
        fatal("%s: holds %lld parameters (%ld bytes) but the model has %zu", path, (long long)s.num_parameters, size,
              num_parameters);
    }
    // a corrupt or hand-made header is refused here, before any field is used as a step, count or index
    if (s.step < 0 || s.step > TRAIN_MAX_STEPS) { fatal("%s: step %d is outside 0..%d", path, s.step, TRAIN_MAX_STEPS); }
    if (s.adam_t < 0 || s.adam_t > s.step) {
        fatal("%s: optimizer step count %d is outside 0..%d (the step)", path, s.adam_t, s.step);
    }
    if (s.shard < 0 || s.position < 0) {
        fatal("%s: negative data position (shard %lld, token %lld)", path, (long long)s.shard, (long long)s.position);
    }
    if (!isfinite(s.loss_scale) || s.loss_scale < 0.0f || s.good_steps < 0) {
        fatal("%s: invalid loss scale %g (%d clean steps)", path, s.loss_scale, s.good_steps);
    }
    int recorded = s.B != 0;
    if (recorded && (s.B < 1 || s.B > TRAIN_MAX_B || s.T < 1 || s.T > TRAIN_MAX_T || s.M < 1 || s.M > TRAIN_MAX_M ||
        s.warmup < 0 || !isfinite(s.lr) || !isfinite(s.final_frac) || !isfinite(s.weight_decay) ||
        !isfinite(s.grad_clip) || (s.shuffle != 0 && s.shuffle != 1) || !(s.beta2 >= 0.0f && s.beta2 < 1.0f))) {
        fatal("%s: corrupt run settings in the header (B=%d T=%d M=%d)", path, s.B, s.T, s.M);
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

// "<out_dir>/model_00000012.bin" and the like (kind: "model", "state" or "DONE"); free() the result
static char* checkpoint_path(const char* out_dir, const char* kind, int step) {
    return str_printf("%s/%s_%08d%s", out_dir, kind, step, strcmp(kind, "DONE") == 0 ? "" : ".bin");
}

static void checkpoint_save(const char* out_dir, const GPT2Config* c, const TrainState* ts, int writer,
                            GatherFn gather, void* ctx) {
    size_t N = model_num_parameters(c);
    float* global = writer ? (float*)malloc_check(N * sizeof(float)) : NULL;
    char* model_path = checkpoint_path(out_dir, "model", ts->step);
    char* state_path = checkpoint_path(out_dir, "state", ts->step);
    uint64_t model_sum = 0;
    gather(ctx, 0, global);
    if (writer) { model_sum = model_write(model_path, c, global); }
    AtomicFile af;
    if (writer) {
        int32_t header[256];
        train_state_pack(ts, header);
        atomic_open(&af, state_path);
        atomic_write(&af, header, sizeof(int32_t), 256);
    }
    for (int which = 1; which <= 2; which++) {
        gather(ctx, which, global);
        if (!writer) { continue; }
        // never save a state that a resume would refuse (model_write refuses non-finite parameters)
        size_t bad = first_nonfinite(global, N, which == 2);
        if (bad < N) {
            char where[128];
            tensor_locate(c, bad, where, sizeof(where));
            atomic_abort(&af);
            fatal("refusing to write %s: AdamW %s %s is %g", state_path, which == 1 ? "m" : "v", where, global[bad]);
        }
        atomic_write(&af, global, sizeof(float), N);
    }
    if (writer) {
        atomic_commit(&af);
        // the DONE marker comes last: a checkpoint without it is incomplete and never resumed from
        char* done_path = checkpoint_path(out_dir, "DONE", ts->step);
        char* text = str_printf("step %d\nshape maxT=%d V=%d Vp=%d L=%d NH=%d C=%d\n"
                                "model %zu bytes checksum %016" PRIx64 "\nstate %zu bytes checksum %016" PRIx64 "\n",
                                ts->step, c->max_seq_len, c->vocab_size, c->padded_vocab_size, c->num_layers,
                                c->num_heads, c->channels, 1024 + N * sizeof(float), model_sum,
                                af.bytes, af.checksum);
        AtomicFile done;
        atomic_open(&done, done_path);
        atomic_write(&done, text, 1, strlen(text));
        atomic_commit(&done);
        free(text);
        free(done_path);
    }
    free(model_path);
    free(state_path);
    free(global);
}

// Reads a state file: returns its header fields and hands m (which = 1) and v (2), in whole-model layout, to
// scatter(ctx, which, global), which keeps the slices the caller's stages own. A NaN or inf moment, or a
// negative v, is refused naming the tensor.
static TrainState checkpoint_load_state(const char* path, const GPT2Config* c, GatherFn scatter, void* ctx) {
    FILE* f = fopen_check(path, "rb");
    size_t N = model_num_parameters(c);
    TrainState ts = train_state_read_header(f, path, N);
    float* global = (float*)malloc_check(N * sizeof(float));
    for (int which = 1; which <= 2; which++) {
        fread_check(global, sizeof(float), N, f, path);
        check_finite(c, global, 0, N, which == 2, path, which == 1 ? "AdamW m of" : "AdamW v of");
        scatter(ctx, which, global);
    }
    free(global);
    fclose(f);
    return ts;
}

// Bit-exact resume needs the settings of the saved run; which may change is policy (README): -x, -pp, -pl,
// -sc, launch mode and threads, the -v -m -s -g -n -o -tr -tk outputs and -j never change the training
// trajectory and are not mentioned. -b -t -pm -u -l -q -c -cl -k -i may change, say, for fine-tuning: the
// run continues, and one line (to `out`, NULL: nobody) names what changed, since it is no longer the run an
// uninterrupted one would have been. A checkpoint at a step beyond -x is refused: there is nothing to run.
static void train_state_resume_check(const TrainState* s, const TrainArgs* a, const char* path, FILE* out) {
    if (s->step > a->max_steps) {
        fatal("flag -x %d: the checkpoint %s is already at step %d", a->max_steps, path, s->step);
    }
    if (s->B != 0 && s->shuffle != a->shuffle) {
        fatal("%s was saved with -sh %d: its data position has no meaning with -sh %d", path, s->shuffle, a->shuffle);
    }
    if (s->B != 0 && s->shuffle && (s->B != a->B || s->T != a->T)) {
        fatal("%s: a shuffled data position counts micro-batches of -b %d -t %d, not -b %d -t %d", path, s->B, s->T,
              a->B, a->T);
    }
    if (s->B == 0 || out == NULL) { return; }
    TrainState now = *s;
    train_state_set_args(&now, a);
    char line[1024] = "";
    size_t n = 0;
#define RESUME_DIFF(cond, ...) \
    if ((cond) && n < sizeof(line)) { n += snprintf(line + n, sizeof(line) - n, __VA_ARGS__); }
    RESUME_DIFF(s->B != now.B, " -b %d->%d", s->B, now.B)
    RESUME_DIFF(s->T != now.T, " -t %d->%d", s->T, now.T)
    RESUME_DIFF(s->M != now.M, " micro-batches per step (-pm x -dp) %d->%d", s->M, now.M)
    RESUME_DIFF(s->warmup != now.warmup, " -u %d->%d", s->warmup, now.warmup)
    RESUME_DIFF(s->lr != now.lr, " -l %g->%g", s->lr, now.lr)
    RESUME_DIFF(s->final_frac != now.final_frac, " -q %g->%g", s->final_frac, now.final_frac)
    RESUME_DIFF(s->weight_decay != now.weight_decay, " -c %g->%g", s->weight_decay, now.weight_decay)
    RESUME_DIFF(s->grad_clip != now.grad_clip, " -cl %g->%g", s->grad_clip, now.grad_clip)
    RESUME_DIFF(s->beta2 != now.beta2, " -b2 %g->%g", s->beta2, now.beta2)
    RESUME_DIFF(s->lr_schedule_hash != now.lr_schedule_hash, " -k (now %s)", a->lr_schedule_name)
    RESUME_DIFF(s->train_data_hash != now.train_data_hash, " -i (now %s)", a->train_pattern)
#undef RESUME_DIFF
    if (n > 0) { fprintf(out, "resume: changed since %s:%s (no longer bit-identical to an uninterrupted run)\n", path, line); }
}

// the size and checksum of a whole file, read in 1 MiB pieces
static uint64_t file_checksum(const char* path, long* size) {
    FILE* f = fopen_check(path, "rb");
    *size = file_size(f, path);
    unsigned char* buf = (unsigned char*)malloc_check(1 << 20);
    uint64_t h = CHECKSUM_INIT;
    size_t got;
    while ((got = fread(buf, 1, 1 << 20, f)) > 0) { h = checksum_update(h, buf, got); }
    if (ferror(f)) { fatal("cannot read %s: %s", path, strerror(errno)); }
    free(buf);
    fclose(f);
    return h;
}

// Checks a checkpoint against its DONE marker: the step, the shape, and the size and checksum of both files,
// so a state from another step, a swapped or edited file, or a flipped bit is refused naming both files.
static void checkpoint_verify(const char* out_dir, int step) {
    char* done_path = checkpoint_path(out_dir, "DONE", step);
    char* model_path = checkpoint_path(out_dir, "model", step);
    char* state_path = checkpoint_path(out_dir, "state", step);
    FILE* f = fopen_check(done_path, "rb");
    char text[512];
    size_t len = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[len] = '\0';
    int s, pos = 0;
    GPT2Config c;
    long model_bytes, state_bytes;
    uint64_t model_sum, state_sum;
    if (sscanf(text, "step %d\nshape maxT=%d V=%d Vp=%d L=%d NH=%d C=%d\nmodel %ld bytes checksum %" SCNx64
               "\nstate %ld bytes checksum %" SCNx64 "\n%n", &s, &c.max_seq_len, &c.vocab_size,
               &c.padded_vocab_size, &c.num_layers, &c.num_heads, &c.channels, &model_bytes, &model_sum,
               &state_bytes, &state_sum, &pos) != 11 || (size_t)pos != len) {
        fatal("%s is not a checkpoint marker of this trainer (empty or corrupt): cannot verify %s and %s",
              done_path, model_path, state_path);
    }
    if (config_check(&c) != NULL) { fatal("%s: corrupt model shape: cannot verify %s and %s", done_path, model_path, state_path); }
    if (s != step) { fatal("%s records step %d: refusing %s and %s", done_path, s, model_path, state_path); }
    long size;
    if (file_checksum(model_path, &size) != model_sum || size != model_bytes) {
        fatal("%s does not match its checksum in %s (changed after it was saved): refusing to resume from %s and %s",
              model_path, done_path, model_path, state_path);
    }
    if (file_checksum(state_path, &size) != state_sum || size != state_bytes) {
        fatal("%s does not match its checksum in %s (changed after it was saved): refusing to resume from %s and %s",
              state_path, done_path, model_path, state_path);
    }
    // the sums match what was written; the step inside the state must be the one in the file names
    FILE* sf = fopen_check(state_path, "rb");
    TrainState ts = train_state_read_header(sf, state_path, model_num_parameters(&c));
    fclose(sf);
    if (ts.step != step) {
        fatal("%s is at step %d but %s is the checkpoint of step %d: refusing the pair", state_path, ts.step,
              model_path, step);
    }
    free(done_path);
    free(model_path);
    free(state_path);
}

// Removes the .tmp files a crash mid-save leaves behind (ours only: model_, state_, DONE_, main.log).
static void checkpoint_clean_tmp(const char* out_dir) {
    DIR* d = opendir(out_dir);
    if (d == NULL) { return; }
    struct dirent* e;
    while ((e = readdir(d)) != NULL) {
        const char* n = e->d_name;
        size_t len = strlen(n);
        int ours = strncmp(n, "model_", 6) == 0 || strncmp(n, "state_", 6) == 0 || strncmp(n, "DONE_", 5) == 0 ||
                   strcmp(n, "main.log.tmp") == 0;
        if (ours && len > 4 && strcmp(n + len - 4, ".tmp") == 0) {
            char* p = str_printf("%s/%s", out_dir, n);
            unlink(p);  // another rank may have removed it first
            free(p);
        }
    }
    closedir(d);
}

// The step of the newest complete checkpoint (one with its DONE_ file) in out_dir, or -1. Stale .tmp files
// are removed first, and the checkpoint found is verified against its marker (checkpoint_verify).
static int checkpoint_find_latest(const char* out_dir) {
    checkpoint_clean_tmp(out_dir);
    DIR* d = opendir(out_dir);
    if (d == NULL) { return -1; }
    int best = -1;
    struct dirent* e;
    while ((e = readdir(d)) != NULL) {
        const char* n = e->d_name;
        // exactly DONE_ and 8 digits, as checkpoint_path writes them
        if (strncmp(n, "DONE_", 5) != 0 || strlen(n) != 13 || strspn(n + 5, "0123456789") != 8) { continue; }
        int s = atoi(n + 5);
        if (s > best) { best = s; }
    }
    closedir(d);
    if (best >= 0) { checkpoint_verify(out_dir, best); }
    return best;
}

#endif
