/*
What a GPT-2 model is, independent of where it runs: its configuration, the 16 parameter tensors in llm.c's
order and shapes, which part of them a pipeline stage holds, the llm.c/PyTorch random initialisation, and the
llm.c model checkpoint format. Shared by the CPU trainer (train_gpt2_pp.c) and the CUDA trainer.

A stage holds a contiguous run of half-layer units: unit 2l is layer l's attention half (ln1, qkv, attention,
attproj, the first residual), unit 2l+1 its MLP half (ln2, fc, gelu, fcproj, the second residual). So a
stage boundary may fall inside a layer, where the residual stream between the halves is what passes. Each
tensor uses llm.c's layout with L replaced by the number of layers whose half of that kind the stage holds
("all layers of one kind are contiguous"), so the stage-local qkvw is simply a slice of the global qkvw.
Stage 0 also holds wte and wpe, the last stage lnf and a copy of wte for the tied LM head.
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
static int tensor_is_attention(int i) { return i >= LN1W && i <= ATTPROJB; }  // else of the MLP half, if per layer

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

// which part of the model one pipeline stage holds: half-layer units [unit_begin, unit_begin + num_units)
typedef struct {
    int unit_begin, num_units;
    int layer_begin;    // the layers it touches, wholly or by one half: [layer_begin, layer_begin + num_layers)
    int num_layers;
    int attn_begin;     // the layers whose attention half it holds: [attn_begin, attn_begin + attn_layers)
    int attn_layers;
    int mlp_layers;     // the layers whose MLP half it holds: [layer_begin, layer_begin + mlp_layers)
    int has_embed;  // wte, wpe (stage 0)
    int has_head;   // lnf and the tied LM head wte (last stage)
    size_t sizes[NUM_PARAMETER_TENSORS];
    size_t num_parameters;
} StageLayout;

static StageLayout stage_layout(const GPT2Config* c, int unit_begin, int num_units, int has_embed, int has_head) {
    StageLayout s;
    int end = unit_begin + num_units;
    s.unit_begin = unit_begin;
    s.num_units = num_units;
    s.layer_begin = unit_begin / 2;
    s.num_layers = num_units > 0 ? (end + 1) / 2 - s.layer_begin : 0;
    s.attn_begin = (unit_begin + 1) / 2;
    s.attn_layers = (end + 1) / 2 - s.attn_begin;
    s.mlp_layers = end / 2 - s.layer_begin;
    s.has_embed = has_embed;
    s.has_head = has_head;
    s.num_parameters = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        size_t n = tensor_unit_size(c, i);
        if (tensor_is_per_layer(i)) { n *= tensor_is_attention(i) ? s.attn_layers : s.mlp_layers; }
        else if (i == WTE) { n = (has_embed || has_head) ? n : 0; }
        else if (i == WPE) { n = has_embed ? n : 0; }
        else { n = has_head ? n : 0; }  // lnfw, lnfb
        s.sizes[i] = n;
        s.num_parameters += n;
    }
    return s;
}

// local layer l's index among the stage's attention halves (the slice of its attention tensors and
// activations); -1 when that half is on the previous stage. Its MLP half is here when l < mlp_layers.
static int stage_attention_index(const StageLayout* s, int l) { return l - (s->attn_begin - s->layer_begin); }

// the first layer of per-layer tensor i on the stage (its slice of the global tensor begins there)
static int stage_tensor_layer_begin(const StageLayout* s, int i) {
    return tensor_is_attention(i) ? s->attn_begin : s->layer_begin;
}

// whether layer l's slice of per-layer tensor i is on the stage
static int stage_holds(const StageLayout* s, int i, int l) {
    int begin = stage_tensor_layer_begin(s, i);
    return l >= begin && l < begin + (tensor_is_attention(i) ? s->attn_layers : s->mlp_layers);
}

// Copies between a stage-local buffer (stage layout) and a whole-model buffer (global layout).
// to_global = 1 scatters the stage's slices into the whole model; 0 gathers them out of it.
static void stage_copy_global(const GPT2Config* c, const StageLayout* s, float* local, float* global, int to_global) {
    size_t off = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        if (s->sizes[i] == 0) { continue; }
        float* g = global + tensor_global_offset(c, i, tensor_is_per_layer(i) ? stage_tensor_layer_begin(s, i) : 0);
        if (to_global) { memcpy(g, local + off, s->sizes[i] * sizeof(float)); }
        else { memcpy(local + off, g, s->sizes[i] * sizeof(float)); }
        off += s->sizes[i];
    }
}

// Limits on every dimension, from a descriptor or a checkpoint header: far above any GPT-2, and low enough
// that no size computed from them overflows 64 bits (the largest, L*12*C*C, stays below 2^46).
#define MODEL_MAX_SEQ_LEN (1 << 20)
#define MODEL_MAX_VOCAB (1 << 24)
#define MODEL_MAX_LAYERS 1024
#define MODEL_MAX_CHANNELS (1 << 16)

// NULL when the shape is within the limits above, else what is wrong with it
static const char* config_check(const GPT2Config* c) {
    if (c->max_seq_len < 1 || c->max_seq_len > MODEL_MAX_SEQ_LEN) { return "maxT must be in 1..1048576"; }
    if (c->vocab_size < 1 || c->vocab_size > MODEL_MAX_VOCAB) { return "V must be in 1..16777216"; }
    if (c->padded_vocab_size < c->vocab_size || c->padded_vocab_size > MODEL_MAX_VOCAB) {
        return "the padded vocabulary Vp must be in V..16777216";
    }
    if (c->num_layers < 1 || c->num_layers > MODEL_MAX_LAYERS) { return "L must be in 1..1024"; }
    if (c->channels < 1 || c->channels > MODEL_MAX_CHANNELS) { return "C must be in 1..65536"; }
    if (c->num_heads < 1 || c->num_heads > c->channels || c->channels % c->num_heads != 0) {
        return "NH must divide C";
    }
    return NULL;
}

// The parameters, their gradients and the two AdamW moments must fit in this machine's memory: a model too
// big fails here, naming where its shape came from, and not later as an anonymous out-of-memory error.
static void model_check_memory(const GPT2Config* c, const char* what) {
    size_t need = model_num_parameters(c) * 4 * sizeof(float);
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    size_t have = pages > 0 && page > 0 ? (size_t)pages * (size_t)page : SIZE_MAX;
    if (need > have) {
        fatal("%s: the model has %zu parameters and needs %zu bytes for them, their gradients and the AdamW "
              "moments, more than this machine's %zu bytes", what, model_num_parameters(c), need, have);
    }
}

// reads a decimal number in 0..max at *p (digits only: no sign, no spaces); advances p; -1 if there is none
static long descriptor_number(const char** p, long max) {
    long v = 0;
    const char* s = *p;
    if (*s < '0' || *s > '9') { return -1; }
    for (; *s >= '0' && *s <= '9'; s++) {
        v = v * 10 + (*s - '0');
        if (v > max) { return -1; }
    }
    *p = s;
    return v;
}

// "d12" -> GPT-2 shapes: 64 channels and one head per unit of depth (d12 = 124M, d24 = 350M, ...);
// "d4:c64:h4" overrides the channels and heads (small models for tests and experiments)
static GPT2Config config_from_descriptor(const char* desc) {
    GPT2Config c;
    const char* p = desc;
    long depth = -1, channels = 0, heads = 0;
    if (*p == 'd') {
        p++;
        depth = descriptor_number(&p, 128);
        if (depth > 0 && p[0] == ':' && p[1] == 'c') {
            p += 2;
            channels = descriptor_number(&p, MODEL_MAX_CHANNELS);
            if (channels > 0 && p[0] == ':' && p[1] == 'h') { p += 2; heads = descriptor_number(&p, MODEL_MAX_CHANNELS); }
            else { heads = -1; }
        }
    }
    if (depth < 1 || *p != '\0' || channels < 0 || heads < 0 || (channels > 0 && (heads < 1 || channels % heads != 0))) {
        fatal("flag -e expects a checkpoint file or a model descriptor dN or dN:cC:hH (N in 1..128, C in 1..65536, "
              "H dividing C; e.g. d12, d4:c64:h4), got '%s'", desc);
    }
    c.num_layers = (int)depth;
    c.channels = (int)depth * 64;
    c.num_heads = (int)depth;
    // GPT-2's larger models keep the head size at 64 but not one head per layer
    if (depth == 24) { c.channels = 1024; c.num_heads = 16; }
    if (depth == 36) { c.channels = 1280; c.num_heads = 20; }
    if (depth == 48) { c.channels = 1600; c.num_heads = 25; }
    if (channels > 0) { c.channels = (int)channels; c.num_heads = (int)heads; }
    c.max_seq_len = 1024;
    c.vocab_size = 50257;
    c.padded_vocab_size = 50304;  // a multiple of 128, as llm.c pads it
    char* what = str_printf("flag -e %s", desc);
    model_check_memory(&c, what);
    free(what);
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
            int held = is_embedding ? s->sizes[i] > 0 : stage_holds(s, i, l);
            if (held) {
                size_t dst = local_off[i] + (is_matrix ? (size_t)(l - stage_tensor_layer_begin(s, i)) * n : 0);
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
    const char* why = config_check(&c);
    if (why != NULL) {
        fatal("%s: implausible model shape maxT=%d V=%d L=%d NH=%d C=%d Vp=%d (%s)", path, c.max_seq_len,
              c.vocab_size, c.num_layers, c.num_heads, c.channels, c.padded_vocab_size, why);
    }
    // within config_check's limits this is below 2^49 bytes: no overflow, and comparable with a long
    long expected = 1024 + (long)(model_num_parameters(&c) * sizeof(float));
    if (size != expected) {
        fatal("%s: %ld bytes, but a model with L=%d C=%d V=%d needs %ld (truncated or corrupt)", path, size,
              c.num_layers, c.channels, c.padded_vocab_size, expected);
    }
    return c;
}

// names element `index` of the whole-model layout, e.g. "qkvw (layer 3, element 17)", for error messages
static void tensor_locate(const GPT2Config* c, size_t index, char* buf, size_t n) {
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        size_t off = tensor_global_offset(c, i, 0), size = tensor_global_size(c, i);
        if (index < off + size) {
            if (tensor_is_per_layer(i)) {
                snprintf(buf, n, "%s (layer %zu, element %zu)", param_names[i], (index - off) / tensor_unit_size(c, i),
                         (index - off) % tensor_unit_size(c, i));
            } else {
                snprintf(buf, n, "%s (element %zu)", param_names[i], index - off);
            }
            return;
        }
    }
    snprintf(buf, n, "element %zu", index);
}

// exits naming the tensor when x (elements [start, start + n) of the whole-model layout) holds a NaN or an
// inf, or with nonneg a negative value (AdamW's v is a running mean of squares)
static void check_finite(const GPT2Config* c, const float* x, size_t start, size_t n, int nonneg, const char* path,
                         const char* what) {
    size_t bad = first_nonfinite(x, n, nonneg);
    if (bad < n) {
        char where[128];
        tensor_locate(c, start + bad, where, sizeof(where));
        fatal("%s: %s %s is %g%s", path, what, where, x[bad], isfinite(x[bad]) ? " (must be >= 0)" : "");
    }
}

static GPT2Config model_read_config(const char* path) {
    FILE* f = fopen_check(path, "rb");
    GPT2Config c = model_header_read(f, path);
    fclose(f);
    model_check_memory(&c, path);
    return c;
}

// loads one stage's slices of a checkpoint
static void model_read_stage(const char* path, const GPT2Config* c, const StageLayout* s, float* local) {
    FILE* f = fopen_check(path, "rb");
    model_header_read(f, path);
    size_t off = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        if (s->sizes[i] == 0) { continue; }
        size_t g = tensor_global_offset(c, i, tensor_is_per_layer(i) ? stage_tensor_layer_begin(s, i) : 0);
        fseek_check(f, 1024 + (long)(g * sizeof(float)), SEEK_SET, path);
        fread_check(local + off, sizeof(float), s->sizes[i], f, path);
        check_finite(c, local + off, g, s->sizes[i], 0, path, "parameter");
        off += s->sizes[i];
    }
    fclose(f);
}

// writes a whole model (global layout) atomically and returns the file's checksum; a NaN or an inf is
// refused, never saved
static uint64_t model_write(const char* path, const GPT2Config* c, const float* params) {
    size_t bad = first_nonfinite(params, model_num_parameters(c), 0);
    if (bad < model_num_parameters(c)) {
        char where[128];
        tensor_locate(c, bad, where, sizeof(where));
        fatal("refusing to write %s: parameter %s is %g", path, where, params[bad]);
    }
    int32_t header[256];
    model_header_write(header, c);
    AtomicFile af;
    atomic_open(&af, path);
    atomic_write(&af, header, sizeof(int32_t), 256);
    atomic_write(&af, params, sizeof(float), model_num_parameters(c));
    atomic_commit(&af);
    return af.checksum;
}

#endif
