/*
Reading the NumPy reference file (dev/reference/FORMAT.md) and comparing tensors with it: shared by the CPU
test (test_gpt2_pp.c) and the CUDA test (test_gpt2_pp.cu). Every check counts into passed/failed, and a test
ends with printf("%d passed, %d failed\n", passed, failed).
*/
#ifndef DEV_TEST_REFERENCE_H
#define DEV_TEST_REFERENCE_H

#include <math.h>
#include <stdio.h>
#include <string.h>
#include "llmc/utils.h"
#include "llmc/model.h"

#define REF_MAGIC 20261124
#define REF_VERSION 1

static int passed = 0, failed = 0;

static void check(int ok, const char* what) {
    if (ok) { passed++; }
    else { failed++; printf("FAIL %s\n", what); }
}

// element-wise |c - r| <= atol + rtol·|r|, printing the worst element
static void check_close(const char* name, const float* c, const float* r, size_t n, float atol, float rtol) {
    size_t worst = 0, bad = 0;
    double worst_excess = -1e30;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)c[i] - r[i]);
        double excess = d - (atol + rtol * fabs(r[i]));
        if (!(excess <= 0)) { bad++; }
        if (excess > worst_excess || isnan(excess)) { worst_excess = isnan(excess) ? INFINITY : excess; worst = i; }
    }
    char what[256];
    snprintf(what, sizeof(what), "%s: %zu of %zu elements outside tolerance, worst [%zu] %.9g vs %.9g", name, bad,
             n, worst, n ? c[worst] : 0.0f, n ? r[worst] : 0.0f);
    check(bad == 0, what);
}

// max|c - r| <= rel · max|r| over the tensor
static void check_scaled(const char* name, const float* c, const float* r, size_t n, float rel) {
    double maxref = 0.0, maxdiff = 0.0;
    size_t worst = 0;
    for (size_t i = 0; i < n; i++) {
        maxref = fmax(maxref, fabs(r[i]));
        double d = fabs((double)c[i] - r[i]);
        if (d > maxdiff || isnan(d)) { maxdiff = isnan(d) ? INFINITY : d; worst = i; }
    }
    char what[256];
    snprintf(what, sizeof(what), "%s: max diff %.3g at [%zu] vs scale %.3g (allowed %.3g)", name, maxdiff, worst,
             maxref, rel * maxref);
    check(maxdiff <= rel * maxref, what);
}

typedef struct {
    GPT2Config config;
    int B, T, M, K;
    float lr, beta1, beta2, eps, weight_decay, grad_clip;
    size_t N;
    FILE* f;
    const char* path;
} RefFile;

static float* ref_read(RefFile* rf, size_t n) {
    float* buf = (float*)malloc_check(n * sizeof(float));
    fread_check(buf, sizeof(float), n, rf->f, rf->path);
    return buf;
}

static void ref_open(RefFile* rf, const char* path) {
    int32_t h[256];
    rf->path = path;
    rf->f = fopen_check(path, "rb");
    fread_check(h, sizeof(int32_t), 256, rf->f, path);
    if (h[0] != REF_MAGIC || h[1] != REF_VERSION) {
        fatal("%s: bad magic/version %d/%d, expected %d/%d (a gpt2_ref.py reference file)", path, h[0], h[1],
              REF_MAGIC, REF_VERSION);
    }
    GPT2Config* c = &rf->config;
    c->num_layers = h[2];
    c->channels = h[3];
    c->num_heads = h[4];
    c->vocab_size = h[5];
    c->padded_vocab_size = h[6];
    c->max_seq_len = h[7];
    rf->B = h[8];
    rf->T = h[9];
    rf->M = h[10];
    rf->K = h[11];
    float hp[6];
    memcpy(hp, h + 16, sizeof(hp));
    rf->lr = hp[0]; rf->beta1 = hp[1]; rf->beta2 = hp[2]; rf->eps = hp[3]; rf->weight_decay = hp[4]; rf->grad_clip = hp[5];
    rf->N = model_num_parameters(c);
}

// the fixed micro-batches of the reference, handed out in order (wrapping around at every step)
typedef struct {
    const int* inputs;
    const int* targets;
    int M, next;
} FixedBatches;

static void next_fixed_batch(void* ctx, int* inputs, int* targets, int n) {
    FixedBatches* fb = (FixedBatches*)ctx;
    memcpy(inputs, fb->inputs + (size_t)fb->next * n, n * sizeof(int));
    memcpy(targets, fb->targets + (size_t)fb->next * n, n * sizeof(int));
    fb->next = (fb->next + 1) % fb->M;
}


// skips the per-layer activations: what follows them is loss, grads, norm, then K x (loss, params)
static void ref_skip_activations(RefFile* rf) {
    long tail = (long)((2 + rf->N + (size_t)rf->K * (1 + rf->N)) * sizeof(float));
    fseek_check(rf->f, -tail, SEEK_END, rf->path);
}

#endif
