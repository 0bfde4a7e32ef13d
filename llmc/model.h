/*
What a GPT-2 model is, independent of where it runs: its configuration, the 16 parameter tensors in llm.c's
order and shapes, which part of them a pipeline stage holds, the llm.c/PyTorch random initialisation, and the
llm.c model checkpoint format. Shared by the CPU trainer (train_gpt2_pp.c) and the CUDA trainer.

A stage holds a contiguous run of layers [layer_begin, layer_begin + num_layers). Its tensors use llm.c's
layout with L replaced by num_layers ("all layers of one kind are contiguous"), so the stage-local qkvw is
simply a slice of the global qkvw. Stage 0 also holds wte and wpe, the last stage lnf and a copy of wte for
the tied LM head.
*/
#ifndef LLMC_MODEL_H
#define LLMC_MODEL_H

#include <math.h>
#include <stdint.h>
#include <string.h>
#include "rand.h"
#include "utils.h"

#define NUM_PARAMETER_TENSORS 16
enum { WTE, WPE, LN1W, LN1B, QKVW, QKVB, ATTPROJW, ATTPROJB, LN2W, LN2B, FCW, FCB, FCPROJW, FCPROJB, LNFW, LNFB };
static const char* const param_names[NUM_PARAMETER_TENSORS] = {
    "wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb",
    "ln2w", "ln2b", "fcw", "fcb", "fcprojw", "fcprojb", "lnfw", "lnfb"};

#define MODEL_MAGIC 20240326
#define MODEL_VERSION_FP32 3

typedef struct {
    int max_seq_len;        // maxT, e.g. 1024
    int vocab_size;         // V, e.g. 50257
    int padded_vocab_size;  // Vp, V rounded up to a multiple of 128
    int num_layers;         // L
    int num_heads;          // NH
    int channels;           // C
} GPT2Config;

static int tensor_is_per_layer(int i) { return i >= LN1W && i <= FCPROJB; }

// weight decay applies to the 2-D matrices only, not to biases and layernorm gains
static int tensor_is_decayed(int i) {
    return i == WTE || i == WPE || i == QKVW || i == ATTPROJW || i == FCW || i == FCPROJW;
}

// elements of tensor i for one layer (per-layer tensors) or in total (the others)
static size_t tensor_unit_size(const GPT2Config* c, int i) {
    size_t C = c->channels;
    switch (i) {
    case WTE: return (size_t)c->padded_vocab_size * C;
    case WPE: return (size_t)c->max_seq_len * C;
    case QKVW: return 3 * C * C;
    case QKVB: return 3 * C;
    case ATTPROJW: return C * C;
    case FCW: case FCPROJW: return 4 * C * C;
    case FCB: return 4 * C;
    default: return C;  // ln1w ln1b attprojb ln2w ln2b fcprojb lnfw lnfb
    }
}

// elements of tensor i in the whole model
static size_t tensor_global_size(const GPT2Config* c, int i) {
    return tensor_unit_size(c, i) * (tensor_is_per_layer(i) ? (size_t)c->num_layers : 1);
}

static size_t model_num_parameters(const GPT2Config* c) {
    size_t n = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) { n += tensor_global_size(c, i); }
    return n;
}

// where tensor i, layer l begins in the whole-model (checkpoint) layout
static size_t tensor_global_offset(const GPT2Config* c, int i, int l) {
    size_t off = 0;
    for (int j = 0; j < i; j++) { off += tensor_global_size(c, j); }
    return off + (tensor_is_per_layer(i) ? (size_t)l * tensor_unit_size(c, i) : 0);
}

// which part of the model one pipeline stage holds
typedef struct {
    int layer_begin;
    int num_layers;
    int has_embed;  // wte, wpe (stage 0)
    int has_head;   // lnf and the tied LM head wte (last stage)
    size_t sizes[NUM_PARAMETER_TENSORS];
    size_t num_parameters;
} StageLayout;

static StageLayout stage_layout(const GPT2Config* c, int layer_begin, int num_layers, int has_embed, int has_head) {
    StageLayout s;
    s.layer_begin = layer_begin;
    s.num_layers = num_layers;
    s.has_embed = has_embed;
    s.has_head = has_head;
    s.num_parameters = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        size_t n = tensor_unit_size(c, i);
        if (tensor_is_per_layer(i)) { n *= num_layers; }
        else if (i == WTE) { n = (has_embed || has_head) ? n : 0; }
        else if (i == WPE) { n = has_embed ? n : 0; }
        else { n = has_head ? n : 0; }  // lnfw, lnfb
        s.sizes[i] = n;
        s.num_parameters += n;
    }
    return s;
}

// Copies between a stage-local buffer (stage layout) and a whole-model buffer (global layout).
// to_global = 1 scatters the stage's slices into the whole model; 0 gathers them out of it.
static void stage_copy_global(const GPT2Config* c, const StageLayout* s, float* local, float* global, int to_global) {
    size_t off = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        if (s->sizes[i] == 0) { continue; }
        float* g = global + tensor_global_offset(c, i, tensor_is_per_layer(i) ? s->layer_begin : 0);
        if (to_global) { memcpy(g, local + off, s->sizes[i] * sizeof(float)); }
        else { memcpy(local + off, g, s->sizes[i] * sizeof(float)); }
        off += s->sizes[i];
    }
}

// "d12" -> GPT-2 shapes: 64 channels and one head per unit of depth (d12 = 124M, d24 = 350M, ...);
// "d4:c64:h4" overrides the channels and heads (small models for tests and experiments)
static GPT2Config config_from_descriptor(const char* desc) {
    GPT2Config c;
    int depth = 0, channels = 0, heads = 0, used = 0;
    int n = sscanf(desc, "d%d%n:c%d:h%d%n", &depth, &used, &channels, &heads, &used);
    int whole = used == (int)strlen(desc);
    if (!((n == 1 || n == 3) && whole) || depth < 1 || depth > 128 || (n == 3 && (channels < 1 || heads < 1 ||
        channels % heads != 0))) {
        fatal("flag -e expects a checkpoint file or a model descriptor dN or dN:cC:hH (e.g. d12, d4:c64:h4), "
              "got '%s'", desc);
    }
    c.num_layers = depth;
    c.channels = depth * 64;
    c.num_heads = depth;
    // GPT-2's larger models keep the head size at 64 but not one head per layer
    if (depth == 24) { c.channels = 1024; c.num_heads = 16; }
    if (depth == 36) { c.channels = 1280; c.num_heads = 20; }
    if (depth == 48) { c.channels = 1600; c.num_heads = 25; }
    if (n == 3) { c.channels = channels; c.num_heads = heads; }
    c.max_seq_len = 1024;
    c.vocab_size = 50257;
    c.padded_vocab_size = 50304;  // a multiple of 128, as llm.c pads it
    return c;
}

/*
llm.c's (and PyTorch's) GPT-2 initialisation from seed 42: layernorm gains 1, biases 0, matrices N(0, 0.02)
with the two residual projections scaled by 1/sqrt(2L). The draws follow PyTorch's module order (wte, wpe,
then layer by layer), so every stage replays the whole sequence and keeps only its own slices.
*/
static void stage_random_init(const GPT2Config* c, const StageLayout* s, float* local) {
    mt19937_state rng;
    manual_seed(&rng, 42);
    memset(local, 0, s->num_parameters * sizeof(float));
    size_t local_off[NUM_PARAMETER_TENSORS];
    size_t off = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) { local_off[i] = off; off += s->sizes[i]; }
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        if (i == LN1W || i == LN2W || i == LNFW) {
            for (size_t j = 0; j < s->sizes[i]; j++) { local[local_off[i] + j] = 1.0f; }
        }
    }
    float residual_scale = 1.0f / sqrtf(2.0f * c->num_layers);
    size_t largest = (size_t)c->vocab_size * c->channels;
    for (int i = WPE; i < NUM_PARAMETER_TENSORS; i++) {
        if (tensor_unit_size(c, i) > largest) { largest = tensor_unit_size(c, i); }
    }
    float* scratch = (float*)malloc_check(largest * sizeof(float));
    for (int l = 0; l < c->num_layers; l++) {
        for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
            int is_embedding = (i == WTE || i == WPE) && l == 0;
            int is_matrix = i == QKVW || i == ATTPROJW || i == FCW || i == FCPROJW;
            if (!is_embedding && !is_matrix) { continue; }
            // wte: only the V real rows are drawn; the padded rows stay 0
            size_t n = i == WTE ? (size_t)c->vocab_size * c->channels : tensor_unit_size(c, i);
            float std = (i == ATTPROJW || i == FCPROJW) ? 0.02f * residual_scale : 0.02f;
            normal_(scratch, n, 0.0f, std, &rng);
            int held = is_embedding ? s->sizes[i] > 0
                                    : (l >= s->layer_begin && l < s->layer_begin + s->num_layers);
            if (held) {
                size_t dst = local_off[i] + (is_matrix ? (size_t)(l - s->layer_begin) * n : 0);
                memcpy(local + dst, scratch, n * sizeof(float));
            }
        }
    }
    free(scratch);
}

// ----------------------------------------------------------------------------
// llm.c model checkpoints: 256 x int32 header, then all parameters in fp32 (version 3)

static void model_header_write(int32_t header[256], const GPT2Config* c) {
    memset(header, 0, 256 * sizeof(int32_t));
    header[0] = MODEL_MAGIC;
    header[1] = MODEL_VERSION_FP32;
    header[2] = c->max_seq_len;
    header[3] = c->vocab_size;
    header[4] = c->num_layers;
    header[5] = c->num_heads;
    header[6] = c->channels;
    header[7] = c->padded_vocab_size;
}

// reads and validates a checkpoint's header and size; leaves f positioned at the parameters
static GPT2Config model_header_read(FILE* f, const char* path) {
    int32_t h[256];
    long size = file_size(f, path);
    if (size < 1024) { fatal("%s is truncated: %ld bytes, smaller than the 1024-byte checkpoint header", path, size); }
    fread_check(h, sizeof(int32_t), 256, f, path);
    if (h[0] != MODEL_MAGIC) {
        fatal("%s: bad magic %d, expected %d (an llm.c GPT-2 model checkpoint)", path, h[0], MODEL_MAGIC);
    }
    if (h[1] != MODEL_VERSION_FP32) {
        fatal("%s: checkpoint version %d, expected %d (fp32 with padded vocab)%s", path, h[1], MODEL_VERSION_FP32,
              h[1] == 5 ? "; this is a bf16 checkpoint, use the fp32 one (e.g. gpt2_124M.bin)" : "");
    }
    GPT2Config c;
    c.max_seq_len = h[2];
    c.vocab_size = h[3];
    c.num_layers = h[4];
    c.num_heads = h[5];
    c.channels = h[6];
    c.padded_vocab_size = h[7];
    if (c.max_seq_len <= 0 || c.vocab_size <= 0 || c.num_layers <= 0 || c.num_heads <= 0 || c.channels <= 0 ||
        c.padded_vocab_size < c.vocab_size || c.channels % c.num_heads != 0) {
        fatal("%s: implausible model shape maxT=%d V=%d L=%d NH=%d C=%d Vp=%d", path, c.max_seq_len, c.vocab_size,
              c.num_layers, c.num_heads, c.channels, c.padded_vocab_size);
    }
    long expected = 1024 + (long)(model_num_parameters(&c) * sizeof(float));
    if (size != expected) {
        fatal("%s: %ld bytes, but a model with L=%d C=%d V=%d needs %ld (truncated or corrupt)", path, size,
              c.num_layers, c.channels, c.padded_vocab_size, expected);
    }
    return c;
}

static GPT2Config model_read_config(const char* path) {
    FILE* f = fopen_check(path, "rb");
    GPT2Config c = model_header_read(f, path);
    fclose(f);
    return c;
}

// loads one stage's slices of a checkpoint
static void model_read_stage(const char* path, const GPT2Config* c, const StageLayout* s, float* local) {
    FILE* f = fopen_check(path, "rb");
    model_header_read(f, path);
    size_t off = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        if (s->sizes[i] == 0) { continue; }
        size_t g = tensor_global_offset(c, i, tensor_is_per_layer(i) ? s->layer_begin : 0);
        fseek_check(f, 1024 + (long)(g * sizeof(float)), SEEK_SET, path);
        fread_check(local + off, sizeof(float), s->sizes[i], f, path);
        off += s->sizes[i];
    }
    fclose(f);
}

// writes a whole model (global layout) atomically
static void model_write(const char* path, const GPT2Config* c, const float* params) {
    int32_t header[256];
    model_header_write(header, c);
    AtomicFile af;
    atomic_open(&af, path);
    atomic_write(&af, header, sizeof(int32_t), 256);
    atomic_write(&af, params, sizeof(float), model_num_parameters(c));
    atomic_commit(&af);
}

#endif
