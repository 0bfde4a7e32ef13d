/*
Mersenne Twister (MT19937) and the Box-Muller normal_ that PyTorch uses on the CPU, so a model initialised
here from a seed is the model PyTorch (and llm.c) would initialise. The algorithm is the published MT19937
(Matsumoto & Nishimura, 1998); the float conversions and the 16-wide Box-Muller layout follow PyTorch's CPU
normal_ so that the same seed gives the same numbers.
*/
#ifndef LLMC_RAND_H
#define LLMC_RAND_H

#include <math.h>
#include <stdint.h>

#define MT_N 624
#define MT_M 397

typedef struct {
    uint32_t state[MT_N];
    int left;  // outputs left before the next twist
    int next;  // index of the next state word to temper
} mt19937_state;

static void manual_seed(mt19937_state* rng, uint32_t seed) {
    rng->state[0] = seed;
    for (uint32_t j = 1; j < MT_N; j++) {
        rng->state[j] = 1812433253u * (rng->state[j - 1] ^ (rng->state[j - 1] >> 30)) + j;
    }
    rng->left = 1;
    rng->next = 0;
}

static void mt_twist(mt19937_state* rng) {
    uint32_t* s = rng->state;
    for (int j = 0; j < MT_N; j++) {
        uint32_t y = (s[j] & 0x80000000u) | (s[(j + 1) % MT_N] & 0x7fffffffu);
        s[j] = s[(j + MT_M) % MT_N] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
    }
    rng->left = MT_N;
    rng->next = 0;
}

static uint32_t randint32(mt19937_state* rng) {
    if (--rng->left <= 0) { mt_twist(rng); }
    uint32_t y = rng->state[rng->next++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

static uint64_t randint64(mt19937_state* rng) {
    uint64_t hi = randint32(rng);
    return (hi << 32) | randint32(rng);
}

static float randfloat32(mt19937_state* rng) { return (randint32(rng) & ((1u << 24) - 1)) * (1.0f / (1u << 24)); }

static double randfloat64(mt19937_state* rng) {
    return (randint64(rng) & ((1ull << 53) - 1)) * (1.0 / (double)(1ull << 53));
}

// Box-Muller over a window of 16 uniforms: the first 8 give the radii, the last 8 the angles.
static void normal_fill_16(float* d, float mean, float std) {
    for (int t = 0; t < 8; t++) {
        float u1 = 1 - d[t];
        float u2 = d[t + 8];
        float radius = sqrtf(-2 * logf(u1 + 1e-12f));
        float theta = (float)(2.0 * M_PI * u2);
        d[t] = radius * cosf(theta) * std + mean;
        d[t + 8] = radius * sinf(theta) * std + mean;
    }
}

static void normal_(float* data, size_t n, float mean, float std, mt19937_state* rng) {
    if (n >= 16) {
        for (size_t i = 0; i < n; i++) { data[i] = randfloat32(rng); }
        for (size_t i = 0; i + 16 <= n; i += 16) { normal_fill_16(data + i, mean, std); }
        if (n % 16 != 0) {
            // the ragged tail: redraw the last full window of 16 and transform it again
            float* tail = data + n - 16;
            for (int i = 0; i < 16; i++) { tail[i] = randfloat32(rng); }
            normal_fill_16(tail, mean, std);
        }
        return;
    }
    // short tensors draw doubles, one pair of samples per two uniforms
    for (size_t t = 0; t < n; t += 2) {
        float u1 = (float)randfloat64(rng);
        float u2 = (float)randfloat64(rng);
        float radius = sqrtf(-2 * logf((float)(1.0 - (double)u2 + 1e-12)));
        float theta = (float)(2.0 * M_PI * u1);
        data[t] = radius * cosf(theta) * std + mean;
        if (t + 1 < n) { data[t + 1] = (float)((double)(radius * sinf(theta)) * std + mean); }
    }
}

// xorshift for sampling text: tiny state, easy to checkpoint
static uint32_t random_u32(uint64_t* state) {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (uint32_t)((*state * 0x2545F4914F6CDD1Dull) >> 32);
}

static float random_f32(uint64_t* state) { return (random_u32(state) >> 8) / 16777216.0f; }

#endif
