/*
Sampling text from the model, shared by both trainers: the window of the growing sequence the model sees,
and one draw from the softmax of the last position's logits (llm.c's sample_mult, on unnormalised weights).
*/
#ifndef LLMC_SAMPLER_H
#define LLMC_SAMPLER_H

#include <math.h>
#include <string.h>

// The model sees at most T tokens: the last min(t, T) of seq[0..t). Writes them as the inputs of one
// micro-batch of shape (1, n) in the trainers' token layout (inputs, then targets: unused, any valid token).
static inline int sample_window(const int* seq, int t, int T, int* tokens) {
    int n = t < T ? t : T;
    memcpy(tokens, seq + t - n, n * sizeof(int));
    memcpy(tokens + n, seq + t - n, n * sizeof(int));
    return n;
}

// Draws a token from softmax(logits[0..V)) with coin in [0, 1); probs is scratch of V floats.
static inline int sample_softmax(const float* logits, int V, float coin, float* probs) {
    float maxval = -INFINITY, sum = 0.0f;
    for (int i = 0; i < V; i++) { if (logits[i] > maxval) { maxval = logits[i]; } }
    for (int i = 0; i < V; i++) { probs[i] = expf(logits[i] - maxval); sum += probs[i]; }
    float target = coin * sum, cdf = 0.0f;
    for (int i = 0; i < V; i++) {
        cdf += probs[i];
        if (target < cdf) { return i; }
    }
    return V - 1;  // rounding left the target above the last cdf
}

#endif
